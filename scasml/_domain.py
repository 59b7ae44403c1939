"""Spatial domains from which test and collocation points are drawn."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import is_finite_real


def _finite(*values) -> bool:
    """Every value a finite real number (a domain with an infinite or NaN bound samples inf or NaN points)."""
    return all(is_finite_real(v) for v in values)


class AbstractDomain(eqx.Module):
    """A set in R^d with a sampler."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int, dim: int, dtype=None) -> Float[Array, "n d"]:
        """n points drawn uniformly from the domain."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """JSON-serialisable description."""

    def sample_points(self, key: PRNGKeyArray, n: int, pde) -> tuple[Float[Array, " n"], Float[Array, "n d"]]:
        """n points (t, x) of ``pde``'s space-time domain: t uniform on [0, T], x from ``sample``."""
        tkey, xkey = jax.random.split(key)
        t = jax.random.uniform(tkey, (n,), dtype=pde.dtype, maxval=pde.horizon)
        return t, self.sample(xkey, n, pde.dim, pde.dtype)

    def sample_terminal_points(self, key: PRNGKeyArray, n: int, pde) -> Float[Array, "n d"]:
        """n points x at t = T (from ``sample``)."""
        return self.sample(key, n, pde.dim, pde.dtype)


class Box(AbstractDomain):
    """The cube [low, high]^d."""

    low: float = eqx.field(static=True)
    high: float = eqx.field(static=True)

    def __check_init__(self):
        if not _finite(self.low, self.high):
            raise ValueError(f"Box needs finite bounds, got [{self.low}, {self.high}]")
        if not self.low < self.high:
            raise ValueError(f"Box needs low < high, got [{self.low}, {self.high}]")

    def sample(self, key, n, dim, dtype=None):
        dtype = dtype or jnp.result_type(float)
        return jax.random.uniform(key, (n, dim), dtype=dtype, minval=self.low, maxval=self.high)

    def describe(self):
        return {"kind": "box", "low": self.low, "high": self.high}


class Ball(AbstractDomain):
    """The ball {‖x‖ ≤ radius} (uniform sampling: direction × radius·U^(1/d))."""

    radius: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not _finite(self.radius):
            raise ValueError(f"Ball needs a finite radius, got {self.radius}")
        if not self.radius > 0:
            raise ValueError(f"Ball needs radius > 0, got {self.radius}")

    def sample(self, key, n, dim, dtype=None):
        dtype = dtype or jnp.result_type(float)
        dkey, rkey = jax.random.split(key)
        direction = jax.random.normal(dkey, (n, dim), dtype=dtype)
        direction = direction / jnp.linalg.norm(direction, axis=1, keepdims=True)
        radius = self.radius * jax.random.uniform(rkey, (n, 1), dtype=dtype) ** (1.0 / dim)
        return direction * radius

    def describe(self):
        return {"kind": "ball", "radius": self.radius}


class ScaledBox(AbstractDomain):
    """Points c ⊙ u with u uniform on [low, high]^d around a centre c (d,): a box that scales with each
    coordinate, for equations whose state is a price or a level near a reference point (e.g. x₀ in pricing)."""

    center: tuple[float, ...] = eqx.field(static=True)
    low: float = eqx.field(static=True, default=0.5)
    high: float = eqx.field(static=True, default=1.5)

    def __check_init__(self):
        if not _finite(self.low, self.high):
            raise ValueError(f"ScaledBox needs finite bounds, got [{self.low}, {self.high}]")
        if not self.low < self.high:
            raise ValueError(f"ScaledBox needs low < high, got [{self.low}, {self.high}]")
        if not self.center:
            raise ValueError("ScaledBox needs a non-empty centre")
        if not _finite(*self.center):
            raise ValueError(f"ScaledBox needs a centre of finite coordinates, got {self.center}")

    def sample(self, key, n, dim, dtype=None):
        if dim != len(self.center):
            raise ValueError(f"ScaledBox has a centre of {len(self.center)} coordinates, asked for points in {dim} d")
        dtype = dtype or jnp.result_type(float)
        scale = jax.random.uniform(key, (n, dim), dtype=dtype, minval=self.low, maxval=self.high)
        return jnp.asarray(self.center, dtype)[None] * scale

    def describe(self):
        return {"kind": "scaled_box", "center": list(self.center), "low": self.low, "high": self.high}


class AlongPaths(AbstractDomain):
    """The points (t, X_t) the equation's own dynamics reaches from one starting point x₀ at t = 0: t uniform on
    [0, T], X_t a sample of the dynamics (for pricing at x₀, the states that matter). ``sample`` gives the
    domain at t = 0, i.e. n copies of x₀."""

    start: tuple[float, ...] = eqx.field(static=True)

    def __check_init__(self):
        if not self.start:
            raise ValueError("AlongPaths needs a non-empty starting point")
        if not _finite(*self.start):
            raise ValueError(f"AlongPaths needs a starting point of finite coordinates, got {self.start}")

    def sample(self, key, n, dim, dtype=None):
        if dim != len(self.start):
            raise ValueError(f"AlongPaths starts at a point of {len(self.start)} coordinates, asked for points in "
                             f"{dim} d")
        return jnp.tile(jnp.asarray(self.start, dtype or jnp.result_type(float)), (n, 1))

    def sample_points(self, key, n, pde):
        tkey, wkey = jax.random.split(key)
        t = jax.random.uniform(tkey, (n,), dtype=pde.dtype, maxval=pde.horizon)
        return t, self._reached(wkey, t, pde)

    def sample_terminal_points(self, key, n, pde):
        return self._reached(key, jnp.full((n,), pde.horizon, pde.dtype), pde)

    def _reached(self, key, elapsed, pde):
        """X_τ from x₀ for each elapsed time τ (n,) (x₀ itself where τ = 0)."""
        if pde.dim != len(self.start):
            raise ValueError(f"AlongPaths starts at a point of {len(self.start)} coordinates; the equation has "
                             f"{pde.dim} dimensions")
        start = jnp.asarray(self.start, pde.dtype)
        noise = jax.random.normal(key, (elapsed.shape[0], pde.dynamics.noise_rows, pde.dim), pde.dtype)
        safe = jnp.where(elapsed > 0, elapsed, jnp.ones_like(elapsed))
        zero = jnp.zeros((), pde.dtype)
        moved = jax.vmap(lambda tau, w: pde.dynamics.sample(zero, start, tau, w)[0])(safe, noise)
        return jnp.where((elapsed > 0)[:, None], moved, start[None])

    def describe(self):
        return {"kind": "along_paths", "start": list(self.start)}
