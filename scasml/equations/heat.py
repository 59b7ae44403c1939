from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._domain import Box
from ._base import AbstractBenchmarkPDE


class Heat(AbstractBenchmarkPDE):
    """Heat equation: μ = 0, σ = s·I, f = 0, g = ‖x‖²; u = ‖x‖² + d s² (T − t). Domain [−1, 1]^d."""

    scale: float = eqx.field(static=True)
    name = "heat"

    def __init__(self, dim: int, horizon: float = 1.0, scale: float = 2**0.5, dtype=None):
        super().__init__(dim, horizon, 0.0, scale, Box(-1.0, 1.0), dtype)
        self.scale = float(scale)

    def nonlinearity(self, t, x, u, z):
        return jnp.zeros((), x.dtype)

    def terminal(self, x):
        return x @ x

    def exact(self, t, x):
        return x @ x + self.dim * self.scale**2 * (self.horizon - t)

    @property
    def is_linear(self):
        return True

    def extra_parameters(self):
        return {"scale": self.scale}
