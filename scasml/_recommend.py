"""Choosing (levels, base) for a target or a budget: a pilot of each candidate on a few points and the cost model.

For each candidate estimator, one uniform run on ``pilot_points`` of the query points gives the standard error of
one replica at each of them, and a second (warm) run its seconds per point.

* ``TargetStderr``: with its rule a point with one-replica error s needs R = ⌈1.25·(s/τ)²⌉ replicas (1 if
  s ≤ τ), at most ``max_replicas``; the predicted cost of the call is mean(R) × N × (seconds per replica and
  point). Recommended: the least predicted time among the candidates predicted to meet the target everywhere
  (else the one that misses the fewest points).
* ``Budget``: R_total = budget ÷ (evaluations or seconds per replica and point) replicas, Neyman-allocated,
  give a summed squared error (Σ s_i)²/R_total, i.e. an RMS standard error s̄·√(N/R_total) (s̄: the mean
  one-replica error). Recommended: the least predicted RMS standard error among the candidates the budget
  affords (R_total ≥ N).

The cost model sees variance only. A multilevel Picard estimator also has a bias that replicas do not remove, the
Picard truncation |u − u_n|; with at least ``MIN_TRUNCATION_POINTS`` = 32 pilot points (the default) the pilot
estimates it (its RMS over the pilot points before the horizon, as ``calibrate`` does) and the table shows it,
marked where it exceeds 0.3 × the predicted RMS standard error (where ``calibrate`` warns). It does not change
the ranking: the estimate can overstate the truncation (BSB-100: 0.44 × the standard error where none is
detected; experiments/RESULTS.md).
Without an estimate (n = 1: none can be formed) nothing is shown, so the default candidates keep levels ≥ 2.
"""

from __future__ import annotations

import math
import time
import warnings

import equinox as eqx
import jax
import numpy as np

from ._adaptive import SAFETY, Budget, TargetStderr, cap_total
from ._calibrate import TRUNCATION_WARNING, calibrate, solve, truncation_estimate
from ._checks import is_count
from ._derivatives import ExactTrace
from .estimators import AbstractEstimator, MultilevelPicard

DEFAULT_CANDIDATES = tuple(MultilevelPicard(2, base) for base in (4, 6, 8, 10, 14)) + tuple(
    MultilevelPicard(3, base) for base in (3, 4, 5))


class Recommendation(eqx.Module):
    """The recommended ``estimator`` and, per candidate, what the pilot measured and the cost model predicts
    (``rows``: dicts with estimator, evaluations per replica, median and max one-replica stderr, the RMS Picard
    truncation (None: not estimated), predicted mean replicas, points predicted to miss, whether the truncation is
    flagged, predicted evaluations and seconds for all points). ``str()`` explains."""

    estimator: AbstractEstimator = eqx.field(static=True)
    rows: tuple = eqx.field(static=True)
    target: TargetStderr = eqx.field(static=True)
    points: int = eqx.field(static=True)

    def __str__(self) -> str:
        lines = [f"for {self.target!r} at {self.points} points before the horizon (pilot: "
                 f"{self.rows[0]['pilot_points']} points, seconds measured warm on this machine):",
                 f"{'estimator':<42} {'evals/replica':>13} {'median se':>10} {'max se':>9} {'truncation':>10} "
                 f"{'replicas':>9} {'misses':>7} {'RMS se':>9} {'evaluations':>12} {'seconds':>8}"]
        for row in self.rows:
            mark = " <- recommended" if row["estimator"] == self.estimator else ""
            cut = "—" if row["truncation"] is None else f"{row['truncation']:.3g}" + ("!" if row["flagged"] else "")
            lines.append(f"{row['estimator']!r:<42} {row['cost']:>13.4g} {row['median_stderr']:>10.3g} "
                         f"{row['max_stderr']:>9.3g} {cut:>10} {row['replicas']:>9.2f} {row['misses']:>7.0%} "
                         f"{row['rms_stderr']:>9.3g} {row['evaluations']:>12.4g} {row['seconds']:>8.3g}{mark}")
        if isinstance(self.target, Budget):
            why = ("the least predicted RMS standard error within the budget (Neyman allocation: (Σ s_i)²/R_total; "
                   "candidates the budget cannot give one replica per point are marked by RMS se = inf)")
        else:
            why = ("the least predicted time among the candidates predicted to meet the target at every point "
                   "(replicas ∝ stderr², within max_replicas and max_evaluations; candidates whose pilot alone "
                   "exceeds max_evaluations are marked by RMS se = inf)")
        return "\n".join(lines + [f"why: {why}. truncation: the pilot's estimate of the Picard bias, which is not "
                                   f"in this model (—: none, n = 1 or fewer than 32 pilot points; !: above "
                                   f"{TRUNCATION_WARNING} × the predicted RMS se, consider more levels)"])


