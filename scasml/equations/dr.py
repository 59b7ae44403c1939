from __future__ import annotations

import jax.numpy as jnp

from .._domain import Ball
from ._base import AbstractBenchmarkPDE


class DiffusionReaction(AbstractBenchmarkPDE):
    """DR (oscillating solution): μ = 0, σ = 1, f = min{1, (u − u*)²}, g = 1.6 + sin(0.1Σx_i);
    u = u* = 1.6 + sin(0.1Σx_i)·exp(0.01 d (t − T)/2). Domain: unit ball, T = 1."""

    name = "dr"

    def __init__(self, dim: int, horizon: float = 1.0, dtype=None):
        super().__init__(dim, horizon, 0.0, 1.0, Ball(1.0), dtype)

    @property
    def curved_in_value(self) -> bool:
        """f = (u − u*)² below 1: ∂²f/∂u² = 2, so a noisy û biases f by Var(û) (debiased by MultilevelPicard)."""
        return True

    def exact(self, t, x):
        return 1.6 + jnp.sin(0.1 * jnp.sum(x)) * jnp.exp(0.01 * self.dim * (t - self.horizon) / 2)

    def nonlinearity(self, t, x, u, z):
        return jnp.minimum(1.0, (u - self.exact(t, x)) ** 2)

    def terminal(self, x):
        return 1.6 + jnp.sin(0.1 * jnp.sum(x))
