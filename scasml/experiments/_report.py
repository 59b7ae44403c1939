"""From saved stage results to metrics.json, timings.json, per-point tables, figures and report.md.

``render_report`` reads only the run directory (no training, no Monte Carlo), so ``scasml report DIR``
re-renders everything of a finished run in seconds.
"""

from __future__ import annotations

import dataclasses
import io
import logging

import numpy as np

from .. import __version__
from .._calibrate import truncation_message
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ._config import ExperimentConfig
from ._metrics import NOMINAL_LEVELS, compute_metrics, compute_timings, evaluation_split
from ._rundir import FIGURE_NAMES, RunDirectory, read_json
from ._runner import collect_results, own_estimates, widened_sources

log = logging.getLogger("scasml.experiments")


@dataclasses.dataclass
class Report:
    """What a finished run produced: metrics, timings, the console table, a one-line summary, file names."""

    run_dir: str
    metrics: dict
    timings: dict
    table: str
    summary: str
    files: list[str]


def fmt(value, spec: str = ".3e") -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else format(value, spec)


def _ci(values) -> str:
    return "—" if not values else f"[{values[0]:.2e}, {values[1]:.2e}]"


def _gain(metrics: dict, name: str) -> str:
    for c in metrics["comparisons"]:
        if c["method"] == name and metrics["methods"][c["baseline"]]["kind"] == "surrogate":
            return fmt(c["improvement_percent"], "+.1f") + " %"
    return ""


def _coverage_cell(mm: dict) -> str:
    cal = mm.get("interval_calibration")
    if mm["interval_coverage"] is None or cal is None:
        return "—"
    return f"{100 * mm['interval_coverage']:.1f} %"


def table_rows(config: ExperimentConfig, metrics: dict, timings: dict) -> tuple[list[str], list[list[str]]]:
    """The main table (console and report.md): accuracy, error bars, gain and wall-clock time per method."""
    header = ["method", "description", "rel. L2", "95% CI (reps)", "mean |err|", "max |err|", "mean stderr",
              "95% coverage", "vs surrogate", "seconds"]
    rows = []
    for m in config.methods:
        mm = metrics["methods"][m.name]
        rows.append([
            m.name, m.label(), fmt(mm["relative_l2"], ".3e"), _ci(mm["relative_l2_ci95"]),
            fmt(mm["mean_absolute"], ".2e"), fmt(mm["max_absolute"], ".2e"), fmt(mm["mean_stderr"], ".2e"),
            _coverage_cell(mm), _gain(metrics, m.name), fmt(timings["methods"][m.name]["seconds"], ".1f"),
        ])
    return header, rows


def cost_rows(config: ExperimentConfig, metrics: dict, timings: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method", "plain evaluations / point", "residual evaluations / point", "seconds (wall clock)",
              "seconds without compilation (estimate)"]
    rows = []
    for m in config.methods:
        mm, tm = metrics["methods"][m.name], timings["methods"][m.name]
        plain, residual = evaluation_split(mm["evaluations_per_point"])
        rows.append([m.name, str(plain), str(residual), fmt(tm["seconds"], ".2f"),
                     fmt(tm["seconds_warm_estimate"], ".2f")])
    return header, rows


def calibration_rows(config: ExperimentConfig, metrics: dict) -> tuple[list[str], list[list[str]]]:
    levels = [f"{level:g}" for level in NOMINAL_LEVELS if level != 0.95]
    header = ["method", "mean stderr", "coverage of 95 % intervals (95 % CI)",
              *(f"coverage at {100 * float(level):g} %" for level in levels), "mean z", "RMS z", "points"]
    rows = []
    for m in config.methods:
        mm = metrics["methods"][m.name]
        cal = mm.get("interval_calibration")
        if cal is None:
            continue
        lo, hi = cal["coverage_95_ci95"]
        by = cal["coverage_by_nominal_level"]
        rows.append([m.name, fmt(mm["mean_stderr"], ".2e"),
                     f"{100 * by['0.95']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]",
                     *(f"{100 * by[level]:.1f} %" for level in levels), f"{cal['z_mean']:+.2f}",
                     f"{cal['z_rms']:.2f}", str(cal["points"])])
    return header, rows


