"""Small dense factorisations in plain jnp operations, for use inside the vmapped Monte Carlo programs.

jaxlib 0.10's CPU runtime can deadlock on LAPACK custom calls (Cholesky, LU, QR: ``jnp.linalg.*``,
``jax.scipy.linalg.expm``) batched inside a large vmapped program: the batched kernel hands work to the
intra-op thread pool from a thunk already running on it and waits for ever (seen: a full Ornstein–Uhlenbeck
transition per sample, 150 points × 2,000 paths; a PINN's per-point QR under geometric Brownian motion in 100 d).
These versions are loops of vector steps over the (small) matrix size and run anywhere. Host-side code (fits,
constructors) keeps NumPy / LAPACK.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def cholesky(a: Float[Array, "d d"]) -> Float[Array, "d d"]:
    """Lower-triangular L with LLᵀ = a (a symmetric positive definite; not finite otherwise)."""
    d = a.shape[-1]
    index = jnp.arange(d)

    def column(j, lower):
        v = a[:, j] - lower @ lower[j]  # columns ≥ j of `lower` are still zero
        return lower.at[:, j].set(jnp.where(index >= j, v / jnp.sqrt(v[j]), 0.0))

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(a))


def cholesky_solve(lower: Float[Array, "d d"], b: Float[Array, " d"]) -> Float[Array, " d"]:
    """a⁻¹b from the Cholesky factor of a."""
    d = b.shape[-1]

    def forward(i, y):
        return y.at[i].set((b[i] - lower[i] @ y) / lower[i, i])

    def backward(k, x):
        i = d - 1 - k
        return x.at[i].set((y[i] - lower[:, i] @ x) / lower[i, i])

    y = jax.lax.fori_loop(0, d, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, d, backward, jnp.zeros_like(b))


def solve(a: Float[Array, "d d"], b: Float[Array, " d"]) -> Float[Array, " d"]:
    """a⁻¹b by Gaussian elimination with partial pivoting (not finite where a is singular)."""
    d = b.shape[-1]
    index = jnp.arange(d)

    def eliminate(j, state):
        m, r = state
        pivot = jnp.argmax(jnp.where(index >= j, jnp.abs(m[:, j]), -1.0))
        swap = jnp.where(index == j, pivot, jnp.where(index == pivot, j, index))
        m, r = m[swap], r[swap]
        factors = jnp.where(index > j, m[:, j] / m[j, j], 0.0)
        return m - factors[:, None] * m[j][None, :], r - factors * r[j]

    upper, rhs = jax.lax.fori_loop(0, d, eliminate, (a, b))

    def backward(k, x):
        i = d - 1 - k
        return x.at[i].set((rhs[i] - upper[i] @ x) / upper[i, i])

    return jax.lax.fori_loop(0, d, backward, jnp.zeros_like(b))


def gram_factor(a: Float[Array, "m n"]) -> Float[Array, "n n"]:
    """An (n, n) upper-triangular R with RᵀR = aᵀa, for m ≥ n (the R of a QR factorisation, by Householder
    reflections; rank-deficient a is fine)."""
    m, n = a.shape
    index = jnp.arange(m)

    def reflect(j, r):
        x = jnp.where(index >= j, r[:, j], 0.0)
        norm = jnp.sqrt(x @ x)
        alpha = jnp.where(x[j] >= 0, -norm, norm)
        v = x.at[j].add(-alpha)
        vv = v @ v
        scale = jnp.where(vv > 0, 2.0 / jnp.where(vv > 0, vv, 1.0), 0.0)
        return r - scale * v[:, None] * (v @ r)[None, :]

    r = jax.lax.fori_loop(0, n, reflect, a)
    return jnp.triu(r[:n])
