"""Shared pieces of the Monte Carlo estimators of V = (u, z), z = σ(t, x)ᵀ∇u, at one query point.

Every estimator is a sum of independent *components*; a component is an array of i.i.d. summands per block
(shape ``(blocks, m)`` for u and ``(blocks, m, d)`` for z) whose block means add up to the estimate. The standard
error of the estimate is sqrt(Σ_blocks var_m / m), computed from the top-level sample variances.

Paths and gradient weights come from the PDE's dynamics (``scasml._dynamics``): a sample at elapsed time τ
yields X_{t+τ} and a normalised weight ω (the z-weight times √τ; ω = N for constant coefficients).
Time integrals ∫_t^T h(s) ds are sampled with density p(s) = 1/(2√(Δ(s − t))), Δ = T − t, i.e. s = t + ΔU²,
so that the Elworthy–Bismut–Li weight ω/√(s − t) (variance ∝ 1/(s − t)) times 1/p(s) stays bounded:
    u-summand = h(s)·2ΔU,    z-summand = h(s)·ω/(√Δ·U)·2ΔU = h(s)·2√Δ·ω.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


class Component(eqx.Module):
    """Summands of one independent part of an estimate (block means add up)."""

    u: Float[Array, "blocks m"]
    z: Float[Array, "blocks m d"]

    def mean_and_variance(self):
        """(Σ_blocks mean, Σ_blocks var/m) of the stacked summands (u, z): two arrays of shape (d + 1,)."""
        stacked = jnp.concatenate([self.u[..., None], self.z], axis=-1)  # (blocks, m, d + 1)
        m = stacked.shape[1]
        mean = jnp.mean(stacked, axis=1)
        if m < 2:
            return jnp.sum(mean, axis=0), jnp.zeros_like(mean[0])
        variance = jnp.sum((stacked - mean[:, None]) ** 2, axis=1) / (m * (m - 1))
        return jnp.sum(mean, axis=0), jnp.sum(variance, axis=0)

    def value_gradient_covariance(self):
        """(d,) Σ_blocks the estimated covariance of the block's u-mean with each z-mean (0 for m < 2)."""
        m = self.u.shape[1]
        if m < 2:
            return jnp.zeros(self.z.shape[-1], self.z.dtype)
        u = self.u - jnp.mean(self.u, axis=1, keepdims=True)
        z = self.z - jnp.mean(self.z, axis=1, keepdims=True)
        return jnp.sum(u[..., None] * z, axis=(0, 1)) / (m * (m - 1))

    def block_variances(self):
        """((blocks, d + 1) estimated variances of the blocks' means of (u, z), their degrees of freedom m − 1);
        None for m < 2."""
        m = self.u.shape[1]
        if m < 2:
            return None
        stacked = jnp.concatenate([self.u[..., None], self.z], axis=-1)
        return jnp.var(stacked, axis=1, ddof=1) / m, m - 1


def group_means(component: Component, size: int) -> Component:
    """Summands of dependent groups: the means of consecutive groups of ``size`` samples along the sample axis
    (antithetic pairs: size 2; randomised quasi-Monte Carlo: one shifted net). The groups are the i.i.d. units,
    so the standard error is computed over them."""
    u, z = component.u, component.z
    return Component(u.reshape(u.shape[0], -1, size).mean(-1), z.reshape(z.shape[0], -1, size, z.shape[-1]).mean(-2))


def pair_means(component: Component) -> Component:
    """Antithetic summands: the means of adjacent pairs (2k, 2k + 1) (``group_means`` of size 2)."""
    return group_means(component, 2)


class PointEstimate(eqx.Module):
    """(u, z) and their standard errors at one point; ``u_dof``, ``z_dof`` (d,): the Welch–Satterthwaite degrees
    of freedom of u's and of each z component's variance estimate (inf where it is exact), for Student-t
    intervals; ``u_corrections``: the last two
    Picard corrections of u, (Δ_{n−1}, Δ_n, the estimated variance of Δ_n), from which ``picard_truncation``
    estimates the truncation |u − u_n| over a batch of points (zeros where there are none: Feynman–Kac, n = 1,
    linear PDEs, t = T); with ``MultilevelPicard(next_correction=K)``, whose estimate includes the next one,
    (Δ_n, Δ_{n+1}, var Δ_{n+1})."""

    u: Float[Array, ""]
    z: Float[Array, " d"]
    u_stderr: Float[Array, ""]
    z_stderr: Float[Array, " d"]
    u_dof: Float[Array, ""]
    z_dof: Float[Array, " d"]
    u_corrections: Float[Array, " 3"]


def satterthwaite(variances, dofs):
    """Degrees of freedom of Σ_b v_b over the first axis, v_b estimated with k_b degrees of freedom:
    1 / Σ_b (v_b/Σv)²/k_b (Welch–Satterthwaite); inf where Σ v_b = 0. ``variances`` (blocks, ...), ``dofs``
    of its shape."""
    total = jnp.sum(variances, axis=0)
    share = variances / jnp.where(total > 0, total, 1)[None]
    return jnp.where(total > 0, 1 / jnp.sum(share**2 / dofs, axis=0), jnp.inf)


