"""Two nonlinear pricing problems under geometric Brownian motion from E, Han and Jentzen (2017), "Deep
learning-based numerical methods for high-dimensional parabolic PDEs and BSDEs", §4.2 and §4.4. Neither has a
closed form: the literature reports u(0, x₀) at x₀ = 100·1 (``LITERATURE_VALUE``), and plain multilevel Picard at
a large budget reproduces it (tests/test_equations.py; experiments/RESULTS.md)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._domain import ScaledBox
from .._dynamics import GeometricBrownianMotion
from ._base import AbstractBenchmarkPDE


def _market(dim, drift: float, volatility: float, dtype) -> GeometricBrownianMotion:
    """d uncorrelated assets dX_i = μ̄X_i ds + σ̄X_i dW_i (the market of both problems)."""
    return GeometricBrownianMotion(int(dim), drift=drift, volatility=volatility, dtype=dtype)


def _near_x0(dim) -> ScaledBox:
    """Test points x₀ ⊙ U[0.7, 1.3]^d around x₀ = 100·1."""
    return ScaledBox((100.0,) * int(dim), 0.7, 1.3)


class BlackScholesDefaultRisk(AbstractBenchmarkPDE):
    """BSDR: Black–Scholes with default risk (Duffie–Schroder–Skiadas; E–Han–Jentzen §4.2), T = 1, d = 100 in the
    literature. dX_i = μ̄X_i ds + σ̄X_i dW_i with μ̄ = 0.02, σ̄ = 0.2; g(x) = min_i x_i;

        f(t, x, u, z) = −(1 − δ)·Q(u)·u − R·u,   δ = 2/3, R = 0.02,
        Q(y) = γʰ for y < vʰ, γˡ for y ≥ vˡ, linear in between (γʰ = 0.2, γˡ = 0.02, vʰ = 50, vˡ = 70).

    Literature u(0, 100·1) ≈ 57.300 in 100 d (without default, ≈ 60.781). Test points x₀ ⊙ U[0.7, 1.3]^d."""

    LITERATURE_VALUE: ClassVar[float] = 57.300  # u(0, 100·1) for d = 100
    growth: float = eqx.field(static=True)
    volatility: float = eqx.field(static=True)
    recovery: float = eqx.field(static=True)
    rate: float = eqx.field(static=True)
    name = "bsdr"

    def __init__(self, dim: int, horizon: float = 1.0, drift: float = 0.02, volatility: float = 0.2,
                 recovery: float = 2 / 3, rate: float = 0.02, dtype=None):
        market = _market(dim, drift, volatility, dtype)
        super().__init__(dim, horizon, None, None, _near_x0(dim), dtype, dynamics=market)
        self.growth, self.volatility = float(drift), float(volatility)
        self.recovery, self.rate = float(recovery), float(rate)

    def intensity(self, u):
        """Q(u): the default intensity, 0.2 below 50, 0.02 above 70, linear in between."""
        high, low, v_high, v_low = 0.2, 0.02, 50.0, 70.0
        between = (high - low) / (v_high - v_low) * (u - v_high) + high
        return jnp.where(u < v_high, high, jnp.where(u >= v_low, low, between))

    def nonlinearity(self, t, x, u, z):
        return -(1 - self.recovery) * self.intensity(u) * u - self.rate * u

    def terminal(self, x):
        return jnp.min(x)

    def extra_parameters(self):
        return {"drift": self.growth, "volatility": self.volatility, "recovery": self.recovery, "rate": self.rate}


class DifferentInterestRates(AbstractBenchmarkPDE):
    """BSIR: pricing with different interest rates for borrowing and lending (Bergman 1995; E–Han–Jentzen §4.4),
    T = 0.5, d = 100 in the literature. dX_i = μ̄X_i ds + σ̄X_i dW_i with μ̄ = 0.06, σ̄ = 0.2; with z = σ(x)ᵀ∇u
    (z_i = σ̄x_i∂_iu), Rˡ = 0.04, Rᵇ = 0.06,

        f(t, x, u, z) = −Rˡu − ((μ̄ − Rˡ)/σ̄)·Σ_i z_i + (Rᵇ − Rˡ)·max(0, Σ_i z_i/σ̄ − u),
        g(x) = max(max_i x_i − 120, 0) − 2·max(max_i x_i − 150, 0).

    Literature u(0, 100·1) ≈ 21.299 in 100 d. Test points x₀ ⊙ U[0.7, 1.3]^d."""

    LITERATURE_VALUE: ClassVar[float] = 21.299  # u(0, 100·1) for d = 100
    growth: float = eqx.field(static=True)
    volatility: float = eqx.field(static=True)
    lending: float = eqx.field(static=True)
    borrowing: float = eqx.field(static=True)
    name = "bsir"

    def __init__(self, dim: int, horizon: float = 0.5, drift: float = 0.06, volatility: float = 0.2,
                 lending: float = 0.04, borrowing: float = 0.06, dtype=None):
        market = _market(dim, drift, volatility, dtype)
        super().__init__(dim, horizon, None, None, _near_x0(dim), dtype, dynamics=market)
        self.growth, self.volatility = float(drift), float(volatility)
        self.lending, self.borrowing = float(lending), float(borrowing)

    def nonlinearity(self, t, x, u, z):
        held = jnp.sum(z) / self.volatility  # Σ_i x_i ∂_i u: the value held in the assets
        return -self.lending * u - (self.growth - self.lending) * held + (self.borrowing - self.lending) * jnp.maximum(
            0.0, held - u)

    def terminal(self, x):
        top = jnp.max(x)
        return jnp.maximum(top - 120.0, 0.0) - 2.0 * jnp.maximum(top - 150.0, 0.0)

    def extra_parameters(self):
        return {"drift": self.growth, "volatility": self.volatility, "lending": self.lending,
                "borrowing": self.borrowing}
