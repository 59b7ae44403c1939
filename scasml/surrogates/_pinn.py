"""Physics-informed neural network surrogate: an equinox MLP on (x, t)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ._base import AbstractSurrogate

_ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "sin": jnp.sin, "gelu": jax.nn.gelu}


class PINN(AbstractSurrogate):
    """û(t, x) = MLP([x, t]) (``depth`` hidden layers of ``width``, default 5 × 50 tanh).

    With ``terminal`` given (the PDE's g), the terminal condition is built in:
    û(t, x) = g(x) + (T − t)/T · MLP([x, t]), so û(T, ·) = g exactly.
    """

    mlp: eqx.nn.MLP
    dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    terminal: Callable | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        horizon: float,
        key: PRNGKeyArray,
        width: int = 50,
        depth: int = 5,
        activation: str = "tanh",
        terminal: Callable | None = None,
        dtype=None,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        for label, value in (("dim", dim), ("width", width), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PINN {label} must be a positive integer, got {value!r}")
        self.dim, self.width, self.depth, self.activation = dim, width, depth, activation
        self.horizon = float(horizon)
        self.terminal = terminal
        dtype = dtype if dtype is not None else jnp.result_type(float)
        self.mlp = eqx.nn.MLP(dim + 1, "scalar", width, depth, _ACTIVATIONS[activation], key=key, dtype=dtype)

    def __call__(self, t, x):
        out = self.mlp(jnp.concatenate([x, jnp.reshape(t, (1,))]))
        if self.terminal is None:
            return out
        return self.terminal(x) + (self.horizon - t) / self.horizon * out

    def architecture(self) -> dict:
        return {
            "kind": "pinn",
            "dim": self.dim,
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation,
            "horizon": self.horizon,
            "terminal_transform": self.terminal is not None,
        }
