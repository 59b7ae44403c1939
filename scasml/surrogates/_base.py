"""The surrogate interface: any scalar function û(t, x)."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Float


class AbstractSurrogate(eqx.Module):
    """A differentiable approximation û(t, x) of a PDE solution.

    ``__call__`` takes a scalar ``t`` and ``x`` of shape ``(d,)`` and returns a scalar; derivatives come from
    JAX autodiff, so any JAX-traceable function works.
    """

    @abc.abstractmethod
    def __call__(self, t: Float[Array, ""], x: Float[Array, " d"]) -> Float[Array, ""]:
        ...


class FunctionSurrogate(AbstractSurrogate):
    """Wraps any JAX callable ``fn(t, x) -> scalar`` (an equinox module, a closure, an exact solution …)."""

    fn: Callable

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError(f"FunctionSurrogate needs a callable fn(t, x), got {type(self.fn).__name__}")

    def __call__(self, t, x):
        return self.fn(t, x)