def recommend(
    surrogate,
    pde,
    t,
    x,
    target: TargetStderr | Budget,
    *,
    key,
    candidates=DEFAULT_CANDIDATES,
    pilot_points: int = 32,
    trace=ExactTrace(),
) -> Recommendation:
    """Recommend an estimator for ``calibrate(..., allocation=target)`` (a ``TargetStderr`` or a ``Budget``) at
    points t (N,), x (N, d) (``surrogate`` None: for ``solve``). ``candidates``: the estimators to compare
    (default: MultilevelPicard with n = 2, M ∈ {4, 6, 8, 10, 14} and n = 3, M ∈ {3, 4, 5}); each is compiled and
    run twice on ``pilot_points`` evenly spaced points (the second run timed). Returns a ``Recommendation``;
    print it for the table and the reason."""
    if not isinstance(target, (TargetStderr, Budget)):
        raise TypeError(f"target must be a scasml.TargetStderr or a scasml.Budget, got {type(target).__name__}")
    candidates = tuple(candidates)
    if not candidates or not all(isinstance(c, AbstractEstimator) for c in candidates):
        raise TypeError("candidates must be a non-empty sequence of estimators (e.g. MultilevelPicard(2, 8))")
    if not is_count(pilot_points):
        raise ValueError(f"pilot_points must be a positive integer, got {pilot_points!r}")
    t, x = np.asarray(t), np.asarray(x)
    rows_in = x.shape[0] if x.ndim == 2 else 1
    t, x = np.broadcast_to(t, (rows_in,)), x.reshape(rows_in, -1)
    live = np.flatnonzero(t < pde.horizon)  # points at t = T are answered exactly: they cost no replicas
    n = live.size
    if n == 0:
        raise ValueError("recommend: every point is at the horizon t = T, where u = g is exact: nothing to estimate")
    chosen = live[np.unique(np.linspace(0, n - 1, min(pilot_points, n)).round().astype(int))]
    tp, xp = t[chosen], x[chosen]
    rows = []
    for estimator in candidates:
        run = lambda k, estimator=estimator: (
            solve(pde, tp, xp, estimator, key=jax.random.fold_in(key, k)) if surrogate is None else
            calibrate(surrogate, pde, tp, xp, estimator, key=jax.random.fold_in(key, k), trace=trace))
        with warnings.catch_warnings():  # the table reports the truncation that calibrate would warn about
            warnings.filterwarnings("ignore", ".*the Picard truncation", RuntimeWarning)
            pilot = run(0)
            start = time.perf_counter()
            jax.block_until_ready(run(1).u)
        per_point = (time.perf_counter() - start) / len(chosen)
        usable = np.asarray(pilot.finite, bool)  # statistics over the pilot points with a result
        if not usable.all():
            warnings.warn(f"recommend: {estimator!r} gave no finite estimate at {int((~usable).sum())} of "
                          f"{usable.size} pilot points; its row uses the others", RuntimeWarning, stacklevel=2)
        stderr = np.asarray(pilot.stderr, np.float64)[usable]
        cost = sum(pilot.evaluations.values())
        if not stderr.size:  # nothing to predict from: ranked last
            rows.append({"estimator": estimator, "cost": cost, "median_stderr": math.nan, "max_stderr": math.nan,
                         "pilot_points": len(chosen), "truncation": None, "replicas": math.nan, "misses": 1.0,
                         "rms_stderr": math.inf, "flagged": False, "evaluations": math.nan, "seconds": math.inf})
            continue
        row = {"estimator": estimator, "cost": cost, "median_stderr": float(np.median(stderr)),
               "max_stderr": float(np.max(stderr)), "pilot_points": len(chosen),
               "truncation": truncation_estimate(pilot.picard_corrections, tp, pde.horizon, np.float64)[0]}
        cut = row["truncation"] or 0.0
        if isinstance(target, Budget):
            total = (target.evaluations / cost) if target.seconds is None else target.seconds / per_point
            affordable = total >= n
            mean_replicas = total / n if affordable else math.nan
            rms = float(np.mean(stderr) * math.sqrt(n / total)) if affordable else math.inf
            row.update(replicas=mean_replicas, misses=0.0, rms_stderr=rms, flagged=cut > TRUNCATION_WARNING * rms,
                       evaluations=mean_replicas * n * cost, seconds=mean_replicas * n * per_point)
        else:
            tol = target.tolerance(np.asarray(pilot.u, np.float64)[usable])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                wanted = np.where(stderr <= tol, 1.0, np.ceil(SAFETY * (stderr / tol) ** 2))
            wanted = np.where(np.isfinite(wanted), wanted, math.inf)
            replicas = np.minimum(wanted, target.max_replicas).astype(np.int64)
            affordable = target.max_evaluations is None or target.max_evaluations >= n * cost
            if target.max_evaluations is not None and affordable:  # the cap, shared as over all n points
                allowed = int(target.max_evaluations // cost * len(chosen) / n)
                replicas = cap_total(replicas, np.ones_like(replicas), max(allowed, len(chosen)))
            reached = stderr / np.sqrt(replicas)
            rms, mean_replicas = float(np.sqrt(np.mean(reached**2))), float(np.mean(replicas))
            if not affordable:  # calibrate would refuse it: the pilot alone exceeds max_evaluations
                rms, mean_replicas = math.inf, math.nan
            row.update(replicas=mean_replicas, misses=float(np.mean(wanted > replicas)) if affordable else 1.0,
                       rms_stderr=rms, flagged=cut > TRUNCATION_WARNING * rms,
                       evaluations=mean_replicas * n * cost, seconds=mean_replicas * n * per_point)
        rows.append(row)
    if all(math.isnan(r["median_stderr"]) for r in rows):
        raise ValueError("recommend: no candidate gave a finite estimate at any pilot point (the surrogate, the PDE "
                         "or its paths are not finite there)")
    if all(math.isinf(r["rms_stderr"]) for r in rows):
        cheapest = min(r["cost"] for r in rows)
        raise ValueError(f"recommend: no candidate fits {target!r}: one replica of the cheapest at each of the {n} "
                         f"points takes {cheapest * n:.4g} function evaluations")
    if isinstance(target, Budget):
        best = min(rows, key=lambda r: r["rms_stderr"])
    else:
        best = min(rows, key=lambda r: (r["misses"], r["seconds"]))
    return Recommendation(best["estimator"], tuple(rows), target, n)
