"""Multilevel Picard (MLP) estimators of (u, z) for semilinear PDEs with gradient-dependent nonlinearities."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_count
from ._base import (
    AbstractEstimator,
    Component,
    IncrementRequest,
    PointEstimate,
    SourceRequest,
    TerminalRequest,
    clip_pair,
    combine,
    evaluate_requests,
    gauss_legendre,
    inverse_gamma,
    random_time_component,
    sample_times,
    terminal_points,
    terminal_summands,
)

_VARIANTS = ("full_history", "quadrature")


class MultilevelPicard(AbstractEstimator):
    """Multilevel Picard iteration V_n = (u, z) (E–Hutzenthaler–Jentzen–Kruse; Hutzenthaler–Kruse for z):

        V_n(t, x) = (g(x), 0) + mean_{M^n paths} (g(X_T) − g(x))·(1, ΔW_T/(T − t))
                  + Σ_{l=0}^{n−1} mean over samples (s, X_s) of
                        [f(s, X_s, V_l) − 1{l≥1} f(s, X_s, V_{l−1})]·(1, ΔW_s/(s − t)) / p(s)

    with V_0 = 0 and V_l, V_{l−1} independent recursive estimates at the same sample point.
    ``variant="full_history"``: M^(n−l) random times per level (density ∝ (s − t)^(−1/2)).
    ``variant="quadrature"``: Gauss–Legendre nodes q_l = round(Γ⁻¹(M^((n−l)/2))) with round(M^((n−l)/2)) paths each.
    ``clip`` (optional; a biased heuristic from the paper) clips u and every z component to [−clip, clip] at
    every level.
    ``debias`` (default True; used when the PDE declares ``gradient_quadratic`` = a, i.e. f = a‖z‖² + terms
    affine in z, and ``clip`` is None): f evaluated at a recursive estimate Ẑ is biased by a·tr Var(Ẑ), which
    grows like d/M (HJB in 100 d: the dominant error); each f(V_l) is corrected by −a·Σ_j se(Ẑ_j)², with the
    unbiased variance estimate of Ẑ from its own samples (the U-statistic for ‖E Ẑ‖²).

    For a linear PDE the l ≥ 1 terms vanish and are skipped (the estimator reduces to Feynman–Kac).
    Cost per query point: see ``evaluations``; for full history ≈ 2·M^n terminal and source evaluations at n = 2.
    The error decreases like M^(−n/2) up to logarithmic factors (full history).
    """

    levels: int = eqx.field(static=True, default=2)
    base: int = eqx.field(static=True, default=10)
    variant: str = eqx.field(static=True, default="full_history")
    clip: float | None = eqx.field(static=True, default=None)
    debias: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        for label, value in (("levels", self.levels), ("base", self.base)):
            if not is_count(value):
                raise ValueError(f"MultilevelPicard {label} must be a positive integer, got {value!r}")
        if self.base < 2:
            raise ValueError(f"MultilevelPicard base must be ≥ 2 (to estimate a standard error), got {self.base}")
        if self.variant not in _VARIANTS:
            raise ValueError(f"MultilevelPicard variant must be one of {_VARIANTS}, got {self.variant!r}")
        if self.variant == "quadrature" and self.base < 3:
            raise ValueError(
                "the quadrature variant needs base ≥ 3: with base 2 each time node gets round(√2) = 1 path, so no "
                "standard error can be estimated (use base ≥ 3 or variant='full_history')"
            )
        if self.clip is not None and not (
            isinstance(self.clip, (int, float)) and not isinstance(self.clip, bool) and 0 < self.clip < math.inf
        ):
            raise ValueError(f"MultilevelPicard clip must be None or a positive finite number, got {self.clip!r}")
        if not isinstance(self.debias, bool):
            raise ValueError(f"MultilevelPicard debias must be True or False, got {self.debias!r}")

    # ---- sample sizes -----------------------------------------------------------------------------------
    def terminal_paths(self, n: int) -> int:
        return self.base**n

    def level_samples(self, n: int, level: int) -> tuple[int, int]:
        """(blocks, samples per block) for the level-``level`` term of V_n: (1, M^(n−l)) or (nodes, paths)."""
        if self.variant == "full_history":
            return 1, self.base ** (n - level)
        scale = self.base ** ((n - level) / 2)
        return max(1, round(inverse_gamma(scale))), max(1, round(scale))

    def _levels(self, pde, n: int):
        return range(1) if pde.is_linear else range(n)

    def evaluations(self, pde) -> dict[str, int]:
        cache: dict[int, tuple[int, int, int]] = {0: (0, 0, 0)}

        def count(n):
            if n in cache:
                return cache[n]
            terminal, source, increment = self.terminal_paths(n) + 1, 0, 0
            for level in self._levels(pde, n):
                blocks, m = self.level_samples(n, level)
                k = blocks * m
                if level == 0:
                    source += k
                    continue
                a, b = count(level), count(level - 1)
                terminal += k * (a[0] + b[0])
                source += k * (a[1] + b[1])
                increment += k * (1 + a[2] + b[2])
            cache[n] = (terminal, source, increment)
            return cache[n]

        terminal, source, increment = count(self.levels)
        return {"terminal": terminal, "source": source, "increment": increment}

    # ---- the estimator ----------------------------------------------------------------------------------
    def noise_size(self, pde, n: int) -> tuple[int, int, int]:
        """(standard normal rows of length d, uniforms, source keys) that V_n consumes, its whole recursion
        included: the terminal paths, each level's samples and, per level-l ≥ 1 sample, the noise of the
        independent V_l and V_{l−1} evaluated there."""
        if n == 0:
            return 0, 0, 0
        total = [self.terminal_paths(n), 0, 0]
        for level in self._levels(pde, n):
            blocks, m = self.level_samples(n, level)
            count = blocks * m
            own = (count, count if self.variant == "full_history" else 0, 0 if level else count)
            children = self._children_size(pde, level) if level else (0, 0, 0)
            total = [t + o + count * c for t, o, c in zip(total, own, children, strict=True)]
        return tuple(total)

    def _children_size(self, pde, level: int) -> tuple[int, int, int]:
        """Noise of the (V_l, V_{l−1}) pair evaluated at one level-l sample."""
        new, old = self.noise_size(pde, level), self.noise_size(pde, level - 1)
        return tuple(a + b for a, b in zip(new, old, strict=True))

    def estimate_before_horizon(self, pde, key, t, x) -> PointEstimate:
        noise = _draw_noise(key, self.noise_size(pde, self.levels), pde.dim, x.dtype)
        delta = pde.horizon - t
        plan = self._plan(pde, self.levels, noise, t, x, delta)
        est = self._combine(pde, self.levels, evaluate_requests(pde, plan), x, delta)
        u, z = clip_pair(est.u, est.z, self.clip)
        return PointEstimate(u, z, est.u_stderr, est.z_stderr)

    # The estimate is computed in three passes, so that every equation (surrogate) evaluation of the whole
    # recursion happens in one batch per kind (one copy of, e.g., the Laplacian code in the compiled program):
    #   _plan: all sample points, from the noise alone (they do not depend on any evaluation);
    #   evaluate_requests: the terminal values, sources and increment inputs at all of them;
    #   _combine: the Picard sums.

    def _plan(self, pde, n: int, noise: _Noise, t, x, delta) -> dict:
        """Sample points of V_n(t, x) and, for l ≥ 1, of its samples' (V_l, V_{l−1}), as evaluation requests.
        Consumes ``noise`` (of ``noise_size(pde, n)``) in a fixed order: terminal paths, then per level its
        samples and, for l ≥ 1, its samples' (V_l, V_{l−1}) noise. ``delta`` = T − t, passed down rather than
        recomputed from s: T − s would round to 0 in float32 for samples a few ulps before T (and then divide
        by zero), while Δ(1 − U)(1 + U) stays positive for every U < 1."""
        stream = _NoiseStream(noise)
        normals = stream.normals(self.terminal_paths(n))
        ends = TerminalRequest(terminal_points(pde, normals, x, delta))
        plan = {"g_x": TerminalRequest(x), "ends": ends, "normals": normals, "levels": []}
        for level in self._levels(pde, n):
            blocks, m = self.level_samples(n, level)
            normals = stream.normals(blocks * m).reshape(blocks, m, pde.dim)
            if self.variant == "full_history":
                uniform = stream.uniforms(m)
                s, points = sample_times(pde, normals[0], uniform, t, x, delta)
                s, points, remaining = s[None], points[None], (delta * (1 - uniform) * (1 + uniform))[None]
            else:
                uniform = None
                s, points, remaining = self._quadrature_points(pde, t, x, delta, normals)
            entry = {"normals": normals, "uniform": uniform, "s": s, "points": points, "remaining": remaining}
            if level == 0:
                entry["source"] = SourceRequest(stream.keys(blocks * m).reshape(blocks, m), s, points)
            else:
                new_size = self.noise_size(pde, level)
                children = stream.children(blocks * m, self._children_size(pde, level))
                children = jax.tree.map(lambda a, shape=(blocks, m): a.reshape(shape + a.shape[1:]), children)

                def child(noise, s, point, remaining, level=level, new_size=new_size):
                    new_noise, old_noise = noise.split(new_size)
                    old = self._plan(pde, level - 1, old_noise, s, point, remaining) if level > 1 else None
                    return self._plan(pde, level, new_noise, s, point, remaining), old

                entry["children"] = jax.vmap(jax.vmap(child))(children, s, points, remaining)
                entry["inputs"] = IncrementRequest(s, points)
            plan["levels"].append(entry)
        stream.check_consumed()
        return plan

    def _quadrature_points(self, pde, t, x, delta, normals):
        """Gauss–Legendre nodes in time, ``normals`` (nodes, m, d) paths per node → s, T − s (nodes, m) and
        X (nodes, m, d)."""
        nodes, _ = gauss_legendre(normals.shape[0])
        elapsed = delta * jnp.asarray(nodes, x.dtype)  # (q,)
        shift = jax.vmap(jax.vmap(pde.diffuse))(jnp.sqrt(elapsed)[:, None, None] * normals)
        points = x[None, None] + pde.drift[None, None] * elapsed[:, None, None] + shift
        remaining = delta * jnp.asarray(1 - nodes, x.dtype)
        shape = normals.shape[:2]
        return (jnp.broadcast_to((t + elapsed)[:, None], shape), points,
                jnp.broadcast_to(remaining[:, None], shape))

    def _combine(self, pde, n: int, plan: dict, x, delta) -> PointEstimate:
        """V_n(t, x) from an evaluated ``_plan`` (requests replaced by their values); ``delta`` = T − t."""
        g_x = plan["g_x"]
        components = [terminal_summands(plan["ends"], g_x, plan["normals"], delta)]
        for level, entry in zip(self._levels(pde, n), plan["levels"], strict=True):
            if level == 0:
                values = entry["source"]
            else:
                new_plan, old_plan = entry["children"]

                def increment(new_plan, old_plan, inputs, s, point, remaining, level=level):
                    new = self._value(pde, level, new_plan, point, remaining)
                    old = self._value(pde, level - 1, old_plan, point, remaining)
                    return self._increment(pde, s, point, new, old, inputs)

                values = jax.vmap(jax.vmap(increment))(new_plan, old_plan, entry["inputs"], entry["s"],
                                                       entry["points"], entry["remaining"])
            if self.variant == "full_history":
                components.append(random_time_component(values[0], entry["normals"][0], entry["uniform"], delta))
            else:
                components.append(self._quadrature_component(x, delta, entry["normals"], values))
        return combine(g_x, jnp.zeros_like(x), components)

    def _value(self, pde, n: int, plan: dict | None, x, delta) -> PointEstimate | None:
        """V_n at (t, x) from its evaluated plan (``delta`` = T − t), clipped when ``clip`` is set; None for V_0 = 0."""
        if n == 0:
            return None
        est = self._combine(pde, n, plan, x, delta)
        u, z = clip_pair(est.u, est.z, self.clip)
        return PointEstimate(u, z, est.u_stderr, est.z_stderr)

    def _increment(self, pde, s, point, new: PointEstimate, old: PointEstimate | None, inputs):
        """f(V_new) − f(V_old); when debiasing a generator a‖z‖² + (affine in z), minus a·(Σse²_new − Σse²_old)."""
        old_pair = None if old is None else (old.u, old.z)
        inc = pde.nonlinearity_increment(s, point, (new.u, new.z), old_pair, inputs)
        a = pde.gradient_quadratic if (self.debias and self.clip is None) else None
        if a is None:
            return inc
        old_variance = 0.0 if old is None else jnp.sum(old.z_stderr**2)
        return inc - a * (jnp.sum(new.z_stderr**2) - old_variance)

    def _quadrature_component(self, x, delta, normals, values) -> Component:
        """Gauss–Legendre nodes in time: ``normals`` (nodes, m, d) paths per node, ``values`` (nodes, m)."""
        nodes, weights = gauss_legendre(normals.shape[0])
        elapsed = delta * jnp.asarray(nodes, x.dtype)  # (q,)
        weights = delta * jnp.asarray(weights, x.dtype)
        u = weights[:, None] * values
        z = (weights / jnp.sqrt(elapsed))[:, None, None] * values[..., None] * normals
        return Component(u, z)


class _Noise(eqx.Module):
    """Random numbers for one V_n evaluation (layout: ``MultilevelPicard._plan``). Drawn once per query point,
    in one draw of random bits whatever n and M: every PRNG call site compiles to its own large kernel, so one
    site keeps XLA's compilation short."""

    normals: jax.Array  # (rows, d)
    uniforms: jax.Array  # (k,), in (0, 1)
    keys: jax.Array  # (s,) PRNG keys, one per source evaluation (used by random sources, e.g. Hutchinson)

    def split(self, size: tuple[int, int, int]) -> tuple[_Noise, _Noise]:
        rows, uniforms, keys = size
        first = _Noise(self.normals[:rows], self.uniforms[:uniforms], self.keys[:keys])
        return first, _Noise(self.normals[rows:], self.uniforms[uniforms:], self.keys[keys:])


