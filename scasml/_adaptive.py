"""Per-point Monte Carlo budgets: a target standard error, or a total budget, spent where it is needed.

The standard errors of one batch of query points differ by orders of magnitude, so a uniform budget spends
most of its work where it is not needed. The unit of adaptive work is a *replica*: one independent run of the
estimator at a point; replica r of point i draws from ``replica_key(key, i, r)`` (replica 0 is the draw of the
uniform run), so results depend only on (key, i, r), never on chunking, devices or the other points.

A few stages, decided in advance (Stein's two-stage procedure, 1945, with at most one more top-up):

1. *Pilot*: one replica at every point (exactly the uniform run). Its standard error s_i (of one replica)
   decides the number R_i of replicas of point i.
2. *Top-up*: R_i − 1 further replicas, drawn independently of the pilot. The estimate is the mean of the
   replicas and its standard error sqrt(Σ_r s_r²)/R (each replica's own standard error from its samples).
3. (``TargetStderr`` with ``rounds=2``, the default) the points still short of their target get one more
   top-up, sized from the variance of all their replicas, which is far better determined than the pilot's.

Stopping on a noisy variance estimate biases naive intervals when the decision is taken again and again (keep
sampling until the running error looks small). Here at most two decisions are taken, and every decision only
adds fresh replicas, which conditional on the decision are unbiased with honest standard errors; the replicas
that informed a decision keep their weight 1/R. Measured coverage: experiments/RESULTS.md ("Adaptive budgets")
and tests/test_adaptive.py. This needs a well-determined standard error per replica: where it rests on few degrees
of freedom (``MultilevelPicard(qmc_sets=4)``: 3), the points that stop after the pilot are those whose standard
error came out small, and the pooled error bars are 10–20 % too narrow (RESULTS, "Variance reduction"); the
allocations that decide from the pilot warn below a median of ``MIN_PILOT_DOF`` degrees of freedom.

Rules (``TargetStderr``): nothing more where the standard error already meets the tolerance τ_i; otherwise
R_i = ⌈1.25·(s_i/τ_i)²⌉ (25 % more than the variance estimate asks for, so that its noise rarely leaves a point
short), capped by ``max_replicas`` and, over all points, by ``max_evaluations`` (the most demanding points are
cut first). ``Budget``: R_i ∝ s_i (Neyman allocation: it minimises Σ_i s_i²/R_i, the expected summed squared
Monte Carlo error, for Σ R_i fixed), R_i ≥ 1, decided once from the pilot.
"""

from __future__ import annotations

import abc
import math
import time
import warnings
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np

from ._checks import as_count, is_count, is_real

# Replicas asked for beyond the pilot's estimate where the pilot misses the target (see the module docstring).
SAFETY = 1.25
# Below this median number of degrees of freedom of the pilot's standard errors, allocations that decide from them
# warn: the points that stop early are those whose standard error came out small (4 QMC nets, median ν 4–8: pooled
# error bars 10–20 % too narrow; 8 nets of 32 points, ν ≈ 10–12: 3–4 %; experiments/RESULTS.md).
MIN_PILOT_DOF = 8
# The most replicas one call may run (in all, and so at any point): replica numbers are drawn as uint32 keys, and
# beyond this the run would not end in any reasonable time anyway.
MAX_REPLICAS = 2**31 - 1


