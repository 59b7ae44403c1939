"""Accuracy metrics and the statistics that go into metrics.json (no wall-clock times: see timings.json)."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np

from ._config import ExperimentConfig
from ._statistics import mean_interval, paired_t_test, ratio_interval


@dataclasses.dataclass
class MethodResult:
    """One method on one set of points (arrays concatenated over chunks) and its bookkeeping."""

    arrays: dict[str, np.ndarray]
    evaluations: dict
    seconds: float
    seconds_warm: float
    threshold: float | None = None  # the SURE garrote threshold, for methods with shrinkage
    truncation: float | None = None  # multilevel Picard: the truncation |u − u_n| estimated over the points (RMS)
    truncation_share: float | None = None  # ... ÷ the RMS standard error over the points before the horizon

    @property
    def prediction(self) -> np.ndarray:
        return self.arrays["prediction"]


@dataclasses.dataclass
class SweepResult:
    sweep: str  # "base", "levels" or "training_steps"
    value: int
    method: str
    kind: str
    result: MethodResult
    exact: np.ndarray


@dataclasses.dataclass
class Results:
    """Everything a report needs, read back from the run directory."""

    points: list[dict[str, np.ndarray]]  # per repetition: t, x, exact, exact_stderr
    methods: dict[str, list[MethodResult]]  # per method, per repetition
    sweeps: list[SweepResult]
    training_seconds: float | None
    training_curve: dict[str, np.ndarray] | None
    stage_seconds: float = 0.0  # all finished stages together (training, points, methods, sweeps)


def usable_points(result: MethodResult, exact) -> np.ndarray:
    """(N,) bool: the points where the method has a result (a finite prediction and, where recorded, its
    ``finite`` flag: value, error bar and interval finite) and the reference is finite."""
    ok = np.isfinite(np.asarray(result.prediction, np.float64)) & np.isfinite(np.asarray(exact, np.float64))
    if "finite" in result.arrays:
        ok &= np.asarray(result.arrays["finite"], bool)
    return ok


def error_summary(prediction, exact, usable=None) -> dict:
    """Relative L2, mean and max absolute error over the ``usable`` points (default: finite prediction and
    reference) and how many were left out (``nonfinite``)."""
    prediction, exact = np.asarray(prediction, np.float64), np.asarray(exact, np.float64)
    if usable is None:
        usable = np.isfinite(prediction) & np.isfinite(exact)
    usable = np.asarray(usable, bool)
    err = prediction[usable] - exact[usable]
    norm = float(np.linalg.norm(exact[usable]))
    if not err.size:
        return {"relative_l2": None, "mean_absolute": None, "max_absolute": None, "nonfinite": int(usable.size)}
    return {
        "relative_l2": float(np.linalg.norm(err)) / norm if norm > 0 else None,
        "mean_absolute": float(np.mean(np.abs(err))),
        "max_absolute": float(np.max(np.abs(err))),
        "nonfinite": int(np.sum(~usable)),
    }


def _coverage(result: MethodResult, exact, usable) -> float | None:
    lower, upper = result.arrays["lower"], result.arrays["upper"]
    ok = usable & np.isfinite(lower) & np.isfinite(upper)
    if not ok.any():
        return None
    return float(np.mean((exact[ok] >= lower[ok]) & (exact[ok] <= upper[ok])))


NOMINAL_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


def z_scores(result: MethodResult, points: dict, with_dof: bool = False):
    """(interval centre − reference) / combined standard error at the points with a positive, finite one.

    The centre of [lower, upper] is the unshrunk Monte Carlo estimate (a shrunk method keeps the interval of the
    estimate it shrinks); a Monte Carlo reference adds its own variance: s² = stderr² + reference stderr², and
    a widened method its truncation estimate (s² + truncation²).
    For calibrated intervals z is close to N(0, 1). Points at t = T (answered exactly, stderr 0) are left out.
    ``with_dof``: also the degrees of freedom of each point's variance estimate (inf where not recorded).
    """
    with np.errstate(invalid="ignore"):  # an infinite interval (flagged, left out below) has no centre
        centre = 0.5 * (result.arrays["lower"] + result.arrays["upper"])
    scale = np.hypot(result.arrays["stderr"], points["exact_stderr"])
    if "truncation" in result.arrays:  # widened intervals: the truncation estimate in quadrature, as in widen
        scale = np.hypot(scale, result.arrays["truncation"])
    ok = usable_points(result, points["exact"]) & np.isfinite(centre) & np.isfinite(scale) & (scale > 0)
    z = (centre[ok] - points["exact"][ok]) / scale[ok]
    if not with_dof:
        return z
    dof = result.arrays["dof"][ok] if "dof" in result.arrays else np.full(z.shape, np.inf)
    return z, dof


def coverage_at(z: np.ndarray, level: float, dof=None) -> float:
    """Share of |z| within the two-sided quantile of ``level`` (the coverage of a ``level`` interval): normal, or
    Student-t at each point's ``dof`` (the intervals ``solve``/``calibrate`` report)."""
    if dof is None:
        return float(np.mean(np.abs(z) <= NormalDist().inv_cdf(0.5 + level / 2.0)))
    from .._calibrate import student_t_quantile

    return float(np.mean(np.abs(z) <= student_t_quantile(0.5 + level / 2.0, dof)))


