from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._domain import ScaledBox
from .._dynamics import GeometricBrownianMotion
from ._base import AbstractBenchmarkPDE, check_finite


class BlackScholesBarenblatt(AbstractBenchmarkPDE):
    """BSB (Raissi 2018, "Forward-backward stochastic neural networks", §4.1): geometric Brownian motion without
    drift, dX_i = σ X_i dW_i (σ = 0.4), T = 1, r = 0.05,

        f = −r(u − Σ_i x_i ∂_i u) = −r(u − Σ_i z_i / σ)      (z = σ(x)ᵀ∇u, z_i = σ x_i ∂_i u),
        g(x) = ‖x‖²,   u(t, x) = exp((r + σ²)(T − t))·‖x‖².

    Test points x₀ ⊙ U[0.5, 1.5]^d around Raissi's x₀ = (1, 0.5, 1, 0.5, …)."""

    rate: float = eqx.field(static=True)
    volatility: float = eqx.field(static=True)
    name = "bsb"

    def __init__(self, dim: int, horizon: float = 1.0, rate: float = 0.05, volatility: float = 0.4, dtype=None):
        check_finite("BlackScholesBarenblatt", rate=rate, volatility=volatility)
        if not volatility > 0:
            raise ValueError(f"BlackScholesBarenblatt volatility must be positive, got {volatility!r}")
        center = tuple(1.0 if i % 2 == 0 else 0.5 for i in range(int(dim)))
        dynamics = GeometricBrownianMotion(int(dim), drift=0.0, volatility=volatility, dtype=dtype)
        super().__init__(dim, horizon, None, None, ScaledBox(center), dtype, dynamics=dynamics)
        self.rate, self.volatility = float(rate), float(volatility)

    def nonlinearity(self, t, x, u, z):
        return -self.rate * (u - jnp.sum(z) / self.volatility)

    def terminal(self, x):
        return x @ x

    def exact(self, t, x):
        return jnp.exp((self.rate + self.volatility**2) * (self.horizon - t)) * (x @ x)

    def extra_parameters(self):
        return {"rate": self.rate, "volatility": self.volatility}