def _draw_noise(key, size: tuple[int, int, int], dim: int, dtype) -> _Noise:
    """``size`` = (normal rows of length ``dim``, uniforms, keys), all from disjoint words of one bits draw."""
    rows, uniforms, keys = size
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    key_shape = jax.random.key_data(key).shape if typed else (2,)  # raw keys: two uint32 words
    floats = rows * dim + uniforms
    per_float = jnp.dtype(dtype).itemsize // 4
    words = jax.random.bits(key, (floats * per_float + keys * math.prod(key_shape),), jnp.uint32)
    unit = open_unit_interval(words[: floats * per_float], dtype)
    normals = jnp.sqrt(jnp.asarray(2, dtype)) * jax.scipy.special.erfinv(2 * unit[: rows * dim] - 1)
    key_data = words[floats * per_float :].reshape((keys,) + key_shape)
    source_keys = jax.random.wrap_key_data(key_data, impl=jax.random.key_impl(key)) if typed else key_data
    return _Noise(normals.reshape(rows, dim), unit[rows * dim :], source_keys)


def open_unit_interval(words, dtype):
    """Uniform floats in (0, 1) on the midpoints of a grid of 2^-mantissa: symmetric about ½, never 0 or 1
    (so that √2·erfinv(2U − 1) is finite). ``words``: uint32, one per float32 or two per float64."""
    if jnp.dtype(dtype) == jnp.float32:  # [1, 2) from 23 random mantissa bits, then shifted by 1 − 2^-24
        mantissa, step = (words >> 9) | np.uint32(0x3F800000), 2.0**-24
        floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32)
    elif jnp.dtype(dtype) == jnp.float64:  # 52 mantissa bits from two words
        pairs = words.reshape(-1, 2).astype(jnp.uint64)
        bits = (pairs[:, 0] << np.uint64(32)) | pairs[:, 1]
        mantissa, step = (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000), 2.0**-53
        floats = jax.lax.bitcast_convert_type(mantissa, jnp.float64)
    else:
        raise TypeError(f"the estimators draw float32 or float64 noise, not {jnp.dtype(dtype)}")
    return floats - jnp.asarray(1 - step, floats.dtype)  # exact: (2k + 1)·step


class _NoiseStream:
    """Hands out consecutive slices of a ``_Noise`` (static offsets, at trace time)."""

    def __init__(self, noise: _Noise):
        self.noise, self.offsets = noise, [0, 0, 0]

    def _take(self, field: int, count: int):
        start = self.offsets[field]
        self.offsets[field] += count
        return (self.noise.normals, self.noise.uniforms, self.noise.keys)[field][start : start + count]

    def normals(self, count):
        return self._take(0, count)

    def uniforms(self, count):
        return self._take(1, count)

    def keys(self, count):
        return self._take(2, count)

    def children(self, count: int, size: tuple[int, int, int]) -> _Noise:
        """``count`` consecutive child noises of ``size`` each, stacked on a leading axis."""
        rows, uniforms, keys = (self._take(field, count * size[field]) for field in range(3))
        return _Noise(rows.reshape(count, size[0], -1), uniforms.reshape(count, size[1]), keys.reshape(count, size[2]))

    def check_consumed(self):
        sizes = (self.noise.normals.shape[0], self.noise.uniforms.shape[0], self.noise.keys.shape[0])
        if tuple(self.offsets) != sizes:
            raise AssertionError(f"noise layout mismatch: consumed {self.offsets}, drawn {sizes}")
