"""How calibration time scales: with the number of query points N, the multilevel Picard base M, and the dimension d.

    python benchmarks/scaling.py                                   # all three sweeps (~10+ min on a 2-core CPU)
    python benchmarks/scaling.py --axes points --json scaling.json # time vs N only
    python benchmarks/scaling.py --quick                           # smoke run, tiny sizes (~2 min on a CPU)

Sweeps (each size is a new shape, hence a new XLA program: every row is compiled once, "cold", then timed
"warm" on the same shapes; the warm time is the minimum of --repeats runs when one run is under --fast seconds):
  points  VB d = 20 with its pretrained surrogate, MultilevelPicard(n, M) (default n = 2, M = 10), N in --points.
          Theory: time ∝ N (exponent 1). Small N are dominated by fixed per-call costs (dispatch, host syncs,
          chunk padding), so the exponent is printed over all N and over N ≥ --large-from (default 1,000).
  M       VB d = 20, N = --points-for-m, MultilevelPicard(n, M) for M in --bases. Theory: evaluations per point
          grow like M^n; the table prints the counts (surrogate values, value-and-gradients, residuals per point)
          and the exponents of time and of evaluations in M, and of time in evaluations.
  d       LCD with an untrained PINN(d) surrogate, N = --points-for-d, MultilevelPicard(n, M); exact trace (the
          PINN's sweep costs ≈ min(d, width) directions), or HutchinsonTrace(4) from d ≥ --hutchinson-from if
          given. Cold and warm seconds.
Exponents: least-squares slope of log(time) against log(size). The header names the JAX backend and device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import jax
import numpy as np
from calibration import _timed  # sibling benchmark: python benchmarks/scaling.py puts benchmarks/ on sys.path

import scasml

QUICK = {"points": [32, 96], "bases": [4, 6], "dims": [10, 100], "points_for_m": 32, "points_for_d": 16, "base": 4}


def exponent(sizes, seconds):
    """Least-squares slope a of log(seconds) = a·log(size) + b; None with fewer than two distinct sizes."""
    sizes, seconds = np.asarray(sizes, float), np.asarray(seconds, float)
    if len(np.unique(sizes)) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def time_calibration(surrogate, pde, points, estimator, trace, repeats, fast, key=0):
    """Cold (first call: compilation + one run) and warm seconds of one calibration of ``points`` points."""
    t, x = pde.sample_domain(jax.random.key(1), points)

    def run():
        return scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(key), trace=trace)

    jax.clear_caches()  # cold means compiled here, even where an earlier row had the same shapes
    start = time.perf_counter()
    result = jax.block_until_ready(run())
    cold = time.perf_counter() - start
    warm = _timed(lambda: run().u)
    runs = 1
    if warm < fast and repeats > 1:
        warm = min(warm, _timed(lambda: run().u, repeats=repeats - 1))
        runs = repeats
    counts = dict(result.evaluations)
    return {
        "points": points, "cold_s": round(cold, 4), "warm_s": round(warm, 4), "warm_runs": runs,
        "compile_s_estimate": round(max(cold - warm, 0.0), 3), "ms_per_point": round(1e3 * warm / points, 4),
        "evaluations_per_point": counts, "total_evaluations_per_point": sum(counts.values()),
        "finite_fraction": float(np.mean(np.asarray(result.finite))),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def sweep_points(args):
    surrogate, pde = scasml.pretrained("vb", 20)
    estimator = scasml.MultilevelPicard(args.levels, args.base)
    print(f"\n[points] VB d = 20 (pretrained surrogate), MultilevelPicard({args.levels}, {args.base}), exact trace")
    print(f"{'N':>7} {'cold s':>9} {'warm s':>9} {'runs':>4} {'ms/point':>9} {'evals/point':>11}", flush=True)
    rows = []
    for n in args.points:
        r = time_calibration(surrogate, pde, n, estimator, scasml.ExactTrace(), args.repeats, args.fast)
        rows.append(r)
        print(f"{n:>7} {r['cold_s']:>9.3f} {r['warm_s']:>9.3f} {r['warm_runs']:>4} {r['ms_per_point']:>9.3f} "
              f"{r['total_evaluations_per_point']:>11}", flush=True)
    sizes, warm = [r["points"] for r in rows], [r["warm_s"] for r in rows]
    large = [(s, w) for s, w in zip(sizes, warm, strict=True) if s >= args.large_from]
    exps = {"warm_vs_points_all": exponent(sizes, warm),
            f"warm_vs_points_ge_{args.large_from}": exponent(*zip(*large, strict=True)) if large else None}
    _print_exponent(f"time ∝ N^a, all N ({min(sizes)}–{max(sizes)})", exps["warm_vs_points_all"], "theory 1")
    _print_exponent(f"time ∝ N^a, N ≥ {args.large_from} (where fixed per-call overhead should be negligible)",
                    exps[f"warm_vs_points_ge_{args.large_from}"], "theory 1")
    fixed = {"equation": "vb", "dim": 20, "surrogate": "pretrained", "levels": args.levels, "base": args.base,
             "trace": "exact"}
    return {"fixed": fixed, "rows": rows, "exponents": exps}


def sweep_bases(args):
    surrogate, pde = scasml.pretrained("vb", 20)
    n_points = args.points_for_m
    print(f"\n[M] VB d = 20 (pretrained surrogate), MultilevelPicard({args.levels}, M), N = {n_points}, exact trace")
    print(f"{'M':>4} {'cold s':>9} {'warm s':>9} {'runs':>4} {'ms/point':>9} {'values':>7} {'grads':>7} "
          f"{'resid.':>7} {'total':>7} {'µs/eval':>8}", flush=True)
    rows = []
    for m in args.bases:
        r = time_calibration(surrogate, pde, n_points, scasml.MultilevelPicard(args.levels, m), scasml.ExactTrace(),
                             args.repeats, args.fast)
        r["base"] = m
        r["us_per_evaluation"] = round(1e6 * r["warm_s"] / (n_points * r["total_evaluations_per_point"]), 3)
        rows.append(r)
        c = r["evaluations_per_point"]
        print(f"{m:>4} {r['cold_s']:>9.3f} {r['warm_s']:>9.3f} {r['warm_runs']:>4} {r['ms_per_point']:>9.3f} "
              f"{c['surrogate_values']:>7} {c['surrogate_gradients']:>7} {c['residuals']:>7} "
              f"{r['total_evaluations_per_point']:>7} {r['us_per_evaluation']:>8.2f}", flush=True)
    bases, warm = [r["base"] for r in rows], [r["warm_s"] for r in rows]
    totals = [r["total_evaluations_per_point"] for r in rows]
    exps = {"warm_vs_base": exponent(bases, warm), "evaluations_vs_base": exponent(bases, totals),
            "residuals_vs_base": exponent(bases, [r["evaluations_per_point"]["residuals"] for r in rows]),
            "warm_vs_evaluations": exponent(totals, warm)}
    _print_exponent("time ∝ M^a", exps["warm_vs_base"], f"theory {args.levels} (evaluations ∝ M^n)")
    _print_exponent("evaluations per point ∝ M^a", exps["evaluations_vs_base"], "counted")
    _print_exponent("residuals per point ∝ M^a", exps["residuals_vs_base"], "counted")
    _print_exponent("time ∝ evaluations^a", exps["warm_vs_evaluations"], "1 if time follows the evaluation count")
    fixed = {"equation": "vb", "dim": 20, "surrogate": "pretrained", "levels": args.levels, "points": n_points,
             "trace": "exact"}
    return {"fixed": fixed, "rows": rows, "exponents": exps}


def sweep_dims(args):
    n_points = args.points_for_d
    estimator = scasml.MultilevelPicard(args.levels, args.base)
    switch = "" if args.hutchinson_from is None else f", HutchinsonTrace(4) from d = {args.hutchinson_from}"
    print(f"\n[d] LCD, untrained PINN(d) surrogate, MultilevelPicard({args.levels}, {args.base}), N = {n_points}; "
          f"exact trace{switch}")
    print(f"{'d':>7} {'trace':>12} {'cold s':>9} {'warm s':>9} {'runs':>4} {'ms/point':>9}", flush=True)
    rows = []
    for d in args.dims:
        pde = scasml.equations.get("lcd", dim=d)
        surrogate = scasml.PINN(d, pde.horizon, jax.random.key(0))
        hutchinson = args.hutchinson_from is not None and d >= args.hutchinson_from
        trace = scasml.HutchinsonTrace(4) if hutchinson else scasml.ExactTrace()
        r = time_calibration(surrogate, pde, n_points, estimator, trace, args.repeats, args.fast)
        r["dim"], r["trace"] = d, "hutchinson-4" if hutchinson else "exact"
        rows.append(r)
        print(f"{d:>7} {r['trace']:>12} {r['cold_s']:>9.3f} {r['warm_s']:>9.3f} {r['warm_runs']:>4} "
              f"{r['ms_per_point']:>9.3f}", flush=True)
    dims = [r["dim"] for r in rows]
    exps = {"warm_vs_dim_all": exponent(dims, [r["warm_s"] for r in rows]),
            "cold_vs_dim_all": exponent(dims, [r["cold_s"] for r in rows])}
    _print_exponent("warm time ∝ d^a, all d (trace method switches)", exps["warm_vs_dim_all"], "")
    _print_exponent("cold time ∝ d^a, all d", exps["cold_vs_dim_all"], "")
    for trace in ("exact", "hutchinson-4"):
        same = [r for r in rows if r["trace"] == trace]
        a = exponent([r["dim"] for r in same], [r["warm_s"] for r in same])
        if a is not None:
            exps[f"warm_vs_dim_{trace}"] = a
            _print_exponent(f"warm time ∝ d^a, {trace} rows only (d = {', '.join(str(r['dim']) for r in same)})", a, "")
    fixed = {"equation": "lcd", "surrogate": "untrained PINN (5 x 50 tanh)", "levels": args.levels,
             "base": args.base, "points": n_points, "hutchinson_from": args.hutchinson_from}
    return {"fixed": fixed, "rows": rows, "exponents": exps}


def _print_exponent(label, value, note):
    shown = "n/a (fewer than 2 sizes)" if value is None else f"{value:.3f}"
    print(f"  exponent, {label}: a = {shown}" + (f"   [{note}]" if note else ""), flush=True)


def meta():
    device = jax.devices()[0]
    return {"machine": platform.processor() or platform.machine(), "cpu_count": _cpu_count(),
            "backend": jax.default_backend(), "device": f"{device.platform}:{device.device_kind}",
            "devices": len(jax.devices()), "jax": jax.__version__, "scasml": scasml.__version__,
            "x64": bool(jax.config.jax_enable_x64), "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--axes", nargs="+", choices=["points", "M", "d"], default=["points", "M", "d"])
    parser.add_argument("--points", nargs="+", type=int, default=[100, 300, 1000, 3000, 10000])
    parser.add_argument("--bases", nargs="+", type=int, default=[4, 6, 8, 10, 12, 16], help="M values (M sweep)")
    parser.add_argument("--dims", nargs="+", type=int, default=[10, 100, 1000, 10000])
    parser.add_argument("--points-for-m", type=int, default=300, help="N in the M sweep")
    parser.add_argument("--points-for-d", type=int, default=50, help="N in the d sweep")
    parser.add_argument("--levels", type=int, default=2, help="n of MultilevelPicard(n, M)")
    parser.add_argument("--base", type=int, default=None, help="M of the points and d sweeps (default 10)")
    parser.add_argument("--large-from", type=int, default=1000, help="second points exponent over N ≥ this")
    parser.add_argument("--hutchinson-from", type=int, default=None,
                        help="d sweep: Hutchinson trace from this d (default: exact at every d)")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs when one run is under --fast seconds")
    parser.add_argument("--fast", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help=f"smoke run with tiny sizes: {QUICK}")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.points, args.bases, args.dims = QUICK["points"], QUICK["bases"], QUICK["dims"]
        args.points_for_m, args.points_for_d = QUICK["points_for_m"], QUICK["points_for_d"]
        args.large_from = min(args.large_from, sorted(args.points)[-2])
        args.hutchinson_from = min(args.hutchinson_from or max(args.dims), max(args.dims))  # both trace methods
        if args.base is None:
            args.base = QUICK["base"]
    if args.base is None:
        args.base = 10
    info = meta()
    print(f"scaling benchmark{' (quick)' if args.quick else ''}: backend {info['backend']}, device {info['device']} "
          f"× {info['devices']}, {info['cpu_count']} CPU cores (load average {info['load_average_at_start']}), "
          f"jax {info['jax']}, x64 {info['x64']}; "
          f"warm = min of {args.repeats} runs when one run < {args.fast} s, cold = first call incl. compilation",
          flush=True)
    sweeps = {"points": sweep_points, "M": sweep_bases, "d": sweep_dims}
    results = {"meta": {**info, "quick": args.quick}, "sweeps": {}}
    for axis in args.axes:
        results["sweeps"][axis] = sweeps[axis](args)
        if args.json:  # rewritten after every sweep, so a long run leaves its finished sweeps behind
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
