"""Figures of a run, drawn with matplotlib's object API (Agg for PNG, PDF backend for PDF; no pyplot state).

Each ``*_figure`` function returns a ``matplotlib.figure.Figure``; ``save_figure`` writes it as PNG and PDF
atomically.
"""

from __future__ import annotations

import io
from statistics import NormalDist

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .._io import atomic_write_bytes
from ._metrics import coverage_at, z_scores

COLORS = {"surrogate": "#7f7f7f", "mlp": "#1f77b4", "scasml": "#d62728"}
TINY = 1e-12


def _color(kind: str, i: int = 0) -> str:
    palette = {"surrogate": ["#7f7f7f", "#bcbd22"], "mlp": ["#1f77b4", "#17becf", "#9467bd"],
               "scasml": ["#d62728", "#ff7f0e", "#8c564b"]}[kind]
    return palette[i % len(palette)]


def method_colors(config) -> dict[str, str]:
    counts: dict[str, int] = {}
    out = {}
    for m in config.methods:
        out[m.name] = _color(m.kind, counts.get(m.kind, 0))
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return out


def save_figure(fig: Figure, stem) -> list[str]:
    """Write ``stem``.png and ``stem``.pdf atomically; returns the file names."""
    names = []
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, metadata={"CreationDate": None} if fmt == "pdf" else None)
        path = f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        names.append(path)
    return names


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _plain_log_ticks(axis, values) -> None:
    """Label a log axis at the given values with plain numbers (no 10^x minor-tick clutter)."""
    axis.set_ticks(values)
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _title(config, pde) -> str:
    return f"{config.equation_label}, d = {pde.dim}"


def _abs_errors(results, name):
    return np.concatenate([np.abs(r.prediction - p["exact"]) for r, p in
                           zip(results.methods[name], results.points, strict=True)])


def errors_figure(config, pde, results, metrics) -> Figure:
    """Violins of log10 |prediction − exact| per method, pooled over repetitions."""
    names = [m.name for m in config.methods]
    colors = method_colors(config)
    fig = new_figure(1.6 + 1.5 * len(names), 4.2)
    ax = fig.subplots()
    data, positions = [], []
    for i, name in enumerate(names):
        err = _abs_errors(results, name)
        if np.isfinite(err).any():  # a method with no finite result has no violin (its rel. L2 reads "—")
            data.append(np.log10(np.maximum(err[np.isfinite(err)], TINY)))
            positions.append(i + 1)
    if data:
        parts = ax.violinplot(data, positions=positions, showmedians=True, showextrema=True, widths=0.8)
        for body, position in zip(parts["bodies"], positions, strict=True):
            body.set_facecolor(colors[names[position - 1]])
            body.set_edgecolor("black")
            body.set_alpha(0.6)
        for key in ("cmedians", "cmins", "cmaxes", "cbars"):
            parts[key].set_color("black")
            parts[key].set_linewidth(0.8)
        parts["cmedians"].set_linewidth(2.5)  # the median stands out from the min / max caps
    ax.legend(handles=[Line2D([], [], color="black", lw=2.5, label="median (thick crossbar)"),
                       Line2D([], [], color="black", lw=0.8, label="min / max (thin caps)"),
                       Patch(facecolor="lightgrey", edgecolor="black", label="distribution over points")],
              fontsize=8, loc="best")
    positions = np.arange(1, len(names) + 1)
    ax.set_xticks(positions)
    l2 = {n: metrics["methods"][n]["relative_l2"] for n in names}
    ax.set_xticklabels([f"{n}\nrel. L2 " + ("—" if l2[n] is None else f"{l2[n]:.2e}") for n in names], fontsize=8)
    ax.set_ylabel("log10 |prediction − reference|")
    total = config.evaluation.points * config.evaluation.repetitions
    ax.set_title(f"{_title(config, pde)}: pointwise absolute errors ({total} points)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def scatter_figure(config, pde, results, metrics) -> Figure | None:
    """|surrogate error| vs |SCaSML error| per point (below the diagonal = SCaSML better), coloured by t."""
    baselines = config.methods_of_kind("surrogate")
    targets = config.methods_of_kind("scasml")
    if not baselines or not targets:
        return None
    base = baselines[0].name
    fig = new_figure(4.6 * len(targets) + 0.8, 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(targets), squeeze=False)[0])
    t = np.concatenate([p["t"] for p in results.points])
    eb = np.maximum(_abs_errors(results, base), TINY)
    scatter = None
    for ax, target in zip(axes, targets, strict=True):
        es = np.maximum(_abs_errors(results, target.name), TINY)
        ok = np.isfinite(es) & np.isfinite(eb)
        if not ok.any():
            ax.text(0.5, 0.5, f"no point where {base} and\n{target.name} both have a result", ha="center",
                    va="center", transform=ax.transAxes)
            continue
        scatter = ax.scatter(eb[ok], es[ok], c=t[ok], s=6, cmap="viridis", alpha=0.7, linewidths=0)
        lo = min(eb[ok].min(), es[ok].min()) / 2
        hi = max(eb[ok].max(), es[ok].max()) * 2
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="equal error")
        ax.plot([lo, hi], [lo / 10, hi / 10], "k:", lw=0.8, label="10× smaller")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        share = float(np.mean(es[ok] < eb[ok]))
        ax.set_xlabel(f"|error| of {base}")
        ax.set_ylabel(f"|error| of {target.name}")
        ax.set_title(f"{target.name}: better at {100 * share:.0f} % of points", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{_title(config, pde)}: pointwise errors, surrogate vs SCaSML", fontsize=11)
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes), label="t", shrink=0.85)
    return fig