def combine(constant_u, constant_z, components: list[Component]) -> PointEstimate:
    """Constant + the components' means, with the standard error from their sample variances."""
    parts = [comp.mean_and_variance() for comp in components]
    total = jnp.concatenate([constant_u[None], constant_z]) + sum(mean for mean, _ in parts)
    stderr = jnp.sqrt(sum(variance for _, variance in parts))
    blocks = [b for b in (comp.block_variances() for comp in components) if b is not None]
    if blocks:
        variances = jnp.concatenate([v for v, _ in blocks])
        dofs = jnp.concatenate([jnp.full(v.shape, k, v.dtype) for v, k in blocks])
        dof = satterthwaite(variances, dofs)
    else:
        dof = jnp.full(total.shape, jnp.inf, total.dtype)
    return PointEstimate(total[0], total[1:], stderr[0], stderr[1:], dof[0], dof[1:], jnp.zeros(3, total.dtype))


def path_samples(pde, t, x, elapsed, noise):
    """(X (..., d), ω (..., d)) from one sample of the PDE's dynamics per entry of ``elapsed`` (...) with
    ``noise`` (..., rows, d)."""
    sample = lambda tau, n: pde.dynamics.sample(t, x, tau, n)
    for _ in range(elapsed.ndim):
        sample = jax.vmap(sample)
    return sample(elapsed, noise)


def terminal_summands(g_ends, g_x, weights, delta) -> Component:
    """(ğ(X_T) − ğ(x))·(1, ω/√Δ) from the terminal values ``g_ends`` (paths,) and weights (paths, d) of
    ``path_samples`` at Δ = T − t (ğ(x) is a control variate for both u and z)."""
    diff = g_ends - g_x
    return Component(diff[None], (diff[:, None] * weights / jnp.sqrt(delta))[None])


def random_times(pde, t, x, delta, noise, uniform):
    """(s, X_s, ω) with s = t + ΔU², one per row of ``noise`` (m, rows, d) and entry U of ``uniform`` (m,)."""
    elapsed = delta * uniform**2
    points, weights = path_samples(pde, t, x, elapsed, noise)
    return t + elapsed, points, weights


def random_time_component(values, weights, uniform, delta) -> Component:
    """Turn integrand values h(s_i) at sampled times into (u, z) summands (see module docstring)."""
    u = values * 2 * delta * uniform
    z = values[:, None] * 2 * jnp.sqrt(delta) * weights
    return Component(u[None], z[None])


def gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (from ``numpy.polynomial.legendre.leggauss``)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    return (x + 1) / 2, w / 2


class TerminalRequest(eqx.Module):
    """Terminal values g(x) wanted at points x (..., d)."""

    x: Float[Array, "... d"]

    @staticmethod
    def evaluate(pde, request):
        return pde.terminal(request.x)


class SourceRequest(eqx.Module):
    """Sources f(s, x, 0, 0) wanted at (s (...), x (..., d)), one PRNG key (...) each (for random sources)."""

    key: Array
    t: Float[Array, ...]
    x: Float[Array, "... d"]

    @staticmethod
    def evaluate(pde, request):
        return pde.source(request.key, request.t, request.x)


class IncrementRequest(eqx.Module):
    """``pde.increment_inputs`` wanted at (s (...), x (..., d)) (the defect PDE: û and σᵀ∇û)."""

    t: Float[Array, ...]
    x: Float[Array, "... d"]

    @staticmethod
    def evaluate(pde, request):
        return pde.increment_inputs(request.t, request.x)


_REQUESTS = (TerminalRequest, SourceRequest, IncrementRequest)


def _is_request(node) -> bool:
    return isinstance(node, _REQUESTS)


_SOURCE_BLOCK: contextvars.ContextVar[int | None] = contextvars.ContextVar("source_block", default=None)


@contextlib.contextmanager
def source_block(size: int | None):
    """While tracing: evaluate a point's sources in blocks of at most ``size`` (None: all at once)."""
    token = _SOURCE_BLOCK.set(size)
    try:
        yield
    finally:
        _SOURCE_BLOCK.reset(token)


def _vmapped(kind, pde, batch, block: int | None):
    """``kind.evaluate`` over the leading axis of ``batch``; with ``block``, as a loop over balanced blocks of at
    most ``block`` requests (the last request repeated to fill the last block), so that the working set of, e.g.,
    a surrogate's residual sweep stays near a CPU core's cache."""
    evaluate = jax.vmap(kind.evaluate, in_axes=(None, 0))
    n = jax.tree.leaves(batch)[0].shape[0]
    if block is None or n <= block:
        return evaluate(pde, batch)
    blocks = -(-n // block)
    size = -(-n // blocks)
    blocked = jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], blocks * size - n, axis=0)]).reshape(
            (blocks, size) + a.shape[1:]), batch)
    values = jax.lax.map(lambda part: evaluate(pde, part), blocked)
    return jax.tree.map(lambda v: v.reshape((blocks * size,) + v.shape[2:])[:n], values)