def wilson_interval(share: float, n: int, level: float = 0.95) -> list[float]:
    """Wilson score interval of a binomial proportion (coverage over n independent points)."""
    q = NormalDist().inv_cdf(0.5 + level / 2.0)
    centre = (share + q * q / (2 * n)) / (1 + q * q / n)
    half = q / (1 + q * q / n) * math.sqrt(share * (1 - share) / n + q * q / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def interval_calibration(runs: list[MethodResult], points: list[dict]) -> dict | None:
    """Coverage of the method's intervals at several nominal levels and the RMS of its z-scores (pooled)."""
    scores = [z_scores(r, p, with_dof=True) for r, p in zip(runs, points, strict=True)]
    z = np.concatenate([zs for zs, _ in scores])
    dof = np.concatenate([d for _, d in scores])
    if not z.size:
        return None
    share = coverage_at(z, 0.95, dof)
    return {
        "points": int(z.size),
        "z_mean": float(np.mean(z)),
        "z_rms": float(np.sqrt(np.mean(z * z))),
        "coverage_by_nominal_level": {f"{level:g}": coverage_at(z, level, dof) for level in NOMINAL_LEVELS},
        "coverage_95_ci95": wilson_interval(share, int(z.size)),
        "note": "z = (estimate - reference) / sqrt(stderr^2 + reference stderr^2 [+ truncation^2 where widened]); "
                "coverage at a level: |z| within "
                "the Student-t quantile at each point's degrees of freedom (normal where not recorded), as the "
                "intervals; coverage_95_ci95 is the Wilson interval over points (their Monte Carlo draws are "
                "independent given the surrogate)",
    }


def evaluation_split(evaluations: dict) -> tuple[int, int]:
    """(plain evaluations, residual evaluations) per point: a residual ε of the surrogate needs its Laplacian
    (~width forward passes for a PINN), so SCaSML's residual count is kept apart from values, gradients and
    the equation's own g and f."""
    residuals = int(evaluations.get("residuals", 0))
    return int(sum(evaluations.values())) - residuals, residuals


def _interval(values) -> list | None:
    ci = mean_interval(values)
    return None if ci["low"] is None else [ci["low"], ci["high"]]


def method_metrics(config: ExperimentConfig, results: Results) -> dict:
    out = {}
    for method in config.methods:
        runs = results.methods[method.name]
        usable = [usable_points(r, p["exact"]) for r, p in zip(runs, results.points, strict=True)]
        per_rep = [error_summary(r.prediction, p["exact"], ok) for r, p, ok in zip(runs, results.points, usable,
                                                                                    strict=True)]
        stderr = np.concatenate([r.arrays["stderr"][ok] for r, ok in zip(runs, usable, strict=True)])
        stderr = stderr[np.isfinite(stderr)]
        coverage = [c for r, p, ok in zip(runs, results.points, usable, strict=True)
                    if (c := _coverage(r, p["exact"], ok)) is not None]

        def mean_of(key, per_rep=per_rep):
            values = [row[key] for row in per_rep if row[key] is not None]
            return float(np.mean(values)) if values else None

        out[method.name] = {
            "kind": method.kind,
            "label": method.label(),
            "options": method.to_dict(),
            "relative_l2": mean_of("relative_l2"),
            "relative_l2_ci95": _interval([row["relative_l2"] for row in per_rep if row["relative_l2"] is not None]),
            "mean_absolute": mean_of("mean_absolute"),
            "max_absolute": float(max(row["max_absolute"] for row in per_rep if row["max_absolute"] is not None))
            if any(row["max_absolute"] is not None for row in per_rep) else None,
            "nonfinite": int(sum(row["nonfinite"] for row in per_rep)),
            "mean_stderr": float(np.mean(stderr)) if stderr.size else None,
            "interval_coverage": float(np.mean(coverage)) if coverage else None,
            "interval_calibration": interval_calibration(runs, results.points),
            "evaluations_per_point": runs[0].evaluations,
            "plain_evaluations_per_point": evaluation_split(runs[0].evaluations)[0],
            "residual_evaluations_per_point": evaluation_split(runs[0].evaluations)[1],
            "per_repetition": per_rep,
        }
        if method.options.shrinkage != "none":
            out[method.name]["shrinkage_threshold"] = [r.threshold for r in runs]
        if any(r.truncation is not None for r in runs):  # per repetition; in the intervals with ``widen``
            out[method.name]["picard_truncation"] = [r.truncation for r in runs]
            out[method.name]["picard_truncation_share"] = [r.truncation_share for r in runs]
        if "replicas" in runs[0].arrays:  # adaptive: replicas used; with a target, the points that missed it
            replicas = np.concatenate([r.arrays["replicas"] for r in runs])
            out[method.name]["replicas"] = {"mean": float(np.mean(replicas)), "max": int(np.max(replicas))}
            if "met" in runs[0].arrays:
                met = np.concatenate([r.arrays["met"] for r in runs])
                out[method.name]["target_missed"] = {"points": int(np.sum(~met)), "of": int(met.size)}
    return out


def _comparison(config, results, methods, name: str, baseline: str) -> dict:
    """``name`` against ``baseline`` over the points where both have a result. The improvement is
    1 − mean(method's relative L2) / mean(baseline's) over repetitions, with the delta-method interval of that
    ratio (centred on it)."""
    base_runs, new_runs = results.methods[baseline], results.methods[name]
    common = [usable_points(b, p["exact"]) & usable_points(m, p["exact"])
              for b, m, p in zip(base_runs, new_runs, results.points, strict=True)]
    base_l2 = [error_summary(r.prediction, p["exact"], ok)["relative_l2"]
               for r, p, ok in zip(base_runs, results.points, common, strict=True)]
    new_l2 = [error_summary(r.prediction, p["exact"], ok)["relative_l2"]
              for r, p, ok in zip(new_runs, results.points, common, strict=True)]
    improvements = [100.0 * (1.0 - n / b) if (n is not None and b) else None for n, b in
                    zip(new_l2, base_l2, strict=True)]
    abs_base = np.concatenate([np.abs(r.prediction - p["exact"])[ok] for r, p, ok in
                               zip(base_runs, results.points, common, strict=True)])
    abs_new = np.concatenate([np.abs(r.prediction - p["exact"])[ok] for r, p, ok in
                              zip(new_runs, results.points, common, strict=True)])
    base_values = [np.nan if v is None else v for v in base_l2]
    new_values = [np.nan if v is None else v for v in new_l2]
    ratio = ratio_interval(new_values, base_values)
    over_reps = paired_t_test(base_values, new_values)
    if len(base_l2) < 2:
        over_reps["note"] = "one repetition: set evaluation.repetitions ≥ 2 for a test over seeds"
    return {
        "method": name,
        "baseline": baseline,
        "points_compared": int(abs_base.size),
        "points_left_out": int(sum(ok.size for ok in common)) - int(abs_base.size),
        "improvement_percent": None if ratio["ratio"] is None else 100.0 * (1.0 - ratio["ratio"]),
        "improvement_percent_ci95": None if ratio["low"] is None else [100.0 * (1.0 - ratio["high"]),
                                                                         100.0 * (1.0 - ratio["low"])],
        "improvement_percent_per_repetition": improvements,
        "fraction_of_points_improved": float(np.mean(abs_new < abs_base)) if abs_base.size else None,
        "paired_over_points": {
            **paired_t_test(abs_base, abs_new),
            "statistic": "mean over points of |baseline error| - |method error|",
            "caveat": "points share one surrogate and are not independent; prefer the test over repetitions",
        },
        "paired_over_repetitions": {**over_reps, "statistic": "mean over repetitions of baseline - method relative L2"},
    }


def comparisons(config: ExperimentConfig, results: Results, methods: dict) -> list[dict]:
    """Every Monte Carlo method against every surrogate baseline, and every SCaSML method against plain MLP."""
    pairs = []
    baselines = [m.name for m in config.methods_of_kind("surrogate")]
    for m in config.methods:
        if m.kind != "surrogate":
            pairs += [(m.name, b) for b in baselines]
    for m in config.methods_of_kind("scasml"):
        pairs += [(m.name, b.name) for b in config.methods_of_kind("mlp")]
    return [_comparison(config, results, methods, name, base) for name, base in pairs]


def sweep_metrics(results: Results) -> list[dict]:
    rows = []
    for s in results.sweeps:
        rows.append({"sweep": s.sweep, "value": s.value, "method": s.method, "kind": s.kind,
                     **error_summary(s.result.prediction, s.exact, usable_points(s.result, s.exact)),
                     "evaluations_per_point": int(sum(s.result.evaluations.values())),
                     "plain_evaluations_per_point": evaluation_split(s.result.evaluations)[0],
                     "residual_evaluations_per_point": evaluation_split(s.result.evaluations)[1]})
    return rows


def reference_description(config: ExperimentConfig, pde) -> str:
    """What the errors are measured against (one line of the report)."""
    if config.evaluation.at == "reference":
        ref = pde.recorded_reference()
        return (f"recorded u({ref.t:g}, x₀) = {ref.value:g} ± {ref.stderr:g} at x₀ = ({ref.x[0]:g}, …) "
                f"({ref.source}); every test point is (t, x₀) with its own Monte Carlo noise")
    if pde.has_exact:
        return "exact solution"
    return f"Monte Carlo reference ({config.evaluation.reference_samples} samples per point)"


def compute_metrics(config: ExperimentConfig, results: Results, pde) -> dict:
    """The content of metrics.json (deterministic: the same config gives the same file)."""
    methods = method_metrics(config, results)
    stderr = np.concatenate([p["exact_stderr"] for p in results.points])
    return {
        "experiment": config.name,
        "config_sha256": config.fingerprint(),
        "equation": pde.parameters(),
        "points_per_repetition": config.evaluation.points,
        "repetitions": config.evaluation.repetitions,
        "reference": reference_description(config, pde),
        "reference_mean_stderr": float(np.mean(stderr)),
        "methods": methods,
        "comparisons": comparisons(config, results, methods),
        "sweeps": sweep_metrics(results),
    }


def compute_timings(config: ExperimentConfig, results: Results) -> dict:
    """Wall-clock seconds (kept out of metrics.json; a resumed run's times cover only the work it redid)."""
    return {
        "total_stage_seconds": results.stage_seconds,
        "training_seconds": results.training_seconds,
        "methods": {
            name: {
                "seconds": float(sum(r.seconds for r in runs)),
                "seconds_warm_estimate": float(sum(r.seconds_warm for r in runs)),
                "per_repetition": [r.seconds for r in runs],
            }
            for name, runs in results.methods.items()
        },
        "sweeps": [{"sweep": s.sweep, "value": s.value, "method": s.method, "seconds": s.result.seconds,
                    "seconds_warm_estimate": s.result.seconds_warm} for s in results.sweeps],
        "note": "seconds include compilation in the first chunk of each process; seconds_warm_estimate "
                "extrapolates the compiled chunks' time to all chunks",
    }