def text_table(header, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(header, rows) -> str:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def summary_line(config: ExperimentConfig, metrics: dict, timings: dict) -> str:
    parts = [f"{config.name} ({config.equation_label}, d={config.equation.dim})"]
    headline = [c for c in metrics["comparisons"] if metrics["methods"][c["method"]]["kind"] == "scasml"
                and metrics["methods"][c["baseline"]]["kind"] == "surrogate"]
    if headline:
        c = headline[0]
        base, new = metrics["methods"][c["baseline"]], metrics["methods"][c["method"]]
        parts.append(f"relative L2 {c['baseline']} {fmt(base['relative_l2'], '.2e')} -> {c['method']} "
                     f"{fmt(new['relative_l2'], '.2e')} ({fmt(c['improvement_percent'], '+.1f')} %)")
    else:
        parts.append(", ".join(f"{n} {fmt(m['relative_l2'], '.2e')}" for n, m in metrics["methods"].items()))
    parts.append(f"compute {timings['total_stage_seconds']:.0f} s")
    return "; ".join(parts)


# ---- per-point files --------------------------------------------------------------------------------------


def write_point_results(run: RunDirectory, config: ExperimentConfig, results) -> list[str]:
    """results/points.csv and results/points.npz: every test point (t, x0 … x{d-1}) with the reference and each
    method's prediction, error, standard error and 95 % interval. The coordinate columns are named as
    ``scasml calibrate --points`` reads them."""
    names = [m.name for m in config.methods]
    fields = ("prediction", "stderr", "lower", "upper")
    dim = results.points[0]["x"].shape[1]
    header = ["repetition", "index", "t", *(f"x{i}" for i in range(dim)), "exact", "exact_stderr"]
    header += [f"{n}_{f}" for n in names for f in ("prediction", "error", "stderr", "lower", "upper")]
    lines = [",".join(header)]
    arrays: dict[str, list] = {k: [] for k in ("t", "x", "exact", "exact_stderr")}
    for n in names:
        for f in (*fields, "error"):
            arrays[f"{n}_{f}"] = []
    for r, pts in enumerate(results.points):
        cols = [np.full(len(pts["t"]), r), np.arange(len(pts["t"])), pts["t"], *pts["x"].T, pts["exact"],
                pts["exact_stderr"]]
        for k in ("t", "x", "exact", "exact_stderr"):
            arrays[k].append(pts[k])
        for n in names:
            a = results.methods[n][r].arrays
            err = a["prediction"] - pts["exact"]
            cols += [a["prediction"], err, a["stderr"], a["lower"], a["upper"]]
            for f in fields:
                arrays[f"{n}_{f}"].append(a[f])
            arrays[f"{n}_error"].append(err)
        for row in zip(*cols, strict=True):
            lines.append(",".join([str(int(row[0])), str(int(row[1]))] + [f"{float(v):.9g}" for v in row[2:]]))
    atomic_write_text(run.file("results", "points.csv"), "\n".join(lines) + "\n")
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.stack(v) for k, v in arrays.items()})
    atomic_write_bytes(run.file("results", "points.npz"), buffer.getvalue())
    return ["results/points.csv", "results/points.npz"]


def write_sweep_table(run: RunDirectory, metrics: dict, timings: dict) -> list[str]:
    if not metrics["sweeps"]:
        return []
    header = ["sweep", "value", "method", "relative_l2", "mean_absolute", "max_absolute",
              "plain_evaluations_per_point", "residual_evaluations_per_point", "seconds",
              "seconds_without_compilation_estimate"]
    lines = [",".join(header)]
    for row, t in zip(metrics["sweeps"], timings["sweeps"], strict=True):
        lines.append(",".join(str(v) for v in (row["sweep"], row["value"], row["method"], row["relative_l2"],
                                                row["mean_absolute"], row["max_absolute"],
                                                row["plain_evaluations_per_point"],
                                                row["residual_evaluations_per_point"], t["seconds"],
                                                t["seconds_warm_estimate"])))
    atomic_write_text(run.file("results", "sweeps.csv"), "\n".join(lines) + "\n")
    return ["results/sweeps.csv"]


# ---- report.md --------------------------------------------------------------------------------------------