def improvement_figure(config, pde, results, metrics) -> Figure:
    """(a) relative L2 per method (repetitions as dots, 95 % CI); (b) reduction of the error vs the surrogate."""
    names = [m.name for m in config.methods]
    colors = method_colors(config)
    comps = [c for c in metrics["comparisons"] if config.method(c["baseline"]).kind == "surrogate"]
    fig = new_figure(3.0 + 1.2 * len(names) + 1.2 * max(len(comps), 1), 4.2)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(len(names), 1), max(len(comps), 1) + 0.5]})
    x = np.arange(len(names))
    values = [metrics["methods"][n]["relative_l2"] or np.nan for n in names]
    tops = list(values)
    for i, n in enumerate(names):  # markers, not bars: on a log axis a bar's length means nothing
        reps = [row["relative_l2"] for row in metrics["methods"][n]["per_repetition"] if row["relative_l2"]]
        ci = metrics["methods"][n]["relative_l2_ci95"]
        if len(reps) > 1:
            ax1.plot(np.full(len(reps), i) + 0.18, reps, ".", color="black", ms=4, alpha=0.7,
                     label="one repetition" if i == 0 else None)
            tops[i] = max([values[i], *reps])
        if ci:
            low = max(ci[0], values[i] * 1e-3)  # a CI reaching below 0 is cut at the axis' range
            ax1.errorbar(i, values[i], yerr=[[values[i] - low], [ci[1] - values[i]]], color="black", capsize=4,
                         lw=1, label="95 % CI over repetitions" if i == 0 else None)
            tops[i] = max(tops[i], ci[1])
        ax1.plot(i, values[i], "o", color=colors[n], ms=9, markeredgecolor="black",
                 label="mean relative L2" if i == 0 else None)
        ax1.annotate(f"{values[i]:.2e}", (i, tops[i]), ha="center", va="bottom", fontsize=8,
                     xytext=(0, 3), textcoords="offset points")
    ax1.set_xlim(-0.6, len(names) - 0.4)
    if config.evaluation.repetitions > 1:
        ax1.legend(fontsize=7, loc="lower left")
    ax1.set_yscale("log")
    finite = [v for v in values if np.isfinite(v) and v > 0]
    if finite:
        ax1.set_ylim(min(finite) / 3, max(t for t in tops if np.isfinite(t)) * 2.5)
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, fontsize=9)
    ax1.set_ylabel("relative L2 error")
    reps = config.evaluation.repetitions
    ax1.set_title("accuracy" + (f" (mean of {reps} repetitions)" if reps > 1 else ""), fontsize=10)
    ax1.grid(axis="y", alpha=0.3, which="both")
    if comps:
        xs = np.arange(len(comps))
        gains = np.array([c["improvement_percent"] if c["improvement_percent"] is not None else np.nan for c in comps])
        ax2.bar(xs, gains, color=[colors[c["method"]] for c in comps], alpha=0.8)
        ends = []
        for i, c in enumerate(comps):
            ci = c["improvement_percent_ci95"]
            lo, hi = (ci[0], ci[1]) if ci else (gains[i], gains[i])
            if ci:
                ax2.errorbar(i, gains[i], yerr=[[max(gains[i] - lo, 0.0)], [max(hi - gains[i], 0.0)]], color="black",
                             capsize=4)
            up = gains[i] >= 0
            ax2.annotate(f"{gains[i]:+.0f} %", (i, max(hi, gains[i]) if up else min(lo, gains[i])), ha="center",
                         va="bottom" if up else "top", fontsize=9, xytext=(0, 3 if up else -3),
                         textcoords="offset points")
            ends += [lo, hi]
        ax2.axhline(0, color="black", lw=0.8)
        ax2.set_xticks(xs)
        ax2.set_xticklabels([f"{c['method']}\nvs {c['baseline']}" for c in comps], fontsize=8)
        ax2.set_ylabel("reduction of relative L2 error (%)")
        ax2.set_title("improvement over the surrogate", fontsize=10)
        finite_ends = [e for e in ends if np.isfinite(e)]
        low = min([0.0, *finite_ends])
        high = max([100.0, *finite_ends])
        ax2.set_ylim(low - 0.15 * (high - low) - 1, high + 0.12 * (high - low))
        ax2.grid(axis="y", alpha=0.3)
    else:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "no surrogate baseline\nconfigured", ha="center", va="center", transform=ax2.transAxes)
    fig.suptitle(_title(config, pde), fontsize=11)
    return fig


