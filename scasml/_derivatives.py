"""Derivatives of scalar functions u(t, x) and the PDE residual of a surrogate.

All functions act on one point (scalar ``t``, ``x`` of shape ``(d,)``); ``jax.vmap`` them over points.
Second-order terms are traces Tr(σσᵀ∇²u) = Σ_j (σe_j)ᵀ ∇²u (σe_j), computed either exactly (d forward-over-
forward directional second derivatives) or by Hutchinson's estimator with Rademacher probes (unbiased).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]


def second_directional_derivative(fn_x: Callable[[Vector], Scalar], x: Vector, v: Vector) -> Scalar:
    """vᵀ ∇²fn(x) v by forward-over-forward differentiation (about 3 forward passes)."""
    first = lambda y: jax.jvp(fn_x, (y,), (v,))[1]
    return jax.jvp(first, (x,), (v,))[1]


class AbstractTraceEstimator(eqx.Module):
    """Estimates Tr(Vᵀ ∇²fn(x) V) for the rows of a direction matrix V (shape ``(k, d)``)."""

    @abc.abstractmethod
    def __call__(self, fn_x: Callable, x: Vector, directions: Float[Array, "k d"], key: PRNGKeyArray | None):
        ...

    @property
    @abc.abstractmethod
    def is_random(self) -> bool:
        ...


class ExactTrace(AbstractTraceEstimator):
    """Σ_j v_jᵀ ∇²fn v_j over all d directions (cost ≈ 3d forward passes)."""

    def __call__(self, fn_x, x, directions, key=None):
        del key
        return jnp.sum(jax.vmap(lambda v: second_directional_derivative(fn_x, x, v))(directions))

    @property
    def is_random(self):
        return False


class HutchinsonTrace(AbstractTraceEstimator):
    """Unbiased trace estimate (1/P) Σ_p (Vᵀr_p)ᵀ ∇²fn (Vᵀr_p), r_p Rademacher (cost ≈ 3P forward passes).

    Because the residual enters the calibrated estimate linearly, the calibration stays unbiased.
    """

    probes: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not (isinstance(self.probes, int) and self.probes >= 1):
            raise ValueError(f"HutchinsonTrace needs probes ≥ 1, got {self.probes!r}")

    def __call__(self, fn_x, x, directions, key=None):
        if key is None:
            raise ValueError("HutchinsonTrace needs a PRNG key")
        signs = jax.random.rademacher(key, (self.probes, directions.shape[0]), dtype=x.dtype)
        probes = signs @ directions
        values = jax.vmap(lambda v: second_directional_derivative(fn_x, x, v))(probes)
        return jnp.mean(values)

    @property
    def is_random(self):
        return True


def value_and_gradient(fn: Callable, t: Scalar, x: Vector) -> tuple[Scalar, Vector]:
    """(u(t, x), ∇_x u(t, x))."""
    return jax.value_and_grad(fn, argnums=1)(t, x)


def time_derivative(fn: Callable, t: Scalar, x: Vector) -> Scalar:
    """∂_t u(t, x)."""
    return jax.grad(fn, argnums=0)(t, x)


def diffusion_trace(
    fn: Callable,
    t: Scalar,
    x: Vector,
    diffusion: Array,
    trace: AbstractTraceEstimator = ExactTrace(),
    key: PRNGKeyArray | None = None,
) -> Scalar:
    """Tr(σσᵀ ∇²_x u(t, x)) for σ a scalar, a ``(d,)`` diagonal or a ``(d, d)`` matrix."""
    from ._pde import diffusion_directions

    directions = diffusion_directions(jnp.asarray(diffusion, x.dtype), x.shape[-1])
    return trace(lambda y: fn(t, y), x, directions, key)


def laplacian(fn: Callable, t: Scalar, x: Vector, trace=ExactTrace(), key=None) -> Scalar:
    """Δ_x u(t, x)."""
    return diffusion_trace(fn, t, x, jnp.ones((), x.dtype), trace, key)


class ResidualParts(eqx.Module):
    """Everything one residual evaluation produces at a point (reused by the estimators)."""

    value: Scalar
    gradient: Vector
    residual: Scalar


def residual_parts(pde, fn: Callable, t, x, trace=ExactTrace(), key=None) -> ResidualParts:
    """û, ∇û and ε = ∂_t û + μ·∇û + ½Tr(σσᵀ∇²û) + f(t, x, û, σᵀ∇û) at one point."""
    value, (dt, grad) = jax.value_and_grad(fn, argnums=(0, 1))(t, x)
    second = trace(lambda y: fn(t, y), x, pde.diffusion_directions(), key)
    eps = dt + pde.drift @ grad + 0.5 * second + pde.nonlinearity(t, x, value, pde.sigma_transpose(grad))
    return ResidualParts(value, grad, eps)


def residual(pde, fn: Callable, t, x, trace: AbstractTraceEstimator = ExactTrace(), key=None) -> Scalar:
    """The PDE residual ε(t, x) of a function u(t, x) (zero for the exact solution)."""
    return residual_parts(pde, fn, t, x, trace, key).residual