def _statistics_section(metrics: dict) -> list[str]:
    out = ["## Statistics", ""]
    for c in metrics["comparisons"]:
        pts, reps = c["paired_over_points"], c["paired_over_repetitions"]
        gain, share = c["improvement_percent"], c["fraction_of_points_improved"]
        change = "—" if gain is None else f"{abs(gain):.1f} % {'lower' if gain >= 0 else 'higher'}"
        out.append(f"**{c['method']} vs {c['baseline']}**: relative L2 error {change} (95 % CI of the reduction over "
                   f"repetitions: {_pct(c['improvement_percent_ci95'])}); smaller error at "
                   f"{fmt(None if share is None else 100 * share, '.0f')} % of points.")
        out.append("")
        out.append(f"- over points (n = {pts['n']}): mean |error| reduction {fmt(pts['mean_difference'], '.3e')}, "
                   f"95 % CI [{fmt(pts['low'], '.3e')}, {fmt(pts['high'], '.3e')}], paired t = {fmt(pts['t'], '.2f')}, "
                   f"p = {fmt(pts['p_value'], '.2g')} (points share one surrogate; not independent)")
        if reps["df"] is None:
            out.append(f"- over repetitions: {reps.get('note', 'not available')}")
        else:
            out.append(f"- over repetitions (n = {reps['n']}): mean relative-L2 reduction "
                       f"{fmt(reps['mean_difference'], '.3e')}, 95 % CI [{fmt(reps['low'], '.3e')}, "
                       f"{fmt(reps['high'], '.3e')}], paired t = {fmt(reps['t'], '.2f')}, "
                       f"p = {fmt(reps['p_value'], '.2g')}")
        out.append("")
    return out


def _pct(ci) -> str:
    return "—" if not ci else f"[{ci[0]:+.1f} %, {ci[1]:+.1f} %]"


def _sweep_section(metrics: dict, timings: dict) -> list[str]:
    if not metrics["sweeps"]:
        return []
    header = ["sweep", "value", "method", "rel. L2", "max |err|", "plain evaluations / point",
              "residual evaluations / point", "seconds without compilation (estimate)"]
    rows = [[r["sweep"], str(r["value"]), r["method"], fmt(r["relative_l2"]), fmt(r["max_absolute"], ".2e"),
             str(r["plain_evaluations_per_point"]), str(r["residual_evaluations_per_point"]),
             fmt(t["seconds_warm_estimate"], ".2f")]
            for r, t in zip(metrics["sweeps"], timings["sweeps"], strict=True)]
    note = "On the first test points of repetition 0 (the same rows: [results/sweeps.csv](results/sweeps.csv))."
    return ["## Sweeps", "", note, "", markdown_table(header, rows), ""]


def _surrogate_line(config: ExperimentConfig) -> str:
    s, tr = config.surrogate, config.training
    family = config.surrogate_family
    if family == "python":
        target, _, function = s.kind[len("python:"):].rpartition(":")
        return f"user function `{function}` from `{target}` (`surrogate.kind`; not trained, no checkpoint)"
    if family == "gp":
        return (f"GP (kernel collocation), {s.kernel} kernel, lengthscale factor {s.lengthscale_factor:g}"
                + (f", loaded from `{s.checkpoint}`" if s.checkpoint else
                   f", fitted on {tr.points} + {tr.terminal_points} terminal collocation points "
                   f"(≤ {tr.iterations} Gauss–Newton iterations)"))
    scaling = [f"{k.replace('_', ' ')} {getattr(s, k):g}" for k, default in (
        ("input_offset", 0.0), ("input_scale", 1.0), ("output_scale", 1.0)) if getattr(s, k) != default]
    return (f"PINN {s.depth}×{s.width} {s.activation}" + (", terminal transform" if s.terminal_transform else "")
            + (f" (g smoothed at scale {s.terminal_smoothing:g})" if s.terminal_smoothing else "")
            + "".join(f", {item}" for item in scaling)
            + (f", loaded from `{s.checkpoint}`" if s.checkpoint else
               f", {tr.steps} Adam steps (lr {tr.learning_rate:g} → {tr.final_learning_rate:g}, "
               f"{tr.collocation} collocation points per step, {tr.trace} Laplacian)"))


