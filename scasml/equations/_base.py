"""Shared plumbing for the benchmark equations."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._checks import is_integer
from .._domain import AbstractDomain
from .._pde import AbstractSemilinearPDE


def _default_dtype(dtype):
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)


class AbstractBenchmarkPDE(AbstractSemilinearPDE):
    """A library equation: fixed dimension/horizon, constant coefficients stored as arrays."""

    dim: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    drift: Array
    diffusion: Array
    domain: AbstractDomain

    def __init__(self, dim: int, horizon: float, drift, diffusion, domain: AbstractDomain, dtype=None):
        if not (is_integer(dim) and dim >= 1):
            raise ValueError(f"{type(self).__name__}: dim must be a positive integer, got {dim!r}")
        dtype = _default_dtype(dtype)
        self.dim = dim = int(dim)
        self.horizon = float(horizon)
        self.drift = jnp.broadcast_to(jnp.asarray(drift, dtype), (dim,))
        self.diffusion = jnp.asarray(diffusion, dtype)
        self.domain = domain

    def parameters(self) -> dict:
        return {"name": self.name, "dim": self.dim, "horizon": self.horizon, **self.extra_parameters()}

    def extra_parameters(self) -> dict:
        return {}
