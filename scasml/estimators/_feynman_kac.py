"""Feynman–Kac / Elworthy–Bismut–Li estimator for linear PDEs (f independent of u and z)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import as_count, is_count
from ._base import (
    AbstractEstimator,
    Component,
    combine,
    gauss_legendre,
    pair_means,
    path_samples,
    random_time_component,
    random_times,
    terminal_summands,
)

_RULES = ("random", "gauss_legendre")


class FeynmanKac(AbstractEstimator):
    """u(t, x) = E[g(X_T) + ∫_t^T f(s, X_s) ds] and z = σᵀ∇u by Elworthy–Bismut–Li, for linear PDEs.

    Per query point: ``paths`` paths of the PDE's dynamics, each with ``time_samples`` evaluations of the source
    f(s, X_s, 0, 0) at random times (density ∝ (s − t)^(−1/2), finite variance for z) or at Gauss–Legendre nodes
    on [t, T] (``time_rule="gauss_legendre"``, along the same path). g(x) is subtracted as a control variate.
    Cost: ``paths`` terminal and ``paths·time_samples`` source evaluations. Error ∝ paths^(−1/2).
    ``antithetic`` (default False; even ``paths``): paths come in pairs (N, −N) sharing their times, and the
    summands are pair means (see ``MultilevelPicard``).
    """

    paths: int = eqx.field(static=True, default=1000, converter=as_count)
    time_samples: int = eqx.field(static=True, default=1, converter=as_count)
    time_rule: str = eqx.field(static=True, default="random")
    antithetic: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        for label, value in (("paths", self.paths), ("time_samples", self.time_samples)):
            if not is_count(value):
                raise ValueError(f"FeynmanKac {label} must be a positive integer, got {value!r}")
        if self.paths < 2:
            raise ValueError("FeynmanKac needs paths ≥ 2 to report a standard error")
        if self.time_rule not in _RULES:
            raise ValueError(f"FeynmanKac time_rule must be one of {_RULES}, got {self.time_rule!r}")
        if not isinstance(self.antithetic, bool):
            raise ValueError(f"FeynmanKac antithetic must be True or False, got {self.antithetic!r}")
        if self.antithetic and self.paths % 2:
            raise ValueError(f"antithetic pairs need an even number of paths, got FeynmanKac(paths={self.paths})")

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
        rows = (pde.dynamics.noise_rows, pde.dim)
        if self.time_rule == "random":
            tkey, skey, fkey = jax.random.split(key, 3)
            ends, weights = path_samples(pde, t, x, jnp.full((self.paths,), delta),
                                         self._normals(tkey, (self.paths, *rows), x.dtype))
            term = terminal_summands(jax.vmap(pde.terminal)(ends), g_x, weights, delta)
            m = self.paths * self.time_samples
            ukey, nkey = jax.random.split(skey)
            noise, uniform = jax.random.normal(nkey, (m, *rows), x.dtype), jax.random.uniform(ukey, (m,), x.dtype)
            if self.antithetic:  # path 2k + 1: the times of path 2k, the noise negated
                by_path = lambda a: a.reshape((self.paths // 2, 2, self.time_samples) + a.shape[1:])[:, :1]
                noise = jnp.concatenate([by_path(noise), -by_path(noise)], axis=1).reshape(noise.shape)
                uniform = jnp.concatenate([by_path(uniform)] * 2, axis=1).reshape(uniform.shape)
            s, points, weights = random_times(pde, t, x, delta, noise, uniform)
            values = jax.vmap(pde.source)(jax.random.split(fkey, m), s, points)
            time = random_time_component(values, weights, uniform, delta)
            u = term.u + jnp.mean(time.u.reshape(self.paths, self.time_samples), axis=1)[None]
            z = term.z + jnp.mean(time.z.reshape(self.paths, self.time_samples, -1), axis=1)[None]
            return combine(g_x, jnp.zeros_like(x), [self._pairs(Component(u, z))])
        return self._gauss_legendre(pde, key, t, x, delta, g_x)

    def _gauss_legendre(self, pde, key, t, x, delta, g_x):
        """Sources at the Gauss–Legendre nodes s_k = t + Δc_k and g at T, along each of ``paths`` paths."""
        nodes, weights = gauss_legendre(self.time_samples)
        offsets = delta * jnp.asarray(nodes, x.dtype)  # s_k − t, increasing
        weights = delta * jnp.asarray(weights, x.dtype)
        nkey, fkey = jax.random.split(key)
        elapsed = jnp.concatenate([offsets, delta[None]])
        noise = self._normals(nkey, (self.paths, self.time_samples + 1, pde.dynamics.noise_rows, pde.dim), x.dtype)
        points, omega = jax.vmap(lambda n: pde.dynamics.path(t, x, elapsed, n))(noise)  # (paths, K + 1, d) each
        g_end = jax.vmap(pde.terminal)(points[:, -1])
        fkeys = jax.random.split(fkey, (self.paths, self.time_samples))
        s = t + offsets
        values = jax.vmap(jax.vmap(pde.source, in_axes=(0, 0, 0)), in_axes=(0, None, 0))(fkeys, s, points[:, :-1])
        u = (g_end - g_x) + values @ weights
        z = (g_end - g_x)[:, None] * omega[:, -1] / jnp.sqrt(delta) + jnp.einsum(
            "pk,k,pkd->pd", values, weights / jnp.sqrt(offsets), omega[:, :-1]
        )
        return combine(g_x, jnp.zeros_like(x), [self._pairs(Component(u[None], z[None]))])

    def _normals(self, key, shape, dtype):
        """Standard normals of ``shape`` (paths, ...); antithetic: path 2k + 1 gets −(path 2k's)."""
        if not self.antithetic:
            return jax.random.normal(key, shape, dtype)
        half = jax.random.normal(key, (shape[0] // 2, *shape[1:]), dtype)
        return jnp.stack([half, -half], axis=1).reshape(shape)

    def _pairs(self, component: Component) -> Component:
        return pair_means(component) if self.antithetic else component