CAPTIONS = {
    "errors": "Pointwise absolute errors of every method (log10 scale), pooled over repetitions; the black "
              "crossbar of each violin is its median, the whiskers its minimum and maximum.",
    "scatter": "Per-point error of the surrogate (x) against SCaSML (y); points below the diagonal improved.",
    "improvement": "Relative L2 error per method (mean, 95 % CI over repetitions, repetitions as dots) and the "
                   "reduction of the error achieved over the surrogate.",
    "calibration": "Calibration of the Monte Carlo error bars: z = (estimate − reference) / standard error against "
                   "N(0, 1), and the coverage of the intervals at every nominal level (on the diagonal when the "
                   "standard errors are right; the grey band is the spread expected from the finite number of "
                   "points).",
    "band": "Values at the first test points of repetition 0, ordered by the reference value (test points, not a "
            "line through the domain: the report draws only stored results): SCaSML with its 95 % interval, the "
            "surrogate and the reference; below, SCaSML's error with the same interval.",
    "scaling": "Inference-time scaling: error against M / levels and against the evaluations per point.",
    "convergence": "Error against the surrogate's training budget, before and after calibration.",
    "training": "Training loss of the surrogate.",
}


def _error_bar_section(config: ExperimentConfig, metrics: dict) -> list[str]:
    header, rows = calibration_rows(config, metrics)
    if not rows:
        return []
    mc_reference = not metrics["reference"].startswith("exact")
    return [
        "## Error bars",
        "",
        markdown_table(header, rows),
        "",
        "Each Monte Carlo method reports a standard error per point and the 95 % interval estimate ± t standard "
        "errors (t ≈ 2, the Student-t quantile at the variance estimate's degrees of freedom). Coverage is the "
        "share of test points whose reference lies inside the interval (nominal: the level); the bracket is its "
        "95 % Wilson interval over the points. z = (estimate − reference) / "
        "standard error should be close to N(0, 1): mean 0, RMS 1; RMS z > 1 means the error bars are too "
        "narrow. "
        + ("The reference is itself a Monte Carlo estimate: z and the per-level coverage use the combined "
           "standard error √(stderr² + reference stderr²), the 95 % coverage of the main table the interval "
           "alone. " if mc_reference else "")
        + "A method with SURE shrinkage keeps the interval of the estimate it shrinks.",
        "",
        *_truncation_lines(metrics),
    ]


def _truncation_lines(metrics: dict) -> list[str]:
    """One line per multilevel Picard method with a truncation estimate, and whether its intervals include it."""
    lines = []
    for name, mm in metrics["methods"].items():
        pairs = [(v, r) for v, r in zip(mm.get("picard_truncation", ()), mm.get("picard_truncation_share", ()),
                                         strict=True) if v is not None]
        if not pairs:
            continue
        rms, share = (float(np.sqrt(np.mean(np.square(a)))) for a in zip(*pairs, strict=True))
        inside = "in its intervals (`widen`)" if mm["options"].get("widen") else "not in its intervals"
        missing = len(mm["picard_truncation"]) - len(pairs)
        note = f"; no estimate in {missing} repetition(s), whose intervals are unchanged" if missing else ""
        lines.append(f"- `{name}`: Picard truncation |u − u_n| ≈ {rms:.2e} (RMS over the points, {share:.2g} × the "
                     f"RMS standard error), {inside}{note}.")
    if not lines:
        return []
    return ["A multilevel Picard standard error is that of the estimate about the Picard iterate u_n. The "
            "truncation u − u_n, estimated from the last two Picard corrections over each repetition's points "
            "(scasml.widen), is not in the intervals unless the method sets `widen = true`, which adds it, spread "
            "∝ T − t, in quadrature:", "", *lines, ""]


def _warn_truncation(config: ExperimentConfig, results, pde) -> None:
    """Log, once per method that runs its own estimates (a shrunk twin shares them) and has no widened twin, where
    a repetition's Picard truncation estimate is a sizeable share of standard errors whose intervals leave it
    out."""
    widened = widened_sources(config.methods)
    for method in own_estimates(config.methods):
        if method.options.widen or method.name in widened:  # a widened method holds these estimates' truncation
            continue
        for r, (result, points) in enumerate(zip(results.methods[method.name], results.points, strict=True)):
            message = truncation_message(f"method {method.name!r}, repetition {r}", method.estimator(),
                                         result.truncation, result.arrays["stderr"], points["t"] < pde.horizon,
                                         remedy="`widen = true` in the method adds it to the intervals",
                                         next_correction_applies=method.kind == "scasml"
                                         and pde.dynamics.brownian_transitions)
            if message:
                log.warning(message)
                break


