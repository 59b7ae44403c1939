"""Feynman–Kac / Elworthy–Bismut–Li estimator for linear PDEs (f independent of u and z)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import is_count
from ._base import (
    AbstractEstimator,
    Component,
    combine,
    draw_times,
    gauss_legendre,
    random_time_component,
    sample_times,
    terminal_component,
)

_RULES = ("random", "gauss_legendre")


class FeynmanKac(AbstractEstimator):
    """u(t, x) = E[g(X_T) + ∫_t^T f(s, X_s) ds] and z = σᵀ∇u by Elworthy–Bismut–Li, for linear PDEs.

    Per query point: ``paths`` Brownian paths, each with ``time_samples`` evaluations of the source f(s, X_s, 0, 0)
    at random times (density ∝ (s − t)^(−1/2), finite variance for z) or at Gauss–Legendre nodes on [t, T]
    (``time_rule="gauss_legendre"``, along the same path). g(x) is subtracted as a control variate.
    Cost: ``paths`` terminal and ``paths·time_samples`` source evaluations. Error ∝ paths^(−1/2).
    """

    paths: int = eqx.field(static=True, default=1000)
    time_samples: int = eqx.field(static=True, default=1)
    time_rule: str = eqx.field(static=True, default="random")

    def __check_init__(self):
        for label, value in (("paths", self.paths), ("time_samples", self.time_samples)):
            if not is_count(value):
                raise ValueError(f"FeynmanKac {label} must be a positive integer, got {value!r}")
        if self.paths < 2:
            raise ValueError("FeynmanKac needs paths ≥ 2 to report a standard error")
        if self.time_rule not in _RULES:
            raise ValueError(f"FeynmanKac time_rule must be one of {_RULES}, got {self.time_rule!r}")

    def check(self, pde):
        if not pde.is_linear:
            raise ValueError(
                f"FeynmanKac solves linear PDEs only (f independent of u and z), but {pde.name} is semilinear; "
                "use MultilevelPicard (or declare linear=True if f really ignores u and z)"
            )

    def evaluations(self, pde):
        return {"terminal": self.paths + 1, "source": self.paths * self.time_samples, "increment": 0}

    def estimate_before_horizon(self, pde, key, t, x):
        delta = pde.horizon - t
        g_x = pde.terminal(x)
        if self.time_rule == "random":
            tkey, skey, fkey = jax.random.split(key, 3)
            term = terminal_component(pde, jax.random.normal(tkey, (self.paths, pde.dim), x.dtype), x, delta, g_x)
            m = self.paths * self.time_samples
            normals, uniform = draw_times(skey, m, pde.dim, x.dtype)
            s, points = sample_times(pde, normals, uniform, t, x, delta)
            values = jax.vmap(pde.source)(jax.random.split(fkey, m), s, points)
            time = random_time_component(values, normals, uniform, delta)
            u = term.u + jnp.mean(time.u.reshape(self.paths, self.time_samples), axis=1)[None]
            z = term.z + jnp.mean(time.z.reshape(self.paths, self.time_samples, -1), axis=1)[None]
            return combine(g_x, jnp.zeros_like(x), [Component(u, z)])
        return self._gauss_legendre(pde, key, t, x, delta, g_x)

    def _gauss_legendre(self, pde, key, t, x, delta, g_x):
        nodes, weights = gauss_legendre(self.time_samples)
        offsets = delta * jnp.asarray(nodes, x.dtype)  # s_k − t, increasing
        weights = delta * jnp.asarray(weights, x.dtype)
        nkey, fkey = jax.random.split(key)
        steps = jnp.diff(jnp.concatenate([jnp.zeros(1, x.dtype), offsets, delta[None]]))
        normals = jax.random.normal(nkey, (self.paths, self.time_samples + 1, pde.dim), x.dtype)
        brownian = jnp.cumsum(jnp.sqrt(steps)[None, :, None] * normals, axis=1)  # W at nodes and at T
        drift = pde.drift[None] * jnp.concatenate([offsets, delta[None]])[:, None]
        points = (x[None] + drift)[None] + jax.vmap(jax.vmap(pde.diffuse))(brownian)
        g_end = jax.vmap(pde.terminal)(points[:, -1])
        fkeys = jax.random.split(fkey, (self.paths, self.time_samples))
        s = t + offsets
        values = jax.vmap(jax.vmap(pde.source, in_axes=(0, 0, 0)), in_axes=(0, None, 0))(fkeys, s, points[:, :-1])
        u = (g_end - g_x) + values @ weights
        z = (g_end - g_x)[:, None] * brownian[:, -1] / delta + jnp.einsum(
            "pk,k,pkd->pd", values, weights / offsets, brownian[:, :-1]
        )
        return combine(g_x, jnp.zeros_like(x), [Component(u[None], z[None])])
