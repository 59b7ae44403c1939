"""Which Laplacian for the surrogate residual: speed at equal calibrated error.

    python benchmarks/trace_choice.py [--equation vb --dim 20 --points 1200 --keys 5 --probes 1 2 4]

For the shipped surrogate of the equation, calibrates the same points with the exact trace and with Hutchinson
traces of several probe counts, under ``--keys`` independent keys; prints, per method, the warm seconds (minimum
over the keys, after one compiling call) and the relative L2 error (mean ± 95 % CI over keys), and the paired
difference of each method's error from the exact trace's (same keys). A stochastic trace adds variance to the
residual ε only, so it is worth taking where it is faster and its error is not significantly larger.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import scasml


def _calibrate_seconds(surrogate, pde, t, x, estimator, trace, key):
    start = time.perf_counter()
    out = scasml.calibrate(surrogate, pde, t, x, estimator, key=key, trace=trace)
    jax.block_until_ready(out.u)
    return out, time.perf_counter() - start


T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def _ci95(values):
    """Half-width of the 95 % t-interval of the mean."""
    values = np.asarray(values, float)
    return T975.get(len(values), 1.96) * values.std(ddof=1) / np.sqrt(len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--equation", default="vb")
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--points", type=int, default=1200)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--probes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--base", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    surrogate, pde = scasml.pretrained(args.equation, args.dim)
    t, x = pde.sample_domain(jax.random.key(1), args.points)
    exact = jax.vmap(pde.exact)(t, x)
    estimator = scasml.MultilevelPicard(args.levels, args.base)
    methods = {"exact": scasml.ExactTrace(), **{f"hutchinson-{p}": scasml.HutchinsonTrace(p) for p in args.probes}}
    print(f"{args.equation} d = {args.dim}, {args.points} points, MultilevelPicard({args.levels}, {args.base}), "
          f"{args.keys} keys, backend {jax.default_backend()}")
    rows = {}
    for name, trace in methods.items():
        _, cold = _calibrate_seconds(surrogate, pde, t, x, estimator, trace, jax.random.key(1000))
        errors, warm = [], []
        for k in range(args.keys):
            out, seconds = _calibrate_seconds(surrogate, pde, t, x, estimator, trace, jax.random.key(k))
            errors.append(float(jnp.linalg.norm(out.u - exact) / jnp.linalg.norm(exact)))
            warm.append(seconds)
        rows[name] = {"cold_s": cold, "warm_s": min(warm), "errors": errors}
    base = np.asarray(rows["exact"]["errors"])
    print(f"{'method':>14} {'cold s':>8} {'warm s':>8} {'rel. L2 (mean ± CI)':>24} {'minus exact (paired)':>24}")
    for name, row in rows.items():
        err = np.asarray(row["errors"])
        diff = err - base
        row.update(mean=float(err.mean()), ci95=float(_ci95(err)), diff_mean=float(diff.mean()),
                   diff_ci95=float(_ci95(diff)) if name != "exact" else 0.0)
        print(f"{name:>14} {row['cold_s']:8.2f} {row['warm_s']:8.2f} {row['mean']:13.3e} ± {row['ci95']:.1e}"
              f" {row['diff_mean']:+13.2e} ± {row['diff_ci95']:.1e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "backend": jax.default_backend(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