def _nonfinite_lines(metrics: dict) -> list[str]:
    """A warning per method with points that have no result (a non-finite value, error bar or interval, or a
    non-finite reference there): they are left out of its errors, and comparisons use the points where both
    methods have one."""
    total = metrics["points_per_repetition"] * metrics["repetitions"]
    lines = [f"- **`{name}` has no result at {mm['nonfinite']} of {total} points** (a non-finite value, error bar or "
             "interval, or reference): they are left out of its errors and coverage."
             for name, mm in metrics["methods"].items() if mm["nonfinite"]]
    if not lines:
        return []
    return [*lines, "", "Comparisons between methods use the points where both have a result "
            "(metrics.json: `points_compared`, `points_left_out`).", ""]


def _adaptive_lines(metrics: dict) -> list[str]:
    """One line per adaptive method: replicas used and the points that missed its target."""
    lines = []
    for name, mm in metrics["methods"].items():
        if "replicas" not in mm:
            continue
        line = f"- `{name}` ({mm['label']}): {mm['replicas']['mean']:.2f} replicas per point on average (at most " \
               f"{mm['replicas']['max']})"
        if "target_missed" in mm:
            missed = mm["target_missed"]
            line += f"; target missed at {missed['points']} of {missed['of']} points"
        lines.append(line + ".")
    return lines + [""] if lines else []


def _cost_section(config: ExperimentConfig, metrics: dict, timings: dict) -> list[str]:
    header, rows = cost_rows(config, metrics, timings)
    return [
        "## Cost",
        "",
        markdown_table(header, rows),
        "",
        *_adaptive_lines(metrics),
        "Plain evaluations are values of the equation's g and f and of the surrogate and its gradient; a "
        "residual evaluation computes the surrogate's PDE residual, its Laplacian included, and costs "
        "several plain ones. Wall-clock seconds include compilation (in the "
        "first chunk of each method in a process); the estimate without compilation scales the time of the "
        "chunks that ran already compiled up to all chunks (timings.json: `seconds_warm_estimate`).",
        "",
    ]


def report_markdown(config: ExperimentConfig, pde, metrics: dict, timings: dict, figures: dict[str, str],
                    files: list[str] = ()) -> str:
    """report.md; ``files`` (relative to the run directory) are the data files it may link to."""
    ev = config.evaluation
    header, rows = table_rows(config, metrics, timings)
    surrogate = _surrogate_line(config)
    lines = [
        f"# {config.name}: {config.equation_label} in {pde.dim} dimensions",
        "",
        *([config.experiment.description, ""] if config.experiment.description else []),
        "- equation: " + ", ".join(f"{k} = {v}" for k, v in metrics["equation"].items()),
        f"- surrogate: {surrogate}",
        f"- test points: {ev.points} per repetition × {ev.repetitions} repetition(s), seed {ev.seed}; "
        f"reference: {metrics['reference']}"
        + (f" (mean stderr {metrics['reference_mean_stderr']:.2e})" if metrics["reference_mean_stderr"] else ""),
        f"- configuration: [config.toml](config.toml) (sha256 `{metrics['config_sha256'][:12]}`), scasml {__version__}",
        "",
        "## Results",
        "",
        markdown_table(header, rows),
        "",
        "Relative L2 = ‖prediction − reference‖₂ / ‖reference‖₂ over the test points (mean over repetitions; the "
        "95 % CI is over repetitions). 'mean stderr' is the mean Monte Carlo standard error of a prediction and "
        "'95% coverage' the share of points whose reference lies in the method's 95 % interval (see Error bars). "
        "'vs surrogate' is the reduction of the relative L2 error. Seconds: wall clock, including compilation "
        "(see Cost).",
        "",
        *_nonfinite_lines(metrics),
        *_error_bar_section(config, metrics),
        *_cost_section(config, metrics, timings),
        *_statistics_section(metrics),
        *_sweep_section(metrics, timings),
        "## Figures",
        "",
    ]
    for name, path in figures.items():
        lines += [f"![{name}]({path})", "", f"*{CAPTIONS[name]}* ([PDF]({path[:-4]}.pdf))", ""]
    clipped = [m.name for m in config.methods if m.kind != "surrogate" and m.is_picard and m.options.clip is not None]
    data = [("metrics.json", "metrics.json (deterministic for a given config)"),
            ("timings.json", "timings.json (wall clock)"),
            ("results/points.csv", "results/points.csv"), ("results/points.npz", "results/points.npz"),
            ("results/sweeps.csv", "results/sweeps.csv")]
    linked = [f"[{text}]({name})" for name, text in data if name in files]
    lines += [
        "## Notes",
        "",
        "- Numbers: " + ", ".join(linked) + ". The per-point files hold t, the coordinates x0 … x"
        f"{pde.dim - 1}, the reference and each method's prediction, error, standard error and interval.",
        "- Reproduce: `scasml run config.toml`; re-render this report: `scasml report <run directory>`.",
    ]
    if clipped:
        lines.append(f"- Clipping (a biased heuristic) is on for: {', '.join(clipped)}.")
    return "\n".join(lines) + "\n"


