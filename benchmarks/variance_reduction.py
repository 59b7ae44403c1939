"""Variance reduction: work-normalised error of the default estimator and the options against plain Monte Carlo.

Per row (shipped PINNs: VB-20, LCD-10, LQG-100, DR-100, and BSB-100 under geometric Brownian motion) and method,
over the same points and keys, methods alternated key by key (this machine's speed drifts):

    work-normalised error = (relative L2 error)² × evaluations per point      (and × warm seconds)

printed as a ratio to plain MultilevelPicard(2, 10), "today" (methods: ``scasml.default_estimator``, antithetic
pairs, 4× terminal paths, both, and both with at least 20 samples in every block of the reported estimate;
randomised quasi-Monte Carlo terminal paths and level-0 samples, alone, with 4× terminal paths, with all of these,
and with antithetic pairs alone, with 4, 8 or 16 nets (or 8 nets of at least 32 points) and at least 20 or 40
last-level samples, also with the linearised next Picard
correction (``next_correction``); nested estimates of a smaller base); also
the ratio of mean squared standard errors (the Monte Carlo variance alone, without the Picard bias and the
reference's error) and of the 95 % interval's half-width² × evaluations (and × seconds): the Student-t quantile at
the estimate's degrees of freedom widens the interval where a block of few units (R nets) dominates the variance.
LQG is compared with a Cole–Hopf reference (10⁵ samples per point), the others with their exact solutions. A last
table reports the VB-20 warm time and error at 1,200 points for each method and base, to read off the time at
today's error.

    python benchmarks/variance_reduction.py                                   # all rows, 512 points, 5 keys
    python benchmarks/variance_reduction.py --rows vb:20 --keys 2 --points 256 --no-time-table
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import scasml

METHODS = {  # None: scasml.default_estimator of the row's law of defect (what calibrate uses when given none)
    "today": scasml.MultilevelPicard(2, 10),
    "default": None,
    "antithetic": scasml.MultilevelPicard(2, 10, antithetic=True),
    "terminal×4": scasml.MultilevelPicard(2, 10, terminal_factor=4),
    "both": scasml.MultilevelPicard(2, 10, antithetic=True, terminal_factor=4),
    "both, top ≥ 20": scasml.MultilevelPicard(2, 10, antithetic=True, terminal_factor=4, min_top_samples=20),
    "qmc 4 sets": scasml.MultilevelPicard(2, 10, qmc_sets=4),
    "terminal×4 qmc 8": scasml.MultilevelPicard(2, 10, terminal_factor=4, qmc_sets=8),
    "all, qmc 8": scasml.MultilevelPicard(2, 10, antithetic=True, terminal_factor=4, min_top_samples=20, qmc_sets=8),
    "all, qmc 16": scasml.MultilevelPicard(2, 10, antithetic=True, terminal_factor=4, min_top_samples=20,
                                           qmc_sets=16),
    "antithetic, qmc 4": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4),
    "aq4, top ≥ 20": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4, min_top_samples=20),
    "aq8, top ≥ 20": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=8, min_top_samples=20),
    "aq16, top ≥ 20": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=16, min_top_samples=20),
    "aq8×32, top ≥ 20": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=8, qmc_points=32,
                                                min_top_samples=20),
    "aq8×32, top ≥ 20, next 2": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=8, qmc_points=32,
                                                        min_top_samples=20, next_correction=2),
    "antithetic, next 2": scasml.MultilevelPicard(2, 10, antithetic=True, next_correction=2),
    "aq8×32, top ≥ 40, next 2": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=8, qmc_points=32,
                                                        min_top_samples=40, next_correction=2),
    "aq8×32, top ≥ 40, next 4": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=8, qmc_points=32,
                                                        min_top_samples=40, next_correction=4),
    "aq4, 40×V1(3)": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4, min_top_samples=40, inner_base=3),
    "aq4, 20×V1(5)": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4, min_top_samples=20, inner_base=5),
    "aq8, M = 5, top ≥ 12": scasml.MultilevelPicard(2, 5, antithetic=True, qmc_sets=8, min_top_samples=12),
    "aq8, M = 6": scasml.MultilevelPicard(2, 6, antithetic=True, qmc_sets=8),
    "aq8, M = 6, top ≥ 12": scasml.MultilevelPicard(2, 6, antithetic=True, qmc_sets=8, min_top_samples=12),
    "aq8, M = 6, 20×V1(3)": scasml.MultilevelPicard(2, 6, antithetic=True, qmc_sets=8, min_top_samples=20,
                                                   inner_base=3),
    "aq8, M = 7": scasml.MultilevelPicard(2, 7, antithetic=True, qmc_sets=8),
}


def _reference(pde, t, x):
    if pde.has_exact:
        return np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
    return np.asarray(pde.reference(t, x, jax.random.key(12345), samples=100_000)[0], np.float64)


def _run(surrogate, pde, t, x, estimator, key):
    start = time.perf_counter()
    out = scasml.calibrate(surrogate, pde, t, x, estimator, key=key)
    jax.block_until_ready(out.u)
    return out, time.perf_counter() - start


def row(name, dim, points, keys, methods):
    surrogate, pde = scasml.pretrained(name, dim)
    default = scasml.default_estimator(scasml.law_of_defect(pde, surrogate))
    methods = {m: default if estimator is None else estimator for m, estimator in methods.items()}
    t, x = pde.sample_domain(jax.random.key(1), points)
    exact = _reference(pde, t, x)
    for estimator in methods.values():  # compile outside the timed runs
        _run(surrogate, pde, t[:8], x[:8], estimator, jax.random.key(0))
        _run(surrogate, pde, t, x, estimator, jax.random.key(0))
    stats = {m: {"err2": [], "se2": [], "width2": [], "seconds": []} for m in methods}
    for k in range(keys):
        for m, estimator in methods.items():
            out, seconds = _run(surrogate, pde, t, x, estimator, jax.random.key(100 + k))
            u = np.asarray(out.u, np.float64)
            stats[m]["err2"].append((np.linalg.norm(u - exact) / np.linalg.norm(exact)) ** 2)
            stats[m]["se2"].append(float(np.mean(np.asarray(out.stderr, np.float64) ** 2)))
            half = (np.asarray(out.upper, np.float64) - np.asarray(out.lower, np.float64)) / 2
            stats[m]["width2"].append(float(np.mean(half**2)))
            stats[m]["seconds"].append(seconds)
    base = stats["today"]
    cost = {m: sum(e.evaluations(scasml.law_of_defect(pde, surrogate)).values()) for m, e in methods.items()}
    lines = []
    for m in methods:
        s = stats[m]
        err2, se2, width2, sec = (float(np.mean(s[k])) for k in ("err2", "se2", "width2", "seconds"))
        work = err2 * cost[m] / (np.mean(base["err2"]) * cost["today"])
        work_s = err2 * sec / (np.mean(base["err2"]) * np.mean(base["seconds"]))
        interval = width2 * cost[m] / (np.mean(base["width2"]) * cost["today"])
        interval_s = width2 * sec / (np.mean(base["width2"]) * np.mean(base["seconds"]))
        lines.append(f"{name.upper()}-{dim:<4} {m:<17} {np.sqrt(err2):>10.4e} {cost[m]:>8} {sec:>7.3f} "
                     f"{work:>10.3f} {work_s:>10.3f} {se2 / np.mean(base['se2']):>9.3f} {interval:>11.3f} "
                     f"{interval_s:>10.3f}")
    return lines


def time_table(points, keys):
    surrogate, pde = scasml.pretrained("vb", 20)
    t, x = pde.sample_domain(jax.random.key(1), points)
    exact = _reference(pde, t, x)
    configs = [("today", scasml.MultilevelPicard(2, 10))] + [
        (f"both M={b}", scasml.MultilevelPicard(2, b, antithetic=True, terminal_factor=4)) for b in (6, 7)] + [
        (f"antithetic qmc 4 M={b}", scasml.MultilevelPicard(2, b, antithetic=True, qmc_sets=4)) for b in (6, 7, 8)] + [
        (f"all qmc 8 M={b}", scasml.MultilevelPicard(2, b, antithetic=True, terminal_factor=4, min_top_samples=20,
                                                     qmc_sets=8)) for b in (5, 6)] + [
        (f"aq8x32 top 20 M={b}", scasml.MultilevelPicard(2, b, antithetic=True, qmc_sets=8, qmc_points=32,
                                                         min_top_samples=20)) for b in (6, 8)]
    print(f"\nVB-20, {points} points, warm seconds (median of {keys}) and relative L2 (RMS over {keys} keys):")
    for _, estimator in configs:
        _run(surrogate, pde, t, x, estimator, jax.random.key(0))
    results = {label: ([], []) for label, _ in configs}
    for k in range(keys):
        for label, estimator in configs:
            out, seconds = _run(surrogate, pde, t, x, estimator, jax.random.key(100 + k))
            results[label][0].append(seconds)
            results[label][1].append(np.linalg.norm(np.asarray(out.u, np.float64) - exact) / np.linalg.norm(exact))
    for label, (seconds, errors) in results.items():
        print(f"  {label:<20} {np.median(seconds):>7.3f} s   rel. L2 {np.sqrt(np.mean(np.square(errors))):.4e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["vb:20", "lcd:10", "lqg:100", "dr:100", "bsb:100"])
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--no-time-table", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="a subset of the methods ('today' is "
                        "always run: the ratios are to it)")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {len(jax.devices())} device(s); "
          f"{args.points} points, {args.keys} keys")
    print(f"{'row':<10} {'method':<17} {'rel. L2':>10} {'evals':>8} {'seconds':>7} {'err²·evals':>10} "
          f"{'err²·sec':>10} {'stderr²':>9} {'width²·evals':>11} {'width²·sec':>10}   (ratios to today)")
    for spec in args.rows:
        name, dim = spec.split(":")
        methods = {m: METHODS[m] for m in METHODS if m == "today" or m in args.methods}
        for line in row(name, int(dim), args.points, args.keys, methods):
            print(line, flush=True)
    if not args.no_time_table:
        time_table(1200, 3)


if __name__ == "__main__":
    main()
