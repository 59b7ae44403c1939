"""Calibration throughput: cold/warm seconds, points/s, evaluation counts and the overhead ratio.

overhead ratio = calibration time ÷ time of the bare batched surrogate evaluations of the same counts
(values, value-and-gradients, residuals), i.e. how close the fused estimator runs to the cost of the
evaluations it cannot avoid.

    python benchmarks/calibration.py                       # VB 20 d, LQG 100 d, DR 160 d; n = 2, M = 10; 1,200 points
    python benchmarks/calibration.py --rows vb:20 --trace hutchinson --json out.json
    python benchmarks/calibration.py --rows vb:20 --cpu-devices 2    # one JAX device per core (chunks in parallel)
    python benchmarks/calibration.py --rows vb:20 --cpu-devices 2 --variant quadrature
    python benchmarks/calibration.py --rows vb:20 --cpu-devices 2 --cold-runs 7   # cold: median of 7 new processes
    python benchmarks/calibration.py --rows vb:20 --cpu-devices 2 --variant full_history quadrature --cold-runs 7
                                                   # both variants; their new-process cold runs alternate

"GEMM floor" (PINN surrogates): the multiply-adds of the surrogate's linear layers that the evaluations need
(a residual's forward-Laplacian sweep carries k + 3 rows through each layer: k directions, value, Laplacian and
transport) divided by this machine's measured throughput for the sweep's largest product, (rows, width) @
(width, width) on all devices; warm ÷ floor says how close calibration runs to the matrix-multiply limit.

"cold" is the first call in a new process (tracing, XLA compilation and the first execution); on a noisy machine
use --cold-runs to measure it in that many fresh processes and report the median and range. "peak RSS" is the process's
peak so far, so with several rows or variants it is an upper bound for all but the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import jax

import scasml
from scasml._derivatives import residual


def _timed(fn, repeats=1):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def _surrogate(name, dim):
    try:
        return scasml.pretrained(name, dim)
    except ValueError:
        pde = scasml.equations.get(name, dim=dim)
        return scasml.PINN(dim, pde.horizon, jax.random.key(0)), pde


def bare_evaluation_seconds(surrogate, pde, counts, n_points, trace, chunk=4096):
    """Seconds to evaluate the surrogate counts × n_points times in plain batched jitted calls."""
    total = 0.0
    kinds = {
        "surrogate_values": jax.vmap(surrogate),
        "surrogate_gradients": jax.vmap(jax.value_and_grad(surrogate, argnums=1)),
        "residuals": jax.vmap(lambda t, x, k: residual(pde, surrogate, t, x, trace, k)),
    }
    for kind, fn in kinds.items():
        n = counts[kind] * n_points
        if n == 0:
            continue
        t, x = pde.sample_domain(jax.random.key(1), min(n, chunk))
        keys = jax.random.split(jax.random.key(2), t.shape[0])
        f = jax.jit(fn if kind == "residuals" else lambda t, x, k, fn=fn: fn(t, x))
        jax.block_until_ready(f(t, x, keys))
        per_batch = _timed(lambda f=f, t=t, x=x, keys=keys: f(t, x, keys), repeats=3)
        total += per_batch * n / t.shape[0]
    return total


def linear_layer_flops(surrogate, pde, counts, n_points, directions) -> float | None:
    """Flops of the surrogate's linear layers in all evaluations (PINN surrogates; None for others)."""
    if not isinstance(surrogate, scasml.PINN):
        return None
    d, w, hidden = pde.dim, surrogate.width, surrogate.depth - 1  # hidden: width × width layers
    forward = (d + 1) * w + hidden * w * w + w
    k = min(directions, w) if surrogate.dim <= w else w  # sweep rows (QR-reduced to width when k > width)
    sweep = (d + 1) * w + (k + 3) * (hidden * w * w + w)
    per_point = (counts["surrogate_values"] * forward + counts["surrogate_gradients"] * 3 * forward
                 + counts["residuals"] * sweep)
    return 2.0 * per_point * n_points


def gemm_flops_per_second(rows: int, width: int) -> float:
    """Measured flop rate of a (rows, width) @ (width, width) product chain on all local devices."""
    devices = jax.local_devices()
    mesh = jax.make_mesh((len(devices),), ("d",), devices=devices)
    a = jax.device_put(jax.numpy.full((len(devices), rows, width), 0.01, jax.numpy.float32),
                       jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
    w = jax.numpy.full((width, width), 0.01, jax.numpy.float32)
    steps = 20

    @jax.jit
    def chain(a, w):
        return jax.lax.fori_loop(0, steps, lambda _, c: (c @ w) * 0.5, a)

    jax.block_until_ready(chain(a, w))
    seconds = _timed(lambda: chain(a, w), repeats=3)
    return 2.0 * len(devices) * rows * width * width * steps / seconds


def _setup(name, dim, points, levels, base, trace_name, chunk_size, variant):
    surrogate, pde = _surrogate(name, dim)
    trace = scasml.HutchinsonTrace(4) if trace_name == "hutchinson" else scasml.ExactTrace()
    estimator = scasml.MultilevelPicard(levels, base, variant=variant)
    t, x = pde.sample_domain(jax.random.key(0), points)

    def calibrate():
        return scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(3), trace=trace,
                                chunk_size=chunk_size).u

    return surrogate, pde, trace, estimator, t, x, calibrate


