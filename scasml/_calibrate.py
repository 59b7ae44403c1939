"""``solve`` (plain Monte Carlo) and ``calibrate`` (SCaSML = surrogate + Monte Carlo estimate of its defect).

Both run one jitted program per call: query points are split into chunks (``lax.map`` over chunks, ``vmap``
within a chunk); the level recursion of the estimators is unrolled at trace time. Point i always draws its
randomness from ``fold_in(key, i)``, and on CPUs the vectorised width is a fixed ``CPU_LANES`` points whatever
the chunk size, so a point's random numbers depend only on the key and i: the same on every call, for every N,
chunk size, device count and split of the points over calls (``index_offset``). The arithmetic on them can
differ in the last float32 digit with the call's layout: XLA's CPU matrix products round a row by its lane in
the vmap group, so calls that start at an index that is not a multiple of ``CPU_LANES`` (and, on accelerators,
other chunk sizes) agree to rounding; splits at multiples of ``CPU_LANES`` were bit-identical in every case
measured. Points at t = T get the exact (g(x), σᵀ∇g(x)) from a
separate small program.

Across processes (``jax.distributed.initialize``, e.g. one per host), every process makes the same call (same
t, x, key, index_offset, estimator and equation/surrogate); process p computes the p-th contiguous share of the
points on its local devices with the matching index offset, and every process returns the full result, the same
as a one-process run.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._adaptive import AbstractAllocation, Allocated, run_allocated
from ._checks import check_cost, check_key, is_integer, is_real
from ._defect import law_of_defect
from ._derivatives import AbstractTraceEstimator, ExactTrace
from ._pde import AbstractSemilinearPDE
from .estimators import AbstractEstimator, MultilevelPicard, default_estimator
from .estimators._base import source_block, terminal_value_and_z
from .estimators._picard import next_correction_applies
from .surrogates import check_surrogate

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per device on CPUs


def default_memory_budget(device=None) -> float:
    """Bytes one device may spend on a chunk: 2 GiB on CPUs; on accelerators a quarter of the memory the
    device reports (so that the surrogate, XLA's temporaries and other processes keep room)."""
    device = jax.local_devices()[0] if device is None else device
    if device.platform == "cpu":
        return DEFAULT_MEMORY_BUDGET
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    return DEFAULT_MEMORY_BUDGET if not limit else 0.25 * float(limit)


def device_memory(device) -> float | None:
    """Bytes the device has in all (CPUs: the machine's physical memory), or None when unknown."""
    if device.platform == "cpu":
        try:
            return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    limit = (device.memory_stats() or {}).get("bytes_limit")
    return float(limit) if limit else None


class Estimate(eqx.Module):
    """Monte Carlo estimate of (u, z = σᵀ∇u) at N points, with standard errors.

    ``lower``/``upper`` bound the 95 % confidence interval u ± t·stderr, t the Student-t 97.5 % quantile at the
    Welch–Satterthwaite degrees of freedom ``dof`` (N,) of the variance estimate (≈ 1.96 for many samples);
    ``z_dof`` (N, d) are those of ``z_stderr``, for intervals of z (few where a level of few samples carries z's
    variance: multilevel Picard's z errors ÷ ``z_stderr`` are then Student-t rather than normal).
    ``truncation`` (N,): the multilevel Picard truncation |u − u_n|, which the standard errors and intervals do
    not include, estimated over the batch (``picard_truncation``: its RMS over the points) and spread over the
    points ∝ T − t (0 at t = T), or None (Feynman–Kac, n = 1, linear PDEs, fewer than 32 points); ``solve``
    and ``calibrate`` warn when its RMS exceeds 0.3 × the RMS standard error. ``picard_corrections`` (N, 3):
    each point's last two Picard corrections of u and the variance of the last, (Δ_{n−1}, Δ_n, var Δ_n), from
    which it is estimated (0 where there are none; (3,) for one point; with ``next_correction``, whose estimate
    includes the next correction, (Δ_n, Δ_{n+1}, var Δ_{n+1})), so that results computed in parts can
    pool them (``truncation_estimate``). ``widened``: True when ``scasml.widen`` has added it to the intervals.
    ``finite`` flags the points where every output (u, z, both standard errors and the interval) is finite;
    ``evaluations`` gives the
    evaluation counts of one replica at one point; ``replicas`` (N,) the replicas each point received (all 1
    without an ``allocation``), ``met`` (N,) whether a point met a ``TargetStderr`` (else None) and ``summary``
    what an allocation did.
    """

    u: Float[Array, " N"]
    z: Float[Array, "N d"]
    stderr: Float[Array, " N"]
    z_stderr: Float[Array, "N d"]
    lower: Float[Array, " N"]
    upper: Float[Array, " N"]
    finite: Array
    evaluations: dict = eqx.field(static=True)
    replicas: Array | None = None
    met: Array | None = None
    summary: str | None = eqx.field(static=True, default=None)
    dof: Array | None = None
    truncation: Array | None = None
    widened: bool = eqx.field(static=True, default=False)
    picard_corrections: Float[Array, "N 3"] | None = None
    z_dof: Float[Array, "N d"] | None = None


class CalibratedPrediction(eqx.Module):
    """SCaSML output at N points: ``u = surrogate + defect`` with a Monte Carlo standard error.

    ``lower``/``upper`` bound the 95 % confidence interval u ± t·stderr (as in ``Estimate``, with ``dof``;
    ``truncation``, ``picard_corrections`` and ``widened`` as there);
    ``defect_z`` is the estimate
    of σᵀ∇(u − û); ``finite`` flags the points where every output (u, defect, defect_z, stderr and the interval)
    is finite; ``evaluations`` counts surrogate values, value-and-gradients and residuals per point.
    ``threshold``: None, or the garrote threshold (in standard errors) when ``scasml.shrink`` shrank ``defect``
    (then ``lower``/``upper`` stay the interval of the unshrunk estimate). ``replicas``, ``met``, ``summary``:
    as in ``Estimate`` (evaluations per point = replicas × the counts in ``evaluations``).
    """

    u: Float[Array, " N"]
    surrogate: Float[Array, " N"]
    defect: Float[Array, " N"]
    stderr: Float[Array, " N"]
    defect_z: Float[Array, "N d"]
    lower: Float[Array, " N"]
    upper: Float[Array, " N"]
    finite: Array
    evaluations: dict = eqx.field(static=True)
    threshold: float | None = eqx.field(static=True, default=None)
    replicas: Array | None = None
    met: Array | None = None
    summary: str | None = eqx.field(static=True, default=None)
    dof: Array | None = None
    truncation: Array | None = None
    widened: bool = eqx.field(static=True, default=False)
    picard_corrections: Float[Array, "N 3"] | None = None


def _as_points(pde: AbstractSemilinearPDE, t, x):
    """Validate and convert query points; returns (t (N,), x (N, d), single_point)."""
    d = pde.dim
    if any(isinstance(a, jax.core.Tracer) for a in (t, x)):
        raise TypeError("solve and calibrate compile and run their own program and cannot be called inside "
                        "jax.jit, jax.vmap or jax.grad (t or x is a traced value): call them from Python with "
                        "concrete arrays")
    try:
        x_arr = np.asarray(x)
        t_arr = np.asarray(t)
    except Exception as err:
        raise TypeError(f"t and x must be array-like: {err}") from None
    for label, arr in (("t", t_arr), ("x", x_arr)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{label} must hold real numbers, got dtype {arr.dtype}")
    single = x_arr.ndim == 1
    if single:
        x_arr = x_arr[None]
    if x_arr.ndim != 2 or x_arr.shape[1] != d:
        raise ValueError(f"x must have shape (N, {d}) (or ({d},) for one point) for this {d}-d PDE; got {np.shape(x)}")
    n = x_arr.shape[0]
    if n == 0:
        raise ValueError("no query points: x has shape (0, d)")
    if t_arr.ndim == 0:
        t_arr = np.full((n,), t_arr)
    if t_arr.shape != (n,):
        raise ValueError(
            f"t must be a scalar or have shape ({n},) to match x of shape {x_arr.shape}; got {t_arr.shape}"
        )
    for label, arr in (("t", t_arr), ("x", x_arr)):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{label} has {int(bad.sum())} non-finite entries (first at point {first})")
    horizon = pde.horizon
    outside = (t_arr < 0) | (t_arr > horizon)
    if outside.any():
        first = int(np.argmax(outside))
        raise ValueError(
            f"t must lie in [0, T] = [0, {horizon}]; {int(outside.sum())} points outside "
            f"(first: t[{first}] = {t_arr[first]})"
        )
    dtype = pde.dtype
    if np.issubdtype(x_arr.dtype, np.floating) and x_arr.dtype != dtype:
        # float64 input computes in float64 only when JAX has x64 enabled (no truncation warning otherwise)
        dtype = jax.dtypes.canonicalize_dtype(np.promote_types(x_arr.dtype, dtype))
    # host arrays: padding and chunking then cost no small XLA compilations (about 1 s on a first call)
    return np.asarray(t_arr, np.dtype(dtype)), np.asarray(x_arr, np.dtype(dtype)), single


def default_chunk_size(pde, estimator: AbstractEstimator, memory_budget: float, directions: int | None = None) -> int:
    """Points per vectorised step, from a memory model, capped at ``CPU_LANES`` on CPUs (one vmap group per chunk:
    each point already carries hundreds of vectorised samples, and a group loop inside the chunk loop adds
    kernels to compile) and 512 on GPUs.

    Model, per query point: a terminal evaluation holds a path (d floats) and ~256 hidden activations; a value-
    and-gradient twice that; a residual carries d directional derivatives of each activation (~256·d floats);
    ×4 for temporaries. For d = 160, n = 2, M = 16 this is ≈ 0.3 GB per point.
    """
    per_point = point_bytes(pde, estimator, directions)
    cap = CPU_LANES if jax.default_backend() == "cpu" else 512
    return int(max(1, min(cap, memory_budget // per_point)))


def point_bytes(pde, estimator: AbstractEstimator, directions: int | None = None, compressed: bool = False) -> int:
    """Bytes one query point takes in the Monte Carlo program (the model of ``default_chunk_size``).
    ``compressed``: a PINN's sweep directions counted at most its layer width (what its residual carries)."""
    ev = estimator.evaluations(pde)
    d = pde.dim
    itemsize = jnp.dtype(pde.dtype).itemsize
    k = d if directions is None else directions  # second-order directions per residual (d, or Hutchinson probes)
    width = getattr(getattr(pde, "surrogate", None), "width", None)
    if compressed and isinstance(width, int):
        k = min(k, width)
    floats = ev["terminal"] * (d + 256) + ev["increment"] * (d + 512) + ev["source"] * (d + 256 * (k + 2))
    return max(1, 4 * floats * itemsize)


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _check_memory(pde, estimator, n: int, chunk: int, devices, directions, memory_budget) -> None:
    """Refuse, before anything is traced, a call whose single query point, or whose points' inputs and results,
    cannot fit in a device's memory (``memory_budget``, when larger, overrides the device's size)."""
    capacity = device_memory(devices[0])
    if capacity is None:
        return
    capacity = max(capacity, memory_budget or 0.0)
    point = point_bytes(pde, estimator, directions, compressed=True)
    if point > capacity:
        raise ValueError(
            f"one query point of {estimator!r} in d = {pde.dim} needs about {_gib(point)} of memory "
            f"({sum(estimator.evaluations(pde).values()):.3g} function evaluations), more than the device's "
            f"{_gib(capacity)}; lower levels or base (or, if this estimate is too pessimistic, pass memory_budget= "
            "in bytes to allow it)"
        )
    itemsize = jnp.dtype(pde.dtype).itemsize
    share = math.ceil(n / len(devices))
    held = share * (4 * pde.dim + 6) * itemsize + min(chunk, share) * point  # x, z, z_stderr, z_dof, scalars, a chunk
    if held > capacity:
        raise ValueError(
            f"{n} query points in d = {pde.dim} need about {_gib(held)} per device for their inputs, results and "
            f"one chunk, more than the device's {_gib(capacity)}; split the points over several calls with "
            "index_offset= (point i's result depends only on key and index_offset + i, so the results are "
            "identical)"
        )


def _chunk(arrays, n: int, chunk: int, n_chunks: int):
    """(n_chunks, chunk, ...) host arrays, padded by repeating the last point."""
    pad = n_chunks * chunk - n
    out = []
    for arr in arrays:
        filler = np.repeat(arr[-1:], pad, axis=0) if pad else arr[:0]
        padded = np.concatenate([arr, filler])
        out.append(padded.reshape((n_chunks, chunk) + arr.shape[1:]))
    return out


def _lanes(chunk: int) -> int:
    """Points evaluated by one vmap. Fixed on CPUs, so that every chunk size compiles the same per-lane
    computation (XLA's CPU backend rounds some vectorised functions, e.g. exp, differently for other widths);
    on accelerators the whole chunk is one vmap."""
    return CPU_LANES if jax.default_backend() == "cpu" else chunk


# 4, not 8: a residual sweep's arrays for 4 points stay closer to each core's cache. Measured with one device per
# core (2 cores, warm): VB-20 −14 %, LQG-100 −14 %, DR-160 −2 %, LCD-10 −6 % against 8; with one multi-threaded
# device, within ±6 % (smaller widths were slower there: LCD-10 +33 % at 2). See experiments/RESULTS.md.
CPU_LANES = 4


# CPU: at most this many rows (of surrogate-width floats) in one vmapped block of residual sweeps, over all lanes.
# Measured warm, 2-core CPU, against one block: VB-20 (n = 2, M = 10: 2 blocks of 9,200 rows) −15 % with one
# device per core and unchanged with one multi-threaded device; LQG-100 (4-5 blocks of 8,500-10,600 rows) −16 %
# and −10…−20 %. Smaller blocks slow one multi-threaded device down (VB-20 quadrature in 2 blocks of 5,600 rows:
# +14 %; LCD-10 in blocks of 2,600: +15 %), hence 12,000 rather than the ~10,000 that one device per core prefers.
CPU_SWEEP_ROWS = 12_000


def _source_block(pde, lanes: int, directions: int | None) -> int | None:
    """Residuals per point in one vmapped block on CPUs (None: all at once; accelerators, or no surrogate)."""
    surrogate = getattr(pde, "surrogate", None)
    if jax.default_backend() != "cpu" or surrogate is None:
        return None
    k = pde.dim if directions is None else directions  # sweep directions (d, or Hutchinson probes) ...
    width = getattr(surrogate, "width", None)
    if isinstance(width, int):
        k = min(k, width)  # ... compressed to the layer width (PINN)
    return max(1, CPU_SWEEP_ROWS // (lanes * (k + 3)))


# Replicas r ≥ 1 of a point draw from fold_in(fold_in(k_i, REPLICA_STREAM), r), k_i the point's key: estimators
# split k_i, and split(k, n)[j] == fold_in(k, j), so fold_in(k_i, r) would repeat the pilot's subkey j = r.
REPLICA_STREAM = 2**31 - 1


def replica_key(key, index, replica=None):
    """The key of replica ``replica`` of point ``index``: k_i = ``fold_in(key, index)`` for replica 0 (the key of a
    uniform run), ``fold_in(fold_in(k_i, REPLICA_STREAM), replica)`` for replica r ≥ 1 (apart from every subkey an
    estimator splits k_i into)."""
    point = jax.random.fold_in(key, index)
    if replica is None:
        return point
    stream = jax.random.fold_in(jax.random.fold_in(point, REPLICA_STREAM), replica)
    data = jnp.where(replica == 0, jax.random.key_data(point), jax.random.key_data(stream))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))


@eqx.filter_jit
def _program(pde, estimator, key, work, t, x, mesh, lanes, block):
    """lax.map over chunks (axis 0) and over groups of ``lanes`` points within a chunk, vmap over a group;
    with a mesh, chunks are sharded over its devices. ``work``: (index,) or (index, replica, active): point
    indices (chunks, chunk), with replica numbers (chunks, chunk) and a flag per chunk (chunks,); an inactive
    chunk is skipped (zeros) at run time, so that one compiled program serves any number of items up to its
    shape. ``block``: see ``_source_block``."""

    def group(a):
        with source_block(block):
            estimate = lambda i, r, ti, xi: estimator.estimate_before_horizon(pde, replica_key(key, i, r), ti, xi)
            return jax.vmap(estimate)(*a)

    def chunk(a):
        size = a[0].shape[0]
        if size == lanes:
            return group(a)
        grouped = jax.tree.map(lambda v: v.reshape((size // lanes, lanes) + v.shape[1:]), a)
        out = jax.lax.map(group, grouped)
        return jax.tree.map(lambda v: v.reshape((size,) + v.shape[2:]), out)

    def chunks(work, t, x):
        if len(work) == 1:
            return jax.lax.map(lambda a: chunk((a[0], None, a[1], a[2])), (work[0], t, x))
        index, replica, active = work
        skipped = lambda a: jax.tree.map(jnp.zeros_like, jax.eval_shape(chunk, a))
        return jax.lax.map(lambda a: jax.lax.cond(a[0], chunk, skipped, a[1:]), (active, index, replica, t, x))

    if mesh is None:
        return chunks(work, t, x)
    spec = jax.sharding.PartitionSpec("points")
    # Each device computes its points independently (no collectives), so the varying-axes type check has nothing
    # to protect; with it, jax 0.10 rejects a forward-mode derivative whose tangent does not vary over the points
    # (constant directions σe_j) at a primal that does ("mul requires varying manual axes to match": a PINN with
    # a built-in terminal condition under constant σ, d > width).
    specs = (tuple(spec for _ in work), spec, spec)
    return jax.shard_map(chunks, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(work, t, x)


def _check_estimator(estimator, pde, max_evaluations, applicable: bool = True) -> dict[str, int]:
    """The estimator's type, cost and (``applicable``) applicability to ``pde`` (before any tracing); returns its
    evaluation counts."""
    if not isinstance(estimator, AbstractEstimator):
        raise TypeError(
            f"estimator must be an AbstractEstimator (e.g. MultilevelPicard()), got {type(estimator).__name__}"
        )
    counts = check_cost(estimator, pde, max_evaluations)
    if applicable:
        estimator.check(pde)
    return counts


class _Runner(NamedTuple):
    """A checked Monte Carlo run: the key, the layout (points per chunk, points per vmap group, residuals per
    block) and the devices. ``run`` computes items, ``finish`` adds the exact values at t = T."""

    pde: AbstractSemilinearPDE
    estimator: AbstractEstimator
    key: PRNGKeyArray
    layout: tuple
    devices: list

    def run(self, t, x, index, replica=None, valid=None):
        """Host estimates (before the horizon: t < T) at items (t (n,), x (n, d)) of point ``index`` (n,) and,
        with ``replica`` (n,), replica number; only the first ``valid`` items are needed (the others are skipped
        chunk by chunk; one compiled program per n)."""
        with full_float32_matmuls():
            if jax.process_count() == 1:
                return _run_local(self, t, x, index, replica, valid)
            return _run_processes(self, t, x, index, replica, valid)

    def finish(self, est, t, x):
        """``est`` with the exact (g(x), σᵀ∇g(x)) and zero errors at the points with t = T."""
        at_horizon = t >= self.pde.horizon
        if not at_horizon.any():
            return est
        with full_float32_matmuls():
            g_x, z_x = jax.device_get(_terminal_values(self.pde, x[at_horizon]))
        return _with_terminal_values(est, at_horizon, g_x, z_x)


def _runner(pde, estimator, key, n, chunk_size, memory_budget, devices=None, directions=None, offset=0) -> _Runner:
    """Check the run's arguments for ``n`` points (before anything is traced) and choose its layout."""
    key = check_key(key)
    if isinstance(devices, jax.Device):
        devices = [devices]
    if devices is not None and (isinstance(devices, str) or not all(isinstance(d, jax.Device) for d in devices)):
        raise TypeError(f"devices must be a list of jax devices (e.g. jax.local_devices()[:2]), got {devices!r}")
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    repeated = sorted({str(d) for d in devices if devices.count(d) > 1})
    if repeated:
        raise ValueError(f"devices lists {', '.join(repeated)} more than once; name each device once")
    if memory_budget is not None and not (is_real(memory_budget) and 0 < memory_budget < math.inf):
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    budget = default_memory_budget(devices[0]) if memory_budget is None else memory_budget
    if chunk_size is not None and not (is_integer(chunk_size) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk = int(chunk_size) if chunk_size is not None else default_chunk_size(pde, estimator, budget, directions)
    if not (is_integer(offset) and offset >= 0):
        raise ValueError(f"index_offset must be a non-negative integer, got {offset!r}")
    if offset + n > 2**32:
        raise ValueError(
            f"index_offset + number of points must be at most 2**32 (point i uses fold_in(key, index_offset + i) "
            f"with a uint32 index); got {offset} + {n}"
        )
    _check_memory(pde, estimator, n, chunk, devices, directions, memory_budget)
    chunk = min(chunk, n)  # never pad beyond the points there are (results do not depend on the chunk)
    lanes = _lanes(chunk)
    chunk = math.ceil(chunk / lanes) * lanes  # a whole number of vmap groups
    return _Runner(pde, estimator, key, (chunk, lanes, _source_block(pde, lanes, directions)), devices)


def point_indices(n: int, offset) -> np.ndarray:
    return np.arange(int(offset), int(offset) + n, dtype=np.uint32)


def _run(pde, estimator, key, t, x, chunk_size, memory_budget, devices=None, directions=None, offset=0,
         allocation=None, cost=1.0, offset_u=0.0, progress=False):
    """Host estimates at points (t, x): one replica per point, or as many as ``allocation`` decides
    (``scasml._adaptive``; ``cost``: evaluations of one replica at one point; ``offset_u``: added to u for relative
    targets). Returns an object with u, z, u_stderr, z_stderr, u_dof, z_dof and, with an allocation, replicas, met,
    summary."""
    if allocation is not None and not isinstance(allocation, AbstractAllocation):
        raise TypeError(f"allocation must be None, scasml.TargetStderr(...) or scasml.Budget(...), got "
                        f"{type(allocation).__name__}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    runner = _runner(pde, estimator, key, x.shape[0], chunk_size, memory_budget, devices, directions, offset)
    index = point_indices(x.shape[0], offset)
    if allocation is not None:
        return run_allocated(runner, allocation, t, x, index, cost, offset_u, progress)
    live_t = np.where(t >= pde.horizon, np.zeros_like(t), t)  # t = T: exact, computed apart (no ∇g in the program)
    return runner.finish(runner.run(live_t, x, index), t, x)


def _allocation_fields(est, n: int) -> dict:
    """The ``replicas``/``met``/``summary``/``dof`` of a result from ``_run``'s output."""
    dof = np.asarray(est.u_dof)
    if isinstance(est, Allocated):
        return {"replicas": est.replicas.astype(np.int32), "met": est.met, "summary": est.summary, "dof": dof}
    return {"replicas": np.ones(n, np.int32), "dof": dof}


# Fewer points before the horizon than this: no batch estimate of the Picard truncation (too noisy).
MIN_TRUNCATION_POINTS = 32
# solve/calibrate warn where the truncation estimate exceeds this share of the RMS standard error (a bias of 0.3
# standard errors: 95 % intervals cover about 94 %; of 0.5: 92 %).
TRUNCATION_WARNING = 0.3


def picard_truncation(corrections, live) -> float | None:
    """The RMS over the points ``live`` (N,) of the Picard truncation |u − u_n|, estimated from the per-point
    corrections (N, 3) = (Δ_{n−1}, Δ_n, var Δ_n) (``PointEstimate.u_corrections``): where the corrections
    shrink geometrically, the next one has an RMS of about RMS(Δ_n)²/RMS(Δ_{n−1}), with RMS(Δ_n)² less the
    noise of its estimates. A batch quantity (it pools the points); None without corrections (Feynman–Kac,
    n = 1, linear PDEs) or with fewer than ``MIN_TRUNCATION_POINTS`` points (non-finite ones left out)."""
    c = np.asarray(corrections, np.float64)[np.asarray(live)]
    c = c[np.all(np.isfinite(c), axis=1)]
    if c.shape[0] < MIN_TRUNCATION_POINTS or not np.any(c[:, :2]):
        return None
    before = math.sqrt(np.mean(c[:, 0] ** 2))
    last = max(float(np.mean(c[:, 1] ** 2) - np.mean(c[:, 2])), 0.0)
    return last / before if before > 0 else None


def spread_truncation(rms: float | None, t, horizon, live, dtype) -> np.ndarray | None:
    """The batch's RMS truncation ``rms`` spread over the points (N,) ∝ T − t, with that RMS over the points
    ``live`` (0 elsewhere): a Picard iterate's truncation grows with the time left to the horizon (like
    (L·(T − t))^n/n! for a Lipschitz constant L); ∝ T − t rather than (T − t)^n errs on the wide side
    (experiments/RESULTS.md, "Variance reduction")."""
    if rms is None:
        return None
    left = np.where(live, horizon - np.asarray(t, np.float64), 0.0)
    scale = math.sqrt(np.mean(left[live] ** 2))
    return (rms * left / scale if scale > 0 else np.zeros_like(left)).astype(dtype)


def truncation_estimate(corrections, t, horizon, dtype) -> tuple[float | None, np.ndarray | None]:
    """The batch estimate of the Picard truncation from the per-point corrections (N, 3) at times t (N,): its RMS
    over the points before the horizon (``picard_truncation``) and its spread over the points (N,)
    (``spread_truncation``), or (None, None). Results computed in parts pool their ``picard_corrections`` here."""
    t = np.asarray(t)
    live = t < horizon
    rms = picard_truncation(corrections, live)
    return rms, spread_truncation(rms, t, horizon, live, dtype)


def _truncation(caller: str, estimator, pde, t, corrections, stderr) -> np.ndarray | None:
    """The per-point truncation estimate of a ``solve``/``calibrate`` result at times t (N,), with its warning
    (``pde``: the PDE that ``estimator`` solved)."""
    rms, truncation = truncation_estimate(corrections, t, pde.horizon, stderr.dtype)
    message = truncation_message(caller, estimator, rms, stderr, t < pde.horizon,
                                 next_correction_applies=next_correction_applies(pde))
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return truncation


def truncation_share(truncation: float | None, stderr, live) -> float | None:
    """The RMS truncation estimate ÷ the RMS of the finite standard errors ``stderr`` (N,) over the points ``live``
    (N,); None without an estimate (0 where no standard error is finite, inf where they are all 0)."""
    if truncation is None:
        return None
    s = np.asarray(stderr, np.float64)[np.asarray(live)]
    s = s[np.isfinite(s)]
    scale = math.sqrt(np.mean(s**2)) if s.size else math.inf
    if scale > 0:
        return truncation / scale
    return math.inf if truncation > 0 else 0.0


def truncation_message(caller: str, estimator, truncation: float | None, stderr, live,
                       remedy: str = "`.truncation` of the result holds the estimate and `scasml.widen(result)` "
                                     "adds it to the intervals", next_correction_applies: bool = False) -> str | None:
    """The warning where the RMS truncation estimate exceeds ``TRUNCATION_WARNING`` × the RMS standard error
    ``stderr`` (N,) over the points ``live`` (N,), else None; ``remedy`` says how to put it into the intervals.
    ``next_correction_applies`` (a law of defect with ``brownian_transitions``): it also names
    ``next_correction``."""
    share = truncation_share(truncation, stderr, live)
    if share is None or share <= TRUNCATION_WARNING:
        return None
    scale = truncation / share
    more = f"levels={estimator.levels + 1}" if isinstance(estimator, MultilevelPicard) else "levels + 1"
    if (isinstance(estimator, MultilevelPicard) and estimator.variant == "full_history"
            and not estimator.next_correction and next_correction_applies):
        more += (", or next_correction=2, the linearised next correction: a few per cent more evaluations, a "
                 "larger standard error")
    return (f"{caller}: the Picard truncation |u − u_n| of {estimator!r} is estimated at {truncation:.3g} (RMS over "
            f"these points), {share:.2g} × the RMS standard error ({scale:.3g}); the standard errors "
            "and 95 % intervals do not include it, so the intervals may cover less than 95 % (the estimate assumes "
            f"geometrically shrinking Picard corrections and can overstate the truncation). One more level removes "
            f"most of it ({more}); {remedy}.")


@eqx.filter_jit
def _terminal_values(pde, x):
    return jax.vmap(lambda xi: terminal_value_and_z(pde, xi))(x)


def _with_terminal_values(est, at_horizon, g_x, z_x):
    """``est`` (host arrays) with the exact (g(x), σᵀ∇g(x)) and zero errors at the points ``at_horizon``."""
    fields = (est.u, est.z, est.u_stderr, est.z_stderr, est.u_dof, est.z_dof, est.u_corrections)
    u, z, u_stderr, z_stderr, dof, z_dof, corrections = (np.array(a) for a in fields)
    u[at_horizon], z[at_horizon], u_stderr[at_horizon], z_stderr[at_horizon], dof[at_horizon] = g_x, z_x, 0, 0, np.inf
    z_dof[at_horizon], corrections[at_horizon] = np.inf, 0
    return type(est)(u, z, u_stderr, z_stderr, dof, z_dof, corrections)


def student_t_quantile(probability: float, dof) -> np.ndarray:
    """The Student-t ``probability`` quantile at degrees of freedom ``dof`` (array); the normal one where ``dof``
    is infinite, non-finite or not positive (an exact value, or none recorded)."""
    from scipy import stats

    dof = np.asarray(dof, np.float64)
    usable = np.isfinite(dof) & (dof > 0)
    return np.where(usable, stats.t.ppf(probability, np.where(usable, dof, 1.0)), stats.norm.ppf(probability))


def interval_half_width(stderr, dof) -> np.ndarray:
    """Half-widths of 95 % intervals: the Student-t 97.5 % quantile at the Welch–Satterthwaite degrees of freedom
    ``dof`` (N,) times ``stderr`` (N,) (≈ 1.96·stderr when the variance estimate rests on many samples; wider
    when it rests on few, e.g. the M samples of the last Picard level once the others are variance-reduced)."""
    return (student_t_quantile(0.975, dof) * np.asarray(stderr, np.float64)).astype(np.asarray(stderr).dtype)


def full_float32_matmuls():
    """Matrix products at full precision while tracing the estimators: accelerators may otherwise compute
    float32 products with TF32 inputs (10-bit mantissas; JAX's default on recent NVIDIA GPUs), an error of
    ~1e-3 in the surrogate's residual, as large as the defects SCaSML estimates. A no-op on CPUs."""
    return jax.default_matmul_precision("highest")


def _run_local(runner: _Runner, t, x, index, replica=None, valid=None):
    """Items (t, x, index, replica) on this process's devices; item j uses ``replica_key(key, index[j],
    replica[j])``. With ``valid``, only the first ``valid`` items are computed: their chunks are spread evenly
    over the devices, the others skipped."""
    chunk, lanes, block = runner.layout
    devices = runner.devices
    n = x.shape[0]
    mesh = None
    if len(devices) > 1:
        mesh = jax.make_mesh((len(devices),), ("points",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    n_chunks = math.ceil(n / chunk)
    n_chunks = math.ceil(n_chunks / len(devices)) * len(devices)  # every device gets the same number of chunks
    arrays = [index, t, x] if replica is None else [index, replica, t, x]
    arrays = _chunk(arrays, n, chunk, n_chunks)  # t, x: host arrays from _as_points
    order = None
    if replica is not None:
        used = math.ceil((n if valid is None else valid) / chunk)
        per_device = n_chunks // len(devices)
        order = np.arange(n_chunks)  # used chunk c goes to device c mod D, so that the work is balanced
        order[:used] = (order[:used] % len(devices)) * per_device + order[:used] // len(devices)
        rest = np.setdiff1d(np.arange(n_chunks), order[:used])
        order[used:] = rest
        placed = [np.empty_like(a) for a in arrays]
        for a, p in zip(arrays, placed, strict=True):
            p[order] = a
        active = np.zeros(n_chunks, bool)
        active[order[:used]] = True
        arrays = placed[:2] + [active] + placed[2:]
    if mesh is not None:
        target = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
    else:
        target = devices[0]
    arrays = jax.device_put(tuple(arrays), target)
    work, (tc, xc) = arrays[:-2], arrays[-2:]
    out = jax.device_get(_program(runner.pde, runner.estimator, runner.key, work, tc, xc, mesh, lanes, block))
    if order is not None:
        out = jax.tree.map(lambda a: a[order], out)
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)


def _fingerprint(key, t, x, index, replica, valid) -> np.ndarray:
    """CRC32s of the inputs that decide a multi-process result (so that mismatched calls fail loudly)."""
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    work = [index, np.zeros(0, np.uint32) if replica is None else replica, np.asarray([-1 if valid is None else valid])]
    parts = [np.asarray(key_data), np.asarray(t), np.asarray(x), *(np.asarray(a, np.int64) for a in work)]
    return np.asarray([zlib.crc32(np.ascontiguousarray(a).tobytes()) for a in parts], np.uint32)


def _run_processes(runner: _Runner, t, x, index, replica=None, valid=None):
    """Several processes (``jax.distributed.initialize``): process p computes the p-th contiguous share of the
    items on its own devices, with the point indices a single process would use for them, so per-point keys,
    and hence results, are those of a one-process run; the shares are then gathered onto every process.
    Every process must make the same call (same t, x, key, index_offset; checked by a fingerprint)."""
    from jax.experimental import multihost_utils

    me, count = jax.process_index(), jax.process_count()
    foreign = [d for d in runner.devices if d.process_index != me]
    if foreign:
        raise ValueError(
            f"in a multi-process run each process computes its share on its own devices; devices includes "
            f"{len(foreign)} device(s) of other processes (pass devices=None or a subset of jax.local_devices())"
        )
    prints = multihost_utils.process_allgather(_fingerprint(runner.key, t, x, index, replica, valid))
    if not (prints == prints[:1]).all():
        raise ValueError(
            "multi-process run: the processes passed different query points, keys or index_offset; every process "
            "must make the same call (same t, x, key and index_offset) and receives the full result"
        )
    n = x.shape[0]
    share = math.ceil(n / count)
    lo = me * share
    idx = np.minimum(np.arange(lo, lo + share), n - 1)  # shares past the end repeat the last point (dropped below)
    mine = None if valid is None else int(np.clip(valid - lo, 0, share))
    out = _run_local(runner, t[idx], x[idx], index[idx], None if replica is None else replica[idx], mine)
    gathered = multihost_utils.process_allgather(out, tiled=True)  # (count · share, ...) on every process
    return jax.tree.map(lambda a: np.asarray(a[:n]), gathered)


def _flag_nonfinite(label: str, scalars, vectors):
    """Points where every output is finite (``scalars``: (N,) arrays, ``vectors``: (N, d)); warns otherwise. An
    estimate whose error bar or interval is not finite is no result, even where u itself is finite."""
    finite = np.ones(np.shape(scalars[0]), bool)
    for a in scalars:
        finite &= np.isfinite(a)
    for a in vectors:
        finite &= np.all(np.isfinite(a), axis=-1)
    bad = int(np.sum(~finite))
    if bad:
        first = int(np.argmin(finite))
        warnings.warn(
            f"{label}: the Monte Carlo estimate is not finite at {bad} point(s) of {finite.size} (u, z, a standard "
            f"error or the 95 % interval; first: point {first}); they are flagged False in `.finite`. "
            "Consider clipping (clip=...), fewer levels, or checking the surrogate and equation there (does a "
            "solution exist?).",
            RuntimeWarning,
            stacklevel=3,
        )
    return finite


def _as_output(obj, single: bool):
    """Host results → JAX arrays (one point: its entries), with no small XLA compilations (``jnp.asarray``
    compiles a copy per shape)."""
    return jax.tree.map(lambda a: jax.device_put(a[0] if single else a), obj)


def solve(
    pde: AbstractSemilinearPDE,
    t,
    x,
    estimator: AbstractEstimator | None = None,
    *,
    key: PRNGKeyArray,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
    devices=None,
    index_offset: int = 0,
    max_evaluations: float | None = None,
    allocation: AbstractAllocation | None = None,
    progress: bool = False,
) -> Estimate:
    """Plain Monte Carlo estimate of u and σᵀ∇u at points t (N,), x (N, d) (or one point: scalar t, x (d,)) by
    ``estimator`` (default: ``default_estimator(pde)``).

    Chunks of ``chunk_size`` points (default: from a memory model, independent of N) are sharded over ``devices``
    (default: all local devices); results do not depend on the number of devices. Point i uses the key
    ``fold_in(key, index_offset + i)``: splitting points over calls with matching offsets reproduces one call
    (bit for bit where every call starts at a multiple of ``CPU_LANES`` on CPUs; see the module docstring).
    In a multi-process run (``jax.distributed.initialize``) every process must make this same call (same
    arguments); the points are split over the processes and every process gets the full result.

    Refused before any tracing: an estimator of more than ``max_evaluations`` function evaluations per point
    (default ``MAX_EVALUATIONS_PER_POINT`` = 1e8; ``math.inf`` lifts it), and sizes that cannot fit in memory.
    A host-side call: it compiles its own program, so it cannot run inside ``jax.jit``/``jax.vmap`` (traced t or x
    are refused with a ``TypeError``).

    ``allocation``: None (one run of ``estimator`` per point), ``TargetStderr(absolute=…, relative=…)`` (replicas
    until each point's standard error meets the target, within caps) or ``Budget(evaluations=… | seconds=…)``
    (a total spread where the pilot's errors are largest); see ``scasml.TargetStderr``. Replica r ≥ 1 of point i
    draws from ``fold_in(fold_in(k_i, 2**31 − 1), r)`` with k_i = ``fold_in(key, index_offset + i)``, the key of
    replica 0 (the uniform run).
    ``progress``: a progress bar over the points that receive more replicas.
    """
    if not isinstance(pde, AbstractSemilinearPDE):
        raise TypeError(f"pde must be an AbstractSemilinearPDE, got {type(pde).__name__}")
    if estimator is None:
        estimator = default_estimator(pde)
    counts = _check_estimator(estimator, pde, max_evaluations)
    t, x, single = _as_points(pde, t, x)
    est = _run(pde, estimator, key, t, x, chunk_size, memory_budget, devices, None, index_offset, allocation,
               sum(counts.values()), 0.0, progress)
    u, stderr = np.asarray(est.u), np.asarray(est.u_stderr)
    half = interval_half_width(stderr, est.u_dof)
    lower, upper = u - half, u + half
    finite = _flag_nonfinite("solve", (u, stderr, lower, upper), (est.z, est.z_stderr))
    truncation = _truncation("solve", estimator, pde, t, est.u_corrections, stderr)
    out = Estimate(u, est.z, stderr, est.z_stderr, lower, upper, finite, counts, truncation=truncation,
                   picard_corrections=np.asarray(est.u_corrections), z_dof=np.asarray(est.z_dof),
                   **_allocation_fields(est, len(u)))
    return _as_output(out, single)


# Points per vmap when evaluating û at the query points. Fixed, whatever N: a matrix product's rows are rounded
# alike only within programs of one shape (XLA picks other kernels, e.g. a matrix-vector product for one point,
# that round differently), so û at a point is bit-identical for every N, chunking and position of the point.
_VALUE_BATCH = 256


@eqx.filter_jit
def _surrogate_values(surrogate, t, x):
    batches = jax.tree.map(lambda a: a.reshape((-1, _VALUE_BATCH) + a.shape[1:]), (t, x))
    return jax.lax.map(lambda b: jax.vmap(surrogate)(*b), batches).reshape(-1)


def surrogate_values(surrogate, t, x) -> np.ndarray:
    """û at points t (N,), x (N, d), on the host: the values ``calibrate`` corrects (full-precision matrix
    products, batches of ``_VALUE_BATCH`` points padded to a full batch, so that a point's û does not depend on
    the other points)."""
    t, x = np.asarray(t), np.asarray(x)
    n = t.shape[0]
    batches = max(1, math.ceil(n / _VALUE_BATCH))
    tc, xc = _chunk([t, x], n, _VALUE_BATCH, batches)
    with full_float32_matmuls():
        return np.asarray(_surrogate_values(surrogate, tc.reshape(-1), xc.reshape((-1,) + x.shape[1:])))[:n]


def calibrate(
    surrogate,
    pde: AbstractSemilinearPDE,
    t,
    x,
    estimator: AbstractEstimator | None = None,
    *,
    key: PRNGKeyArray,
    trace: AbstractTraceEstimator = ExactTrace(),
    chunk_size: int | None = None,
    memory_budget: float | None = None,
    devices=None,
    index_offset: int = 0,
    max_evaluations: float | None = None,
    allocation: AbstractAllocation | None = None,
    progress: bool = False,
) -> CalibratedPrediction:
    """SCaSML: û + a Monte Carlo estimate of the defect u − û at points t (N,), x (N, d) (or one point).

    The defect solves ``law_of_defect(pde, surrogate, trace)``; ``estimator`` (default: ``default_estimator`` of
    that PDE, i.e. variance reduction with the next Picard correction under Brownian or geometric Brownian dynamics,
    else ``MultilevelPicard(2, 10)``) solves it. At t = T the result is g(x) exactly (û plus the terminal mismatch),
    with zero error. Chunking and ``devices``, ``index_offset``, multi-process runs, the refusals
    (``max_evaluations``, memory, traced inputs under ``jax.jit``), ``allocation`` and ``progress`` as in ``solve``
    (a relative target applies to the corrected u).
    """
    if not isinstance(pde, AbstractSemilinearPDE):
        raise TypeError(f"pde must be an AbstractSemilinearPDE, got {type(pde).__name__}")
    if not isinstance(trace, AbstractTraceEstimator):
        raise TypeError(f"trace must be an AbstractTraceEstimator (ExactTrace() or HutchinsonTrace(probes)), got "
                        f"{type(trace).__name__}")
    if estimator is not None:
        _check_estimator(estimator, pde, max_evaluations, applicable=False)  # before the surrogate is traced
    t, x, single = _as_points(pde, t, x)
    surrogate = check_surrogate(surrogate, pde)  # traceable, scalar, twice differentiable (nothing evaluated)
    defect = law_of_defect(pde, surrogate, trace)
    if estimator is None:
        estimator = default_estimator(defect)
        _check_estimator(estimator, pde, max_evaluations, applicable=False)
    estimator.check(defect)  # on the PDE it solves, before the surrogate is evaluated
    u_hat = surrogate_values(surrogate, t, x)
    bad = ~np.isfinite(u_hat)
    if bad.any():  # checked before the (expensive) Monte Carlo run
        first = int(np.argmax(bad))
        raise ValueError(
            f"the surrogate returned non-finite values at {int(bad.sum())} query point(s) "
            f"(first: point {first}, t = {float(t[first])})"
        )
    directions = getattr(trace, "probes", None)
    ev = estimator.evaluations(defect)
    counts = {"surrogate_values": ev["terminal"] + 1, "surrogate_gradients": ev["increment"], "residuals": ev["source"]}
    est = _run(defect, estimator, key, t, x, chunk_size, memory_budget, devices, directions, index_offset,
               allocation, sum(counts.values()), u_hat, progress)
    defect_u, stderr = np.asarray(est.u), np.asarray(est.u_stderr)
    u = u_hat + defect_u
    half = interval_half_width(stderr, est.u_dof)
    lower, upper = u - half, u + half
    finite = _flag_nonfinite("calibrate", (u, defect_u, stderr, lower, upper), (est.z,))
    truncation = _truncation("calibrate", estimator, defect, t, est.u_corrections, stderr)
    out = CalibratedPrediction(u, u_hat, defect_u, stderr, est.z, lower, upper, finite, counts,
                               truncation=truncation, picard_corrections=np.asarray(est.u_corrections),
                               **_allocation_fields(est, len(u)))
    return _as_output(out, single)
