"""Derivatives of scalar functions u(t, x) and the PDE residual of a surrogate.

All functions act on one point (scalar ``t``, ``x`` of shape ``(d,)``); ``jax.vmap`` them over points.
Second-order terms are traces Tr(σσᵀ∇²u) = Σ_j (σe_j)ᵀ ∇²u (σe_j), σ = σ(t, x) of the PDE's dynamics, computed
either exactly (d forward-over-forward directional second derivatives) or by Hutchinson's estimator with Rademacher
probes (unbiased).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_count, is_count
from ._dynamics import apply_sigma_transpose

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]


def second_directional_derivative(fn_x: Callable[[Vector], Scalar], x: Vector, v: Vector) -> Scalar:
    """vᵀ ∇²fn(x) v by forward-over-forward differentiation (about 3 forward passes)."""
    first = lambda y: jax.jvp(fn_x, (y,), (v,))[1]
    return jax.jvp(first, (x,), (v,))[1]


def quadratic_form_sum(fn: Callable, t: Scalar, x: Vector, directions: Float[Array, "k d"]) -> Scalar:
    """Σ_j v_jᵀ ∇²_x fn(t, x) v_j over the rows v_j of ``directions``.

    Uses the surrogate's own fast path when it has one (``fn.hessian_quadratic_sum``, e.g. the PINN's
    forward-Laplacian sweep, ≈ k forward passes in one pass), else k forward-over-forward JVPs (≈ 3k passes).
    """
    fast = getattr(fn, "hessian_quadratic_sum", None)
    if fast is not None:
        return fast(t, x, directions)
    return jnp.sum(jax.vmap(lambda v: second_directional_derivative(lambda y: fn(t, y), x, v))(directions))


def rademacher_from_bits(key: PRNGKeyArray, shape: tuple[int, int], dtype) -> Array:
    """Independent ±1 signs, 32 per random 32-bit word (32× fewer PRNG calls than one draw per sign)."""
    n = shape[0] * shape[1]
    words = jax.random.bits(key, ((n + 31) // 32,), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
    return (2 * bits.reshape(-1)[:n].astype(dtype) - 1).reshape(shape)


class AbstractTraceEstimator(eqx.Module):
    """Estimates Tr(σσᵀ∇²u) = Σ_j (σe_j)ᵀ ∇²u (σe_j) as weight · Σ_p w_pᵀ ∇²u w_p over probe rows w_p."""

    @abc.abstractmethod
    def probe_directions(self, diffusion: Array, dim: int, key: PRNGKeyArray | None):
        """(rows w_p of shape (P, d), weight) for σ = ``diffusion`` (shape (), (d,) or (d, d))."""

    def __call__(self, fn: Callable, t: Scalar, x: Vector, diffusion: Array, key=None) -> Scalar:
        rows, weight = self.probe_directions(diffusion, x.shape[-1], key)
        return weight * quadratic_form_sum(fn, t, x, rows)

    @property
    @abc.abstractmethod
    def is_random(self) -> bool:
        ...


class ExactTrace(AbstractTraceEstimator):
    """Σ_j v_jᵀ ∇²u v_j over all d directions (d directional second derivatives), or the surrogate's own exact
    ``diffusion_hessian_trace`` when it has one (the PINN's sweep: ≈ min(d, width) directions)."""

    def __call__(self, fn, t, x, diffusion, key=None):
        fast = getattr(fn, "diffusion_hessian_trace", None)  # e.g. the PINN's: no (d, d) matrix of directions
        if fast is not None:
            return fast(t, x, diffusion)
        return super().__call__(fn, t, x, diffusion, key)

    def probe_directions(self, diffusion, dim, key=None):
        from ._dynamics import diffusion_directions

        return diffusion_directions(diffusion, dim), 1.0

    @property
    def is_random(self):
        return False


class HutchinsonTrace(AbstractTraceEstimator):
    """Unbiased trace estimate (1/P) Σ_p (Vᵀr_p)ᵀ ∇²u (Vᵀr_p), r_p Rademacher: P directional second derivatives.

    Because the residual enters the calibrated estimate linearly, the calibration stays unbiased.
    """

    probes: int = eqx.field(static=True, default=4, converter=as_count)

    def __check_init__(self):
        if not is_count(self.probes):
            raise ValueError(f"HutchinsonTrace needs a positive integer number of probes, got {self.probes!r}")

    def __call__(self, fn, t, x, diffusion, key=None):
        fast = getattr(fn, "hutchinson_trace", None)  # e.g. the PINN's: probes in a width-dim space when d > width
        if fast is not None:
            if key is None:
                raise ValueError("HutchinsonTrace needs a PRNG key")
            return fast(t, x, diffusion, key, self.probes)
        return super().__call__(fn, t, x, diffusion, key)

    def probe_directions(self, diffusion, dim, key=None):
        if key is None:
            raise ValueError("HutchinsonTrace needs a PRNG key")
        signs = rademacher_from_bits(key, (self.probes, dim), diffusion.dtype)
        # rows (σ r_p)ᵀ: elementwise for scalar/diagonal σ (no d × d matrix), r σᵀ for a full σ
        rows = signs @ diffusion.T if diffusion.ndim == 2 else signs * diffusion
        return rows, 1.0 / self.probes

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
    return trace(fn, t, x, jnp.asarray(diffusion, x.dtype), key)


def laplacian(fn: Callable, t: Scalar, x: Vector, trace=ExactTrace(), key=None) -> Scalar:
    """Δ_x u(t, x)."""
    return diffusion_trace(fn, t, x, jnp.ones((), x.dtype), trace, key)


class ResidualParts(eqx.Module):
    """Everything one residual evaluation produces at a point (reused by the estimators)."""

    value: Scalar
    gradient: Vector
    residual: Scalar


def residual_parts(pde, fn: Callable, t, x, trace=ExactTrace(), key=None) -> ResidualParts:
    """û, ∇û and ε = ∂_t û + μ(t, x)·∇û + ½Tr(σσᵀ(t, x)∇²û) + f(t, x, û, σ(t, x)ᵀ∇û) at one point."""
    value, (dt, grad) = jax.value_and_grad(fn, argnums=(0, 1))(t, x)
    drift, sigma = pde.dynamics.drift(t, x), jnp.asarray(pde.dynamics.diffusion(t, x), x.dtype)
    second = trace(fn, t, x, sigma, key)
    z = apply_sigma_transpose(sigma, grad)
    eps = dt + drift @ grad + 0.5 * second + pde.nonlinearity(t, x, value, z)
    return ResidualParts(value, grad, eps)


def residual(pde, fn: Callable, t, x, trace: AbstractTraceEstimator = ExactTrace(), key=None) -> Scalar:
    """The PDE residual ε(t, x) of a function u(t, x) (zero for the exact solution).

    With the exact trace, a surrogate that offers ``residual_terms(t, x, μ, σ)`` (PINNs with d ≤ width: one
    forward sweep, no backward pass) supplies (u, ∂_t u + μ·∇u, σᵀ∇u, Tr(σσᵀ∇²u)); otherwise autodiff.
    """
    terms = getattr(fn, "residual_terms", None)
    if terms is not None and isinstance(trace, ExactTrace):
        found = terms(t, x, pde.dynamics.drift(t, x), jnp.asarray(pde.dynamics.diffusion(t, x), x.dtype))
        if found is not None:
            value, transport, z, second = found
            return transport + 0.5 * second + pde.nonlinearity(t, x, value, z)
    return residual_parts(pde, fn, t, x, trace, key).residual
