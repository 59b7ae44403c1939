"""The law of defect: the surrogate's error ŭ = u − û solves a PDE of the same semilinear form.

    ∂_t ŭ + μ·∇ŭ + ½Tr(σσᵀ∇²ŭ) + f̆(t, x, ŭ, σᵀ∇ŭ) = 0,    ŭ(T, x) = ğ(x) = g(x) − û(T, x),      μ, σ at (t, x),
    f̆(t, x, v, w) = f(t, x, û + v, σᵀ∇û + w) − f(t, x, û, σᵀ∇û) + ε(t, x),

with ε = ∂_t û + μ·∇û + ½Tr(σσᵀ∇²û) + f(t, x, û, σᵀ∇û) the surrogate's residual (subtract the surrogate's
equation, which equals ε, from the true one). f̆(t, x, 0, 0) = ε, and f̆ has the Lipschitz constant of f.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._derivatives import AbstractTraceEstimator, ExactTrace, residual, residual_parts
from ._domain import AbstractDomain
from ._dynamics import AbstractDynamics
from ._pde import AbstractSemilinearPDE
from .surrogates import AbstractSurrogate


class DefectPDE(AbstractSemilinearPDE):
    """The PDE solved by u − û: the same dynamics, terminal value g − û(T, ·) and generator
    f̆(t, x, v, w) = f(t, x, û + v, σᵀ∇û + w) − f(t, x, û, σᵀ∇û) + ε(t, x), ε the surrogate's residual. Build it with
    ``law_of_defect``.

    The Monte Carlo solvers use two hooks: ``source`` = f̆(·, 0, 0) = ε (needs the Laplacian; evaluated only at
    level-0 samples) and ``nonlinearity_increment`` = f̆(new) − f̆(old), in which ε cancels, so it needs only û
    and ∇û (and nothing at all for a linear PDE).
    """

    dim: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    dynamics: AbstractDynamics
    domain: AbstractDomain
    base: AbstractSemilinearPDE
    surrogate: AbstractSurrogate
    trace: AbstractTraceEstimator

    def __init__(self, base: AbstractSemilinearPDE, surrogate: AbstractSurrogate, trace: AbstractTraceEstimator):
        self.dim, self.horizon = base.dim, base.horizon
        self.dynamics, self.domain = base.dynamics, base.domain
        self.base, self.surrogate, self.trace = base, surrogate, trace

    @property
    def is_linear(self):
        return self.base.is_linear

    @property
    def is_defect(self):
        return True

    @property
    def gradient_quadratic(self):
        """f̆(v, w) = f(û + v, ẑ + w) − f(û, ẑ) + ε has the base's quadratic coefficient in w."""
        return self.base.gradient_quadratic

    @property
    def curved_in_value(self):
        """f̆(v, w) = f(û + v, ẑ + w) − f(û, ẑ) + ε has the base's curvature in v."""
        return self.base.curved_in_value

    @property
    def couples_value_and_gradient(self):
        """f̆(v, w) = f(û + v, ẑ + w) − f(û, ẑ) + ε has the base's mixed derivatives in (v, w)."""
        return self.base.couples_value_and_gradient

    @property
    def name(self):
        return f"defect[{self.base.name}]"

    @property
    def has_exact(self):
        return self.base.has_exact

    def parameters(self):
        return {"name": self.name, "base": self.base.parameters()}

    def terminal(self, x):
        return self.base.terminal(x) - self.surrogate(jnp.asarray(self.horizon, x.dtype), x)

    def exact(self, t, x):
        return self.base.exact(t, x) - self.surrogate(t, x)

    def _value_and_z(self, t, x):
        value, grad = jax.value_and_grad(self.surrogate, argnums=1)(t, x)
        return value, self.dynamics.sigma_transpose(t, x, grad)

    def nonlinearity(self, t, x, u, z):
        parts = residual_parts(self.base, self.surrogate, t, x, ExactTrace())
        z_hat = self.dynamics.sigma_transpose(t, x, parts.gradient)
        f = self.base.nonlinearity
        return f(t, x, parts.value + u, z_hat + z) - f(t, x, parts.value, z_hat) + parts.residual

    def source(self, key, t, x):
        return residual(self.base, self.surrogate, t, x, self.trace, key)

    def increment_inputs(self, t, x):
        """(û, σᵀ∇û) at (t, x); nothing for a linear base equation (its increments vanish)."""
        return None if self.base.is_linear else self._value_and_z(t, x)

    def nonlinearity_increment(self, t, x, new, old, inputs=None):
        if self.base.is_linear:
            return jnp.zeros((), x.dtype)
        value, z_hat = self._value_and_z(t, x) if inputs is None else inputs
        if old is None:
            old = (jnp.zeros((), x.dtype), jnp.zeros_like(x))
        f = self.base.nonlinearity
        return f(t, x, value + new[0], z_hat + new[1]) - f(t, x, value + old[0], z_hat + old[1])


def law_of_defect(
    pde: AbstractSemilinearPDE, surrogate: AbstractSurrogate, trace: AbstractTraceEstimator = ExactTrace()
) -> DefectPDE:
    """The PDE solved by ``u − surrogate`` (same dynamics μ, σ; terminal g − û(T); generator f̆).

    ``trace`` chooses how the residual's second-order term is computed at the level-0 samples: ``ExactTrace()``
    or ``HutchinsonTrace(probes)`` (unbiased; the residual enters linearly, so the correction stays unbiased).
    """
    if not isinstance(pde, AbstractSemilinearPDE):
        raise TypeError(f"law_of_defect needs an AbstractSemilinearPDE, got {type(pde).__name__}")
    if not callable(surrogate):
        raise TypeError(f"law_of_defect needs a callable surrogate û(t, x), got {type(surrogate).__name__}")
    if not isinstance(surrogate, AbstractSurrogate):
        from .surrogates import FunctionSurrogate

        surrogate = FunctionSurrogate(surrogate)
    return DefectPDE(pde, surrogate, trace)


__all__ = ["DefectPDE", "law_of_defect"]
