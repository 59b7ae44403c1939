"""Shared plumbing for the benchmark equations."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._checks import is_finite_real, is_integer
from .._domain import AbstractDomain
from .._dynamics import AbstractDynamics, ConstantCoefficients
from .._pde import AbstractSemilinearPDE


def _default_dtype(dtype):
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)


def check_finite(owner: str, **parameters) -> None:
    """ValueError naming the first of ``parameters`` that is not a finite real number (NaN and ±inf reach the
    generator or the solution unnoticed and come out as NaN)."""
    for label, value in parameters.items():
        if not is_finite_real(value):
            raise ValueError(f"{owner} {label} must be a finite number, got {value!r}")


class AbstractBenchmarkPDE(AbstractSemilinearPDE):
    """A library equation: fixed dimension and horizon; its dynamics (constant coefficients from ``drift`` and
    ``diffusion``, or any ``dynamics`` built by the subclass) is fixed by its name and parameters."""

    dim: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    dynamics: AbstractDynamics
    domain: AbstractDomain

    def __init__(self, dim: int, horizon: float, drift, diffusion, domain: AbstractDomain, dtype=None,
                 dynamics: AbstractDynamics | None = None):
        if not (is_integer(dim) and dim >= 1):
            raise ValueError(f"{type(self).__name__}: dim must be a positive integer, got {dim!r}")
        self.dim = dim = int(dim)
        self.horizon = float(horizon)
        self.dynamics = ConstantCoefficients(dim, drift, diffusion, _default_dtype(dtype)) if dynamics is None \
            else dynamics
        self.domain = domain

    def parameters(self) -> dict:
        """Name, dim, horizon and the equation's own parameters (its dynamics follows from them)."""
        return {"name": self.name, "dim": self.dim, "horizon": self.horizon, **self.extra_parameters()}

    def extra_parameters(self) -> dict:
        return {}