def render_report(run: RunDirectory, config: ExperimentConfig | None = None) -> Report:
    """Recompute metrics from saved results and rewrite every table, figure and report.md."""
    from . import _plots  # matplotlib is imported only when figures are drawn

    config = config or run.config()
    pde = config.make_pde()
    results = collect_results(run, config, pde.horizon)
    _warn_truncation(config, results, pde)
    metrics = compute_metrics(config, results, pde)
    timings = compute_timings(config, results)
    atomic_write_json(run.path / "metrics.json", metrics)
    atomic_write_json(run.path / "timings.json", timings)
    files = ["metrics.json", "timings.json"]
    files += write_point_results(run, config, results)
    files += write_sweep_table(run, metrics, timings)
    figures = {
        "errors": _plots.errors_figure(config, pde, results, metrics),
        "scatter": _plots.scatter_figure(config, pde, results, metrics),
        "improvement": _plots.improvement_figure(config, pde, results, metrics),
        "calibration": _plots.calibration_figure(config, pde, results, metrics),
        "band": _plots.band_figure(config, pde, results),
        "scaling": _plots.scaling_figure(config, pde, metrics),
        "convergence": _plots.convergence_figure(config, pde, metrics),
        "training": _plots.training_figure(config, pde, results.training_curve),
    }
    assert figures.keys() == set(FIGURE_NAMES), "a figure's name must be in FIGURE_NAMES (what --force may delete)"
    written = {}
    for name, fig in figures.items():
        if fig is None:
            continue
        _plots.save_figure(fig, run.file("figures", name))
        written[name] = f"figures/{name}.png"
        files += [f"figures/{name}.png", f"figures/{name}.pdf"]
    atomic_write_text(run.path / "report.md", report_markdown(config, pde, metrics, timings, written, files))
    files.append("report.md")
    run.finish("report", {"seconds": 0.0, "inputs_sha256": run.stages_digest(), "files": files})
    log.info("report written: %s", run.path / "report.md")
    return _report(run, config, metrics, timings, files)


def _report(run, config, metrics, timings, files) -> Report:
    header, rows = table_rows(config, metrics, timings)
    return Report(str(run.path), metrics, timings, text_table(header, rows), summary_line(config, metrics, timings),
                  files)


def cached_report(run: RunDirectory, config: ExperimentConfig) -> Report | None:
    """The existing report when no stage changed since it was rendered (else None: render it)."""
    info = run.stage_info("report")
    if info is None or info.get("inputs_sha256") != run.stages_digest():
        return None
    if not all((run.path / f).is_file() for f in info.get("files", [])):
        return None
    metrics, timings = read_json(run.path / "metrics.json"), read_json(run.path / "timings.json")
    if metrics is None or timings is None:  # damaged: render again
        return None
    log.info("report: cached (no stage changed since it was rendered)")
    return _report(run, config, metrics, timings, info["files"])