def scaling_figure(config, pde, metrics) -> Figure | None:
    """Inference-time scaling: error vs M (or n), and error vs evaluations per point; one row per swept knob."""
    rows = [axis for axis in ("base", "levels") if any(r["sweep"] == axis for r in metrics["sweeps"])]
    if not rows:
        return None
    colors = method_colors(config)
    fig = new_figure(10, 3.9 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    symbol = {"base": "M (samples per level)", "levels": "n (levels)"}
    for (ax1, ax2), axis in zip(axes, rows, strict=True):
        swept = [r for r in metrics["sweeps"] if r["sweep"] == axis]
        for name in dict.fromkeys(r["method"] for r in swept):
            sel = sorted((r for r in swept if r["method"] == name), key=lambda r: r["value"])
            v = np.array([r["value"] for r in sel], float)
            err = np.array([r["relative_l2"] if r["relative_l2"] is not None else np.nan for r in sel])
            cost = np.array([r["evaluations_per_point"] for r in sel], float)
            ax1.plot(v, err, "o-", color=colors[name], label=name)
            ax2.plot(cost, err, "o-", color=colors[name], label=name)
            for vi, ci, ei in zip(v, cost, err, strict=True):
                ax2.annotate(f"{'M' if axis == 'base' else 'n'}={int(vi)}", (ci, ei), fontsize=7, xytext=(3, 3),
                             textcoords="offset points")
        if axis == "base":
            levels = config.sweep_methods()[0].options.levels
            m = np.array(sorted({r["value"] for r in swept}), float)
            for name in dict.fromkeys(r["method"] for r in swept):
                first = min((r for r in swept if r["method"] == name), key=lambda r: r["value"])
                if first["relative_l2"]:
                    label = f"∝ M^(−{levels / 2:g}) (Monte Carlo rate)" if name == swept[0]["method"] else None
                    ax1.plot(m, first["relative_l2"] * (m / m[0]) ** (-levels / 2), ":", color="black", lw=1,
                             label=label)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        _plain_log_ticks(ax1.xaxis, sorted({r["value"] for r in swept}))
        ax1.set_xlabel(symbol[axis])
        ax1.set_ylabel("relative L2 error")
        ax1.set_title(f"error vs {symbol[axis]}", fontsize=10)
        ax1.legend(fontsize=8)
        ax1.grid(alpha=0.3, which="both")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("function evaluations per test point (cost)")
        ax2.set_ylabel("relative L2 error")
        ax2.set_title("error vs inference cost (seconds: report table)", fontsize=10)
        ax2.grid(alpha=0.3, which="both")
    fig.suptitle(f"{_title(config, pde)}: inference-time scaling", fontsize=11)
    return fig


def convergence_figure(config, pde, metrics) -> Figure | None:
    """Error vs training steps for the surrogate and SCaSML, and SCaSML error vs surrogate error."""
    rows = [r for r in metrics["sweeps"] if r["sweep"] == "training_steps"]
    if not rows:
        return None
    fig = new_figure(10, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    by_method: dict[str, list] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    colors = {**{n: _color(r[0]["kind"], i) for i, (n, r) in enumerate(by_method.items())}, **method_colors(config)}
    base_name = next(n for n, r in by_method.items() if r[0]["kind"] == "surrogate")
    base = {r["value"]: np.nan if r["relative_l2"] is None else r["relative_l2"] for r in by_method[base_name]}
    all_errors = []
    for name, sel in by_method.items():
        sel = sorted(sel, key=lambda r: r["value"])
        steps = np.array([r["value"] for r in sel], float)
        err = np.array([r["relative_l2"] or np.nan for r in sel])
        all_errors += list(err[np.isfinite(err)])
        ok = np.isfinite(err) & (err > 0)
        label = name
        if ok.sum() >= 2:
            slope = np.polyfit(np.log(steps[ok]), np.log(err[ok]), 1)[0]
            label += f" (fitted slope {slope:.2f})"
        ax1.plot(steps, err, "o-", color=colors[name], label=label)
        if name != base_name:
            eb = np.array([base[s] for s in steps])
            ax2.plot(eb, err, "o-", color=colors[name], label=name)
            for i in sorted({0, len(steps) - 1}):  # label the smallest and the largest budget
                ax2.annotate(f"{int(steps[i])} steps", (eb[i], err[i]), fontsize=7, xytext=(4, -10),
                             textcoords="offset points")
    lim = [min(all_errors) / 1.5, max(all_errors) * 1.5] if all_errors else [1e-3, 1]
    ax2.plot(lim, lim, "k--", lw=1, label="equal error")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    _plain_log_ticks(ax1.xaxis, sorted(base))
    ax1.set_xlabel("training steps")
    ax1.set_ylabel("relative L2 error")
    ax1.set_title("convergence in the training budget", fontsize=10)
    ax1.legend(fontsize=8, loc="best")
    ax1.grid(alpha=0.3, which="both")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(f"relative L2 error of {base_name}")
    ax2.set_ylabel("relative L2 error after calibration")
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_title("calibrated vs surrogate error", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle(f"{_title(config, pde)}: surrogate training budget", fontsize=11)
    return fig


def training_figure(config, pde, curve) -> Figure | None:
    if curve is None or len(curve["step"]) == 0:
        return None
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    for key, style in (("loss", "-"), ("residual_loss", "--"), ("terminal_loss", ":")):
        ax.plot(curve["step"], curve[key], style, label=key.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (mean squared)")
    ax.set_title(f"{_title(config, pde)}: PINN training", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def _interval_methods(config) -> list:
    """The methods with their own Monte Carlo intervals (a shrunk twin shares its source's interval; a widened
    one has its own)."""
    from ._runner import estimate_sources

    sources = estimate_sources(config.methods)
    return [m for m in config.methods if m.kind != "surrogate" and (sources[m.name] == m.name or m.options.widen)]


def calibration_figure(config, pde, results, metrics) -> Figure | None:
    """(a) histogram of z = (estimate − reference) / stderr against N(0, 1); (b) coverage vs nominal level."""
    methods = [m for m in _interval_methods(config)
               if metrics["methods"][m.name].get("interval_calibration") is not None]
    if not methods:
        return None
    colors = method_colors(config)
    scored = {m.name: [z_scores(r, p, with_dof=True) for r, p in zip(results.methods[m.name], results.points,
                                                                      strict=True)] for m in methods}
    zs = {name: np.concatenate([z for z, _ in parts]) for name, parts in scored.items()}
    dofs = {name: np.concatenate([d for _, d in parts]) for name, parts in scored.items()}
    fig = new_figure(10, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    normal = NormalDist()
    reach = max(4.0, min(8.0, max(float(np.quantile(np.abs(z), 0.995)) for z in zs.values())))
    edges = np.linspace(-reach, reach, 41)
    grid = np.linspace(-reach, reach, 400)
    for m in methods:
        z = zs[m.name]
        outside = int(np.sum(np.abs(z) > reach))
        label = f"{m.name}: RMS z {np.sqrt(np.mean(z * z)):.2f}" + (f" ({outside} beyond ±{reach:.0f})" if outside
                                                                     else "")
        ax1.hist(np.clip(z, -reach, reach), bins=edges, density=True, histtype="step", lw=1.5, color=colors[m.name],
                 label=label)
    ax1.plot(grid, [normal.pdf(g) for g in grid], "k--", lw=1, label="N(0, 1)")
    ax1.set_xlim(-reach, reach)
    ax1.set_xlabel("z = (estimate − reference) / standard error")
    ax1.set_ylabel("density")
    ax1.set_title("z-scores (calibrated: N(0, 1))", fontsize=10)
    ax1.legend(fontsize=8, loc="upper left")
    ax1.grid(alpha=0.3)

    levels = np.linspace(0.01, 0.995, 200)
    n = min(z.size for z in zs.values())
    spread = 1.96 * np.sqrt(levels * (1 - levels) / n)
    ax2.fill_between(100 * levels, 100 * (levels - spread), 100 * (levels + spread), color="grey", alpha=0.25,
                     lw=0, label=f"±1.96 binomial s.e. ({n} points)")
    ax2.plot([0, 100], [0, 100], "k--", lw=1, label="nominal")
    for m in methods:
        z = zs[m.name]
        c95 = coverage_at(z, 0.95, dofs[m.name])
        ax2.plot(100 * levels, [100 * coverage_at(z, level, dofs[m.name]) for level in levels], color=colors[m.name],
                 lw=1.5,
                 label=f"{m.name}: {100 * c95:.1f} % at 95 % (dot)")
        ax2.plot(95, 100 * c95, "o", color=colors[m.name], ms=5)
    ax2.set_xlim(0, 100)
    ax2.set_ylim(0, 100)
    ax2.set_aspect("equal")
    ax2.set_xlabel("nominal level of the interval ± q·stderr (%)")
    ax2.set_ylabel("share of points inside (%)")
    ax2.set_title("coverage vs nominal level", fontsize=10)
    ax2.legend(fontsize=8, loc="upper left")
    ax2.grid(alpha=0.3)
    total = config.evaluation.points * config.evaluation.repetitions
    fig.suptitle(f"{_title(config, pde)}: calibration of the error bars ({total} points)", fontsize=11)
    return fig


def band_figure(config, pde, results, points: int = 40) -> Figure | None:
    """The first ``points`` test points of repetition 0, ordered by the reference: SCaSML ± 1.96 stderr, the
    surrogate and the reference; below, SCaSML's error with its 95 % interval (the surrogate's error in the
    title: on the scale of the interval it would flatten everything else)."""
    targets = [m for m in _interval_methods(config) if m.kind == "scasml"] or _interval_methods(config)
    if not targets:
        return None
    target = targets[0]
    colors = method_colors(config)
    ref = results.points[0]
    k = min(points, len(ref["t"]))
    order = np.argsort(ref["exact"][:k], kind="stable")
    exact = ref["exact"][:k][order]
    arrays = results.methods[target.name][0].arrays
    centre = (0.5 * (arrays["lower"] + arrays["upper"]))[:k][order]
    scale = np.hypot(arrays["stderr"], ref["exact_stderr"])  # as the coverage in metrics.json (z_scores)
    if "truncation" in arrays:
        scale = np.hypot(scale, arrays["truncation"])
    from .._calibrate import student_t_quantile

    quantile = student_t_quantile(0.975, arrays["dof"]) if "dof" in arrays else 1.959963984540054
    half = np.broadcast_to(quantile * scale, scale.shape)[:k][order]
    rank = np.arange(k)
    baselines = config.methods_of_kind("surrogate")
    base = results.methods[baselines[0].name][0].prediction[:k][order] if baselines else None
    fig = new_figure(9, 6.2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1]})
    ax1.errorbar(rank, centre, yerr=half, fmt="o", ms=3.5, color=colors[target.name], ecolor=colors[target.name],
                 elinewidth=1.2, capsize=2.5, label=f"{target.name} with its 95 % interval")
    if base is not None:
        ax1.plot(rank, base, "x", color=COLORS["surrogate"], ms=5, label=baselines[0].name)
    ax1.plot(rank, exact, "_", color="black", ms=12, mew=1.5, label="reference")
    ax1.set_ylabel("u(t, x)")
    ax1.legend(fontsize=8, loc="upper left")
    ax1.grid(alpha=0.3)
    ax1.set_title(f"{_title(config, pde)}: values at {k} test points with 95 % intervals", fontsize=11)
    ax2.errorbar(rank, centre - exact, yerr=half, fmt="o", ms=3.5, color=colors[target.name],
                 ecolor=colors[target.name], elinewidth=1.2, capsize=2.5,
                 label=f"{target.name} − reference, with its 95 % interval")
    ax2.axhline(0, color="black", lw=0.8)
    inside = int(np.sum(np.abs(centre - exact) <= half))
    title = f"{target.name}'s error: the reference lies in its interval at {inside} of {k} points"
    if base is not None:
        title += f"\n({baselines[0].name}'s error at these points: RMS {np.sqrt(np.mean((base - exact) ** 2)):.2e})"
    ax2.set_xlabel("test point (repetition 0), ordered by the reference value")
    ax2.set_ylabel("error")
    ax2.set_title(title, fontsize=10)
    ax2.legend(fontsize=8, loc="upper left")
    ax2.grid(alpha=0.3)
    return fig
