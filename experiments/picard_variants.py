"""Full-history vs quadrature multilevel Picard at equal n and M: SCaSML error, coverage and warm seconds.

Shipped pretrained PINNs, 1,200 new test points, ``--keys`` independent keys per variant (± = standard error over
keys), exact residual.

    python experiments/picard_variants.py --rows vb:20 dr:100 lcd:10 --keys 8 --cpu-devices 2
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import scasml


def relative_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_row(name: str, dim: int, keys: int, points: int, levels: int, base: int) -> dict:
    surrogate, pde = scasml.pretrained(name, dim)
    t, x = (np.asarray(a) for a in pde.sample_domain(jax.random.key(100), points))
    exact = np.asarray(jax.vmap(pde.exact)(t, x))
    out = {"row": f"{name}:{dim}", "surrogate": relative_l2(np.asarray(jax.vmap(surrogate)(t, x)), exact)}
    for variant in ("full_history", "quadrature"):
        estimator = scasml.MultilevelPicard(levels, base, variant=variant)
        errors, covered, seconds = [], [], []
        for k in range(keys):
            start = time.perf_counter()
            pred = scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(1000 + k))
            u = np.asarray(pred.u)
            seconds.append(time.perf_counter() - start)
            errors.append(relative_l2(u, exact))
            covered.append(float(np.mean((np.asarray(pred.lower) <= exact) & (exact <= np.asarray(pred.upper)))))
        out[variant] = {"error": float(np.mean(errors)), "error_se": float(np.std(errors, ddof=1) / np.sqrt(keys)),
                        "coverage": float(np.mean(covered)), "warm_s": float(np.median(seconds[1:])),
                        "evaluations": pred.evaluations}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=["vb:20", "dr:100", "lcd:10"])
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--points", type=int, default=1200)
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--base", type=int, default=10)
    p.add_argument("--cpu-devices", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    scasml.use_every_cpu_core(args.cpu_devices)
    results = []
    print("| row | PINN | full history | quadrature | warm s, full history / quadrature | coverage |")
    print("|---|---|---|---|---|---|")
    for row in args.rows:
        name, dim = row.split(":")
        r = run_row(name, int(dim), args.keys, args.points, args.levels, args.base)
        results.append(r)
        fh, q = r["full_history"], r["quadrature"]
        print(f"| {r['row']} | {r['surrogate']:.3g} | {fh['error']:.3g} ± {fh['error_se']:.1g} | "
              f"{q['error']:.3g} ± {q['error_se']:.1g} | {fh['warm_s']:.2f} / {q['warm_s']:.2f} | "
              f"{100 * fh['coverage']:.1f} / {100 * q['coverage']:.1f} % |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"jax": jax.__version__, "devices": len(jax.devices()), "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
