from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._domain import Box
from ._base import AbstractBenchmarkPDE


class ViscousBurgers(AbstractBenchmarkPDE):
    """VB (gradient-dependent): μ = −(1/d + s²/2)·1, σ = s = 0.25, f = s·u·Σz_i, g = logistic(T + Σx_i);
    u = logistic(t + Σx_i). Domain [−0.5, 0.5]^d, T = 0.5."""

    scale: float = eqx.field(static=True)
    name = "vb"

    def __init__(self, dim: int, horizon: float = 0.5, scale: float = 0.25, dtype=None):
        super().__init__(dim, horizon, -(1.0 / dim + scale**2 / 2), scale, Box(-0.5, 0.5), dtype)
        self.scale = float(scale)

    def nonlinearity(self, t, x, u, z):
        return self.scale * u * jnp.sum(z)

    @property
    def couples_value_and_gradient(self) -> bool:
        """f = s·u·Σz: ∂²f/∂u∂z_j = s, so noisy (û, ẑ) bias f by s·Σ_j Cov(û, ẑ_j) (debiased by MultilevelPicard)."""
        return True

    def terminal(self, x):
        return jax.nn.sigmoid(self.horizon + jnp.sum(x))

    def exact(self, t, x):
        return jax.nn.sigmoid(t + jnp.sum(x))

    def extra_parameters(self):
        return {"scale": self.scale}
