"""Hamilton–Jacobi–Bellman equations with f = −‖z‖²/2, solved by the Cole–Hopf transform.

For f = −½‖σᵀ∇u‖² and any dynamics X, w = exp(−u) solves the linear PDE ∂_t w + Lw = 0, so
    u(t, x) = −log E[exp(−g(X_T)) | X_t = x],
which we estimate by seeded Monte Carlo (paths from the PDE's dynamics) with a delta-method standard error.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._domain import Ball
from ._base import AbstractBenchmarkPDE


class AbstractHJB(AbstractBenchmarkPDE):
    """μ = 0, σ = √2·I, f(t, x, u, z) = −‖z‖²/2 (i.e. ∂_t u + Δu − ‖∇u‖² = 0)."""

    def nonlinearity(self, t, x, u, z):
        return -0.5 * (z @ z)

    @property
    def gradient_quadratic(self):
        return -0.5

    def reference(
        self,
        t: Float[Array, " n"],
        x: Float[Array, "n d"],
        key: PRNGKeyArray,
        samples: int = 10_000,
        chunk_points: int | None = None,
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """Monte Carlo Cole–Hopf reference: (value, standard error) at n points.

        Point i uses the key ``fold_in(key, i)``, so values do not depend on how points are batched.
        Memory is bounded by processing ``chunk_points`` points at a time (default: ~256 MB of normals).
        """
        return cole_hopf_reference(self, t, x, key, samples, chunk_points)


def cole_hopf_reference(pde, t, x, key, samples=10_000, chunk_points=None):
    t = jnp.atleast_1d(jnp.asarray(t, pde.dtype))
    x = jnp.atleast_2d(jnp.asarray(x, pde.dtype))
    n, d = x.shape
    if d != pde.dim or t.shape != (n,):
        raise ValueError(f"reference needs t of shape (n,) and x of shape (n, {pde.dim}); got {t.shape}, {x.shape}")
    if chunk_points is None:
        chunk_points = max(1, min(n, int(64e6 // (samples * d))))
    n_chunks = math.ceil(n / chunk_points)
    pad = n_chunks * chunk_points - n
    index = jnp.arange(n + pad)
    t_pad = jnp.concatenate([t, jnp.zeros((pad,), t.dtype)])
    x_pad = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)])
    value, stderr = _cole_hopf_chunks(
        pde, key, samples, index.reshape(n_chunks, -1), t_pad.reshape(n_chunks, -1), x_pad.reshape(n_chunks, -1, d)
    )
    return value.reshape(-1)[:n], stderr.reshape(-1)[:n]


@eqx.filter_jit
def _cole_hopf_chunks(pde, key, samples, index, t, x):
    def one_point(i, ti, xi):
        rows = pde.dynamics.noise_rows
        normals = jax.random.normal(jax.random.fold_in(key, i), (samples, rows, pde.dim), xi.dtype)
        remaining = jnp.asarray(pde.horizon, xi.dtype) - ti
        ends = jax.vmap(lambda n: pde.dynamics.sample(ti, xi, remaining, n)[0])(normals)
        log_w = -jax.vmap(pde.terminal)(ends)
        m = jnp.max(log_w)
        w = jnp.exp(log_w - m)
        mean = jnp.mean(w)
        value = -(jnp.log(mean) + m)
        stderr = jnp.std(w, ddof=1) / (math.sqrt(samples) * mean)
        return value, stderr

    return jax.lax.map(lambda args: jax.vmap(one_point)(*args), (index, t, x))


class HJBLog(AbstractHJB):
    """HJB with g(x) = log((1 + ‖x‖²)/2), T = 1 (Han–Jentzen–E 2018: u(0, 0) ≈ 4.5901 at d = 100)."""

    name = "hjb"

    def __init__(self, dim: int, horizon: float = 1.0, dtype=None):
        super().__init__(dim, horizon, 0.0, 2**0.5, Ball(1.0), dtype)

    def terminal(self, x):
        return jnp.log(0.5 * (1.0 + x @ x))


class LinearQuadraticGaussian(AbstractHJB):
    """LQG control: g(x) = log((1 + Σ_{i<d}[c1_i (x_i − x_{i+1})² + c2_i x_{i+1}²])/2) with c ~ U[0.5, 1.5]
    drawn once from ``seed`` (in float32, whatever the dtype) and stored in the instance. Domain: unit ball, T = 1."""

    coefficients: Float[Array, "2 d-1"]
    seed: int = eqx.field(static=True)
    name = "lqg"

    def __init__(self, dim: int, horizon: float = 1.0, seed: int = 0, dtype=None):
        super().__init__(dim, horizon, 0.0, 2**0.5, Ball(1.0), dtype)
        self.seed = int(seed)
        # Drawn in float32 whatever the dtype, then cast: one seed is one equation in float32 and float64 (a
        # float64 draw gives other numbers, and the shipped float32 surrogates were trained on the float32 draw).
        self.coefficients = jax.random.uniform(
            jax.random.PRNGKey(seed), (2, max(dim - 1, 0)), jnp.float32, minval=0.5, maxval=1.5
        ).astype(self.dtype)

    def terminal(self, x):
        c1, c2 = self.coefficients
        quad = jnp.sum(c1 * (x[:-1] - x[1:]) ** 2 + c2 * x[1:] ** 2)
        return jnp.log(0.5 * (1.0 + quad))

    def extra_parameters(self):
        return {"seed": self.seed}