def evaluate_requests(pde, tree):
    """Replace every request in ``tree`` by its values (batch shape = the request's), evaluating all requests
    of one kind in a single vmapped call: one copy of each equation/surrogate evaluation in the compiled
    program, however many places of an estimator ask for it. Sources are evaluated in blocks when
    ``source_block`` is set (``calibrate`` does so on CPUs)."""
    leaves, treedef = jax.tree.flatten(tree, is_leaf=_is_request)
    out = list(leaves)
    for kind in _REQUESTS:
        where = [i for i, leaf in enumerate(leaves) if type(leaf) is kind]
        if not where:
            continue
        shapes = [leaves[i].x.shape[:-1] for i in where]
        flat = [
            jax.tree.map(lambda a, rank=len(shape): a.reshape((-1,) + a.shape[rank:]), leaves[i])
            for i, shape in zip(where, shapes, strict=True)
        ]
        batch = jax.tree.map(lambda *parts: jnp.concatenate(parts), *flat)
        values = _vmapped(kind, pde, batch, _SOURCE_BLOCK.get() if kind is SourceRequest else None)
        start = 0
        for i, shape in zip(where, shapes, strict=True):
            size = math.prod(shape)
            out[i] = jax.tree.map(lambda v, a=start, b=start + size, shape=shape: v[a:b].reshape(shape + v.shape[1:]),
                                  values)
            start += size
    return jax.tree.unflatten(treedef, out)


def clip_pair(u, z, clip):
    if clip is None:
        return u, z
    return jnp.clip(u, -clip, clip), jnp.clip(z, -clip, clip)


class AbstractEstimator(eqx.Module):
    """Monte Carlo estimator of (u, σᵀ∇u) at one query point of a semilinear PDE.

    Subclasses implement ``estimate_before_horizon(pde, key, t, x)`` for one point (scalar t < T, x of shape
    (d,)) and ``evaluations(pde)``: the per-point number of terminal evaluations g, source evaluations f(·, 0, 0)
    (for the defect PDE: surrogate residuals) and generator increments f(V) − f(V') (for the defect PDE:
    surrogate value-and-gradient evaluations). ``estimate`` adds the exact answer at t = T; ``scasml.solve``
    and ``scasml.calibrate`` vectorise and chunk ``estimate_before_horizon`` and treat points at t = T apart
    (so their compiled programs carry no ∇g).
    """

    @abc.abstractmethod
    def estimate_before_horizon(self, pde, key: PRNGKeyArray, t, x) -> PointEstimate:
        """(u, σᵀ∇u) and standard errors at one point with t < T (undefined at t = T)."""

    @abc.abstractmethod
    def evaluations(self, pde) -> dict[str, int]:
        ...

    def estimate(self, pde, key: PRNGKeyArray, t, x) -> PointEstimate:
        """``estimate_before_horizon`` for t < T; at t = T, (g(x), σᵀ∇g(x)) exactly with zero error."""
        live = t < pde.horizon
        est = self.estimate_before_horizon(pde, key, jnp.where(live, t, jnp.zeros_like(t)), x)
        g_x, z_x = terminal_value_and_z(pde, x)
        return PointEstimate(
            jnp.where(live, est.u, g_x),
            jnp.where(live, est.z, z_x),
            jnp.where(live, est.u_stderr, jnp.zeros_like(est.u_stderr)),
            jnp.where(live, est.z_stderr, jnp.zeros_like(est.z_stderr)),
            jnp.where(live, est.u_dof, jnp.full_like(est.u_dof, jnp.inf)),
            jnp.where(live, est.z_dof, jnp.full_like(est.z_dof, jnp.inf)),
            jnp.where(live, est.u_corrections, jnp.zeros_like(est.u_corrections)),
        )

    def check(self, pde) -> None:
        """Raise a clear error if this estimator cannot be applied to ``pde``."""


def terminal_value_and_z(pde, x):
    """(g(x), σ(T, x)ᵀ∇g(x)) at one point x (d,): the solution at t = T."""
    g_x, grad = jax.value_and_grad(pde.terminal)(x)
    return g_x, pde.dynamics.sigma_transpose(jnp.asarray(pde.horizon, x.dtype), x, grad)


def inverse_gamma(y: float) -> float:
    """The q ≥ 1.4616 with Γ(q) = y (bisection on lgamma); 1 for y ≤ 1."""
    if y <= 1.0:
        return 1.0
    lo, hi = 1.4616321449683622, 2.0
    while math.lgamma(hi) < math.log(y):
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.lgamma(mid) < math.log(y):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