def cold_in_new_processes(runs: int, row: str, variants: list[str]) -> dict[str, list[float]]:
    """First-call seconds of ``row`` in ``runs`` new processes per variant (this script with --cold-only),
    alternating between the variants so that a drift of the machine's speed affects them alike."""
    argv = [a for a in sys.argv[1:] if a != "--cold-only"]
    times = {variant: [] for variant in variants}
    for _ in range(runs):
        for variant in variants:
            args = _with_option(_with_option(argv, "--rows", [row]), "--variant", [variant])
            out = subprocess.run([sys.executable, __file__, *args, "--cold-only"], capture_output=True, text=True,
                                 check=True)
            times[variant].append(float(out.stdout.strip().splitlines()[-1]))
    return times


def run_row(name, dim, points, levels, base, trace_name, chunk_size, variant="full_history"):
    surrogate, pde, trace, estimator, t, x, calibrate = _setup(name, dim, points, levels, base, trace_name,
                                                               chunk_size, variant)
    cold = _timed(calibrate)
    warm = _timed(calibrate, repeats=3)
    counts = scasml.calibrate(surrogate, pde, t[:1], x[:1], estimator, key=jax.random.key(3), trace=trace).evaluations
    bare = bare_evaluation_seconds(surrogate, pde, counts, points, trace)
    directions = getattr(trace, "probes", pde.dim)
    flops = linear_layer_flops(surrogate, pde, counts, points, directions)
    floor = None
    if flops is not None:
        rows = 8 * counts["residuals"] * min(directions, surrogate.width)  # the sweep's product: 8 lanes
        floor = flops / gemm_flops_per_second(rows, surrogate.width)
    return {
        "row": f"{name}:{dim}", "points": points, "levels": levels, "base": base, "variant": variant,
        "trace": trace_name,
        "cold_s": round(cold, 3), "warm_s": round(warm, 3), "points_per_s": round(points / warm, 1),
        "bare_evaluations_s": round(bare, 3), "overhead_ratio": round(warm / bare, 2), "evaluations": counts,
        "linear_layer_gflop": None if flops is None else round(flops / 1e9, 1),
        "gemm_floor_s": None if floor is None else round(floor, 3),
        "warm_over_gemm_floor": None if floor is None else round(warm / floor, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _with_option(argv: list[str], option: str, values: list[str]) -> list[str]:
    """``argv`` with the values of the list option ``option`` replaced by ``values``."""
    out, skipping = [], False
    for arg in argv:
        if arg == option:
            skipping = True
            continue
        if skipping and not arg.startswith("--"):
            continue
        skipping = False
        out.append(arg)
    return [*out, option, *values]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["vb:20", "lqg:100", "dr:160"])
    parser.add_argument("--points", type=int, default=1200)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--base", type=int, default=10)
    parser.add_argument("--trace", choices=["exact", "hutchinson"], default="exact")
    parser.add_argument("--variant", nargs="+", choices=["full_history", "quadrature"], default=["full_history"],
                        help="MultilevelPicard variant(s); several are measured in turn, their cold runs interleaved")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--cold-runs", type=int, default=1,
                        help="measure cold in this many new processes (one row at a time) and report the median")
    parser.add_argument("--cold-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu-devices", type=int, default=1,
                        help="JAX CPU devices (scasml.use_every_cpu_core); the bare evaluations use one of them")
    args = parser.parse_args()
    scasml.use_every_cpu_core(args.cpu_devices)
    if args.cold_only:  # one row and variant, first call only (used by --cold-runs)
        name, dim = args.rows[0].split(":")
        *_, calibrate = _setup(name, int(dim), args.points, args.levels, args.base, args.trace, args.chunk_size,
                               args.variant[0])
        print(_timed(calibrate))
        return
    results = []
    for row in args.rows:
        name, dim = row.split(":")
        rows = [run_row(name, int(dim), args.points, args.levels, args.base, args.trace, args.chunk_size, variant)
                for variant in args.variant]
        if args.cold_runs > 1:
            colds = cold_in_new_processes(args.cold_runs, row, args.variant)
            for r in rows:  # the in-process first calls shared compilations with earlier rows and variants
                runs = colds[r["variant"]]
                r["first_call_in_this_process_s"] = r["cold_s"]
                r["cold_runs_s"] = [round(c, 3) for c in runs]
                r["cold_s"] = round(statistics.median(runs), 3)
                print(f"{r['row']:>8} {r['variant']}: cold in {len(runs)} new processes: median {r['cold_s']:.2f} s, "
                      f"range {min(runs):.2f}-{max(runs):.2f} s", flush=True)
        for r in rows:
            print(f"{r['row']:>8} {r['variant']:>12} {r['trace']:>10}: cold {r['cold_s']:7.2f} s  "
                  f"warm {r['warm_s']:7.2f} s  {r['points_per_s']:8.1f} pts/s  "
                  f"bare evals {r['bare_evaluations_s']:7.2f} s  "
                  f"overhead ×{r['overhead_ratio']:.2f}  GEMM floor {r['gemm_floor_s']} s "
                  f"(warm ÷ floor {r['warm_over_gemm_floor']})  peak RSS {r['peak_rss_mb']:.0f} MB  {r['evaluations']}",
                  flush=True)
        results.extend(rows)
    meta = {"machine": platform.processor() or platform.machine(), "backend": jax.default_backend(),
            "devices": len(jax.devices()), "cpu_devices": args.cpu_devices, "jax": jax.__version__}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