def _positive(value, label: str, owner: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if not (is_real(value) and 0 < value < math.inf):
        raise ValueError(f"{owner} {label} must be a positive finite number{' or None' if allow_none else ''}, "
                         f"got {value!r}")


class AbstractAllocation(eqx.Module):
    """How many replicas each query point receives, decided from a pilot replica at every point and, for up to
    ``rounds − 1`` further top-ups, from all replicas so far.

    Subclasses implement ``check`` (refuse impossible settings before any work) and ``replicas``.
    """

    rounds: eqx.AbstractVar[int]
    decides_from_pilot: ClassVar[bool] = True  # the counts depend on the pilot's standard errors

    @abc.abstractmethod
    def check(self, points: int, cost: float) -> None:
        """Raise a ValueError for settings that ``points`` points, one replica costing ``cost`` function
        evaluations per point, cannot satisfy (e.g. a budget below the pilot's cost)."""

    @abc.abstractmethod
    def replicas(self, u, spread, done, cost: float, pilot_seconds: float) -> np.ndarray:
        """Replicas wanted in all per point (N,), at least ``done`` (N,), from the estimates so far ``u`` (N,)
        and the standard error of one replica ``spread`` (N,) (0 where no Monte Carlo is needed, e.g. t = T);
        ``cost``: function evaluations per replica and point; ``pilot_seconds``: the pilot's wall time."""

    def tolerance(self, u) -> np.ndarray | None:
        """Per-point target standard error (N,), or None when the allocation has no target."""
        return None


class TargetStderr(AbstractAllocation):
    """Replicas until the standard error of u meets ``absolute`` and/or ``relative``·|u| at every point, within
    caps.

    The tolerance of point i is τ_i = max(absolute, relative·|u_i|) (either may be None; one is required), as in
    ``scipy.integrate.quad``: a point meets it when either holds. ``max_replicas`` caps each point
    (default 64; the pilot counts as one); ``max_evaluations`` (optional) caps the function evaluations of the
    whole call, pilot included: the most demanding points are cut first. ``rounds`` (default 2): top-ups after
    the pilot; the second serves the points whose first top-up fell short, with the variance estimated from
    all their replicas. A point's result reports whether it met its tolerance (``met``) and the replicas it used.
    """

    absolute: float | None = None
    relative: float | None = None
    max_replicas: int = eqx.field(default=64, converter=as_count)
    max_evaluations: float | None = None
    rounds: int = eqx.field(default=2, converter=as_count, kw_only=True)

    def __check_init__(self):
        _positive(self.absolute, "absolute", "TargetStderr")
        _positive(self.relative, "relative", "TargetStderr")
        if self.absolute is None and self.relative is None:
            raise ValueError("TargetStderr needs absolute= and/or relative= (a target standard error of u)")
        if not (is_count(self.max_replicas) and self.max_replicas <= MAX_REPLICAS):
            raise ValueError(f"TargetStderr max_replicas must be a positive integer (the pilot is one replica) of at "
                             f"most {MAX_REPLICAS}, got {self.max_replicas!r}")
        _positive(self.max_evaluations, "max_evaluations", "TargetStderr")
        if not is_count(self.rounds):
            raise ValueError(f"TargetStderr rounds must be a positive integer (top-ups after the pilot), got "
                             f"{self.rounds!r}")

    def check(self, points: int, cost: float) -> None:
        if self.max_evaluations is not None and self.max_evaluations < points * cost:
            raise ValueError(
                f"TargetStderr max_evaluations = {self.max_evaluations:.4g} is below the pilot's cost: one replica at "
                f"each of {points} points takes {points * cost:.4g} function evaluations ({cost:.4g} per point)"
            )

    def tolerance(self, u) -> np.ndarray:
        u = np.abs(np.asarray(u, np.float64))
        absolute = 0.0 if self.absolute is None else self.absolute
        relative = 0.0 if self.relative is None else self.relative * u
        return np.maximum(absolute, relative)

    def replicas(self, u, spread, done, cost, pilot_seconds) -> np.ndarray:
        tol = self.tolerance(u)
        s = np.asarray(spread, np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            wanted = np.ceil(SAFETY * (s / tol) ** 2)
        # met already, or no finite estimate to improve (flagged non-finite in the result): nothing more
        enough = (s <= tol * np.sqrt(done)) | ~np.isfinite(s)
        wanted = np.where(enough, done, np.where(np.isfinite(wanted), np.maximum(wanted, done + 1), self.max_replicas))
        counts = np.clip(wanted, done, np.maximum(done, self.max_replicas)).astype(np.int64)
        if self.max_evaluations is not None:
            counts = cap_total(counts, done, int(self.max_evaluations // cost))
        return counts


class Budget(AbstractAllocation):
    """A total budget, pilot included, spread over the points to minimise the expected summed squared Monte
    Carlo error: R_i ∝ s_i (Neyman allocation from the pilot's standard errors), every point at least its pilot.

    ``evaluations``: function evaluations of the whole call (a replica at one point costs
    ``sum(estimator.evaluations(pde).values())``); ``seconds``: wall time, converted with the pilot's time per
    replica (compilation included, so the call tends to end early rather than late). Give exactly one.
    """

    evaluations: float | None = None
    seconds: float | None = None
    rounds: int = eqx.field(default=1, init=False)  # the whole budget is allocated from the pilot, once

    def __check_init__(self):
        _positive(self.evaluations, "evaluations", "Budget")
        _positive(self.seconds, "seconds", "Budget")
        if (self.evaluations is None) == (self.seconds is None):
            raise ValueError("Budget needs exactly one of evaluations= (function evaluations in all) or seconds=")

    def check(self, points: int, cost: float) -> None:
        if self.evaluations is not None and self.evaluations < points * cost:
            raise ValueError(
                f"Budget evaluations = {self.evaluations:.4g} is below the pilot's cost: one replica at each of "
                f"{points} points takes {points * cost:.4g} function evaluations ({cost:.4g} per point)"
            )
        if self.evaluations is not None and self.evaluations / cost > MAX_REPLICAS:
            raise ValueError(
                f"Budget evaluations = {self.evaluations:.4g} is {self.evaluations / cost:.4g} replicas of "
                f"{cost:.4g} function evaluations, beyond the {MAX_REPLICAS} one call can run"
            )
        if self.seconds is not None and jax.process_count() > 1:
            raise ValueError(
                "Budget(seconds=...) cannot be used in a multi-process run: each process times its own pilot, so the "
                "processes would decide different replica counts; give Budget(evaluations=...) instead"
            )

    def replicas(self, u, spread, done, cost, pilot_seconds) -> np.ndarray:
        n = np.size(spread)
        if n == 0:  # every point at the horizon: nothing to estimate
            return np.asarray(done, np.int64)
        if self.evaluations is not None:
            total = int(self.evaluations // cost)
        elif pilot_seconds >= self.seconds:
            warnings.warn(f"Budget: the pilot alone took {pilot_seconds:.3g} s of the {self.seconds:.3g} s budget; "
                          "no further replicas", RuntimeWarning, stacklevel=4)
            return np.asarray(done, np.int64)
        else:
            total = min(n + int((self.seconds - pilot_seconds) / (pilot_seconds / n)), MAX_REPLICAS)
        return neyman(spread, total)


class Uniform(AbstractAllocation):
    """``replicas_per_point`` independent replicas at every point (the uniform baseline of the adaptive
    allocations; also a way to a better-determined error bar at the same estimator)."""

    replicas_per_point: int = eqx.field(converter=as_count)
    rounds: int = eqx.field(default=1, init=False)
    decides_from_pilot: ClassVar[bool] = False

    def __check_init__(self):
        if not is_count(self.replicas_per_point):
            raise ValueError(f"Uniform replicas_per_point must be a positive integer, got {self.replicas_per_point!r}")

    def check(self, points: int, cost: float) -> None:
        pass

    def replicas(self, u, spread, done, cost, pilot_seconds) -> np.ndarray:
        return np.maximum(done, self.replicas_per_point).astype(np.int64)


def neyman(stderr, total: int) -> np.ndarray:
    """Integers R_i ≥ 1 with Σ R_i = ``total`` (≥ N) minimising Σ s_i²/R_i: the continuous optimum
    R_i = max(1, λ s_i) rounded down, then the remaining units to the largest gains s_i²/(R_i(R_i + 1))."""
    s = np.where(np.isfinite(stderr), np.asarray(stderr, np.float64), 0.0)
    n = s.size
    if total < n:
        raise ValueError(f"a budget of {total} replicas cannot give each of {n} points its pilot")
    if not np.any(s > 0):
        return np.ones(n, np.int64)
    lo, hi = 0.0, total / s[s > 0].min()
    for _ in range(200):  # Σ max(1, λ s_i) increases with λ
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum(np.maximum(1.0, mid * s)) <= total else (lo, mid)
    counts = np.floor(np.maximum(1.0, lo * s)).astype(np.int64)
    left = total - int(counts.sum())
    if left > 0:
        gain = s**2 / (counts * (counts + 1.0))
        counts[np.argsort(-gain, kind="stable")[:left]] += 1
    return counts


def cap_total(counts: np.ndarray, done: np.ndarray, total: int) -> np.ndarray:
    """``counts`` (≥ ``done``) lowered to max(done, min(counts, L)) for the largest level L whose sum fits in
    ``total`` (the most demanding points cut first); ``done`` when nothing more fits."""
    level = lambda cap: np.maximum(done, np.minimum(counts, cap))
    if counts.sum() <= total:
        return counts
    lo, hi = 0, int(counts.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if level(mid).sum() <= total else (lo, mid - 1)
    return level(lo)


class Allocated(eqx.Module):
    """Host results of an allocated run: per point the mean over its replicas, standard errors, the
    Welch–Satterthwaite degrees of freedom of u's and z's variances, the mean of the replicas' Picard corrections
    (with the variance of that mean), replicas used, whether it met the target (None without a target) and a
    one-paragraph summary."""

    u: np.ndarray
    z: np.ndarray
    u_stderr: np.ndarray
    z_stderr: np.ndarray
    u_dof: np.ndarray
    z_dof: np.ndarray
    u_corrections: np.ndarray
    replicas: np.ndarray
    met: np.ndarray | None
    summary: str = eqx.field(static=True)


def run_allocated(runner, allocation: AbstractAllocation, t, x, index, cost: float, offset_u=0.0,
                  progress: bool = False) -> Allocated:
    """The procedure of the module docstring with ``runner`` (``scasml._calibrate._Runner``) at points
    (t (N,), x (N, d)) of indices ``index`` (N,); ``offset_u`` is added to the estimate before a relative
    tolerance is applied (``calibrate``: the surrogate's values)."""
    from ._progress import ProgressBar

    n = x.shape[0]
    live = t < runner.pde.horizon
    allocation.check(int(live.sum()), cost)
    live_t = np.where(live, t, np.zeros_like(t))
    start = time.perf_counter()
    pilot = runner.finish(runner.run(live_t, x, index, np.zeros(n, np.uint32)), t, x)
    pilot_seconds = time.perf_counter() - start
    _warn_if_few_dof(allocation, pilot, live)
    counts = np.ones(n, np.int64)
    sums = [np.asarray(a, np.float64) for a in (pilot.u, pilot.z, pilot.u_corrections)]
    squares = [np.asarray(a, np.float64) ** 2 for a in (pilot.u_stderr, pilot.z_stderr)]
    fourth = list(_dof_terms(pilot))  # Σ_r s_r⁴/ν_r of u and z: Welch–Satterthwaite over the replicas
    bar = None
    for _ in range(allocation.rounds):
        u_now = np.broadcast_to(offset_u + sums[0] / counts, counts.shape)
        spread = np.sqrt(squares[0] / counts)  # the standard error of one replica, from all replicas so far
        wanted = counts.copy()
        wanted[live] = allocation.replicas(u_now[live], spread[live], counts[live], cost, pilot_seconds)
        more = wanted - counts
        if not more.any():
            break
        if bar is None:
            bar = ProgressBar("adaptive", int((more > 0).sum()), progress)
        else:
            bar.total += int((more > 0).sum())
        _top_up(runner, t, x, index, counts, more, sums, squares, fourth, bar)
        counts = wanted
    if bar is not None:
        bar.close()
    dtype = np.asarray(pilot.u).dtype
    r = counts.astype(np.float64)
    u = (sums[0] / r).astype(dtype)
    z = (sums[1] / r[:, None]).astype(dtype)
    corrections = sums[2] / r[:, None]
    corrections[:, 2] /= r  # the variance of the mean of r corrections
    corrections = corrections.astype(dtype)
    u_stderr = (np.sqrt(squares[0]) / r).astype(dtype)
    z_stderr = (np.sqrt(squares[1]) / r[:, None]).astype(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof, z_dof = (np.where(f > 0, s**2 / f, np.inf) for s, f in zip(squares, fourth, strict=True))
    tol = allocation.tolerance(offset_u + u)
    met = None if tol is None else np.asarray(u_stderr <= tol)
    summary = _summary(allocation, counts, live, met, cost, pilot_seconds, time.perf_counter() - start)
    return Allocated(u, z, u_stderr, z_stderr, dof, z_dof, corrections, counts, met, summary)


def _warn_if_few_dof(allocation: AbstractAllocation, pilot, live) -> None:
    """Warn where the pilot's standard errors, which decide the counts, rest on few degrees of freedom."""
    if not allocation.decides_from_pilot or not live.any():
        return
    dof = float(np.median(np.asarray(pilot.u_dof, np.float64)[live]))
    if dof < MIN_PILOT_DOF:
        warnings.warn(
            f"{type(allocation).__name__}: the pilot's standard errors rest on a median of {dof:.3g} degrees of "
            f"freedom (below {MIN_PILOT_DOF}); the points that stop early are those whose standard error came out "
            "small, so the pooled error bars are too narrow (with 4 quasi-Monte Carlo nets by 10–20 %). Use an "
            "estimator whose standard error rests on more units (more nets, e.g. qmc_sets=8 with qmc_points=32, more "
            "levels or a larger base), or Uniform replicas.",
            RuntimeWarning,
            stacklevel=5,
        )


def _dof_terms(est) -> tuple[np.ndarray, np.ndarray]:
    """s⁴/ν of u (N,) and of z (N, d) (0 where s = 0 or ν = inf): one replica's share in Welch–Satterthwaite."""
    def term(stderr, dof):
        s2, dof = np.asarray(stderr, np.float64) ** 2, np.asarray(dof, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((s2 > 0) & np.isfinite(dof), s2**2 / dof, 0.0)

    return term(est.u_stderr, est.u_dof), term(est.z_stderr, est.z_dof)


def _top_up(runner, t, x, index, done, more, sums, squares, fourth, bar) -> None:
    """``more`` (N,) replicas after the ``done`` (N,) so far, added into ``sums`` (of u, z, u_corrections) and
    ``squares`` (of their standard errors), in batches of N items: each batch runs the pilot's compiled program,
    unused chunks skipped. ``bar`` counts the points whose replicas are all done."""
    n = x.shape[0]
    total = int(more.sum())
    stops = np.cumsum(more)  # the replicas of point i are the items [stops[i] − more[i], stops[i]) of the sequence
    ends = stops[more > 0]
    before = bar.done
    for lo in range(0, total, n):  # one batch of items at a time: memory does not grow with the total
        hi = min(lo + n, total)
        pad = n - (hi - lo)
        position = np.arange(lo, hi)
        owner = np.searchsorted(stops, position, side="right")
        replica = (done[owner] + position - (stops[owner] - more[owner])).astype(np.uint32)
        items = np.concatenate([owner, np.repeat(owner[-1:], pad)])
        reps = np.concatenate([replica, np.repeat(replica[-1:], pad)])
        out = runner.run(t[items], x[items], index[items], reps, valid=hi - lo)
        mine = owner
        for acc, values in zip(sums, (out.u, out.z, out.u_corrections), strict=True):
            np.add.at(acc, mine, np.asarray(values[: hi - lo], np.float64))
        for acc, values in zip(squares, (out.u_stderr, out.z_stderr), strict=True):
            np.add.at(acc, mine, np.asarray(values[: hi - lo], np.float64) ** 2)
        for acc, values in zip(fourth, _dof_terms(out), strict=True):
            np.add.at(acc, mine, values[: hi - lo])
        finished = before + int(np.searchsorted(ends, hi, side="right"))  # points whose replicas are all done
        bar.update(finished, note=f"points done {finished}/{bar.total}")


def _summary(allocation, counts, live, met, cost, pilot_seconds, seconds) -> str:
    n, n_live = counts.size, int(live.sum())
    extra = int(counts.sum() - n)
    text = (f"{allocation!r}: {n} points; pilot {n_live} replicas ({pilot_seconds:.3g} s), then {extra} more on "
            f"{int((counts > 1).sum())} points (at most {int(counts.max())} per point); "
            f"{(n_live + extra) * cost:.4g} function evaluations, {seconds:.3g} s")
    if isinstance(allocation, TargetStderr):
        missed = ~met & live
        text += f"; target met at {int(n - missed.sum())} of {n} points"
        if missed.any():
            capped = missed & (counts >= allocation.max_replicas)
            text += f" (missed at {int(missed.sum())}: {int(capped.sum())} at max_replicas)"
    return text
