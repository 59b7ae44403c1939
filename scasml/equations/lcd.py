from __future__ import annotations

import jax.numpy as jnp

from .._domain import Box
from ._base import AbstractBenchmarkPDE


class LinearConvectionDiffusion(AbstractBenchmarkPDE):
    """LCD: μ = −(1/d)·1, σ = √2, f = 0, g = Σx_i + T; u = Σx_i + t. Domain [0, 0.5]^d, T = 0.5."""

    name = "lcd"

    def __init__(self, dim: int, horizon: float = 0.5, dtype=None):
        super().__init__(dim, horizon, -1.0 / dim, 2**0.5, Box(0.0, 0.5), dtype)

    def nonlinearity(self, t, x, u, z):
        return jnp.zeros((), x.dtype)

    def terminal(self, x):
        return jnp.sum(x) + self.horizon

    def exact(self, t, x):
        return jnp.sum(x) + t

    @property
    def is_linear(self):
        return True
