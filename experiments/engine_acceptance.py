"""Surrogate vs plain multilevel Picard vs SCaSML on the shipped PINNs (1,200 test points, n = 2, M = 10).

    python experiments/engine_acceptance.py [--rows vb:20 lcd:10] [--json out.json]

Prints a Markdown table (relative L2 errors, seconds cold/warm, per-point evaluation counts) for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

import scasml


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def evaluate(name: str, dim: int, points: int = 1200, levels: int = 2, base: int = 10, seed: int = 1):
    surrogate, pde = scasml.pretrained(name, dim)
    t, x = pde.sample_domain(jax.random.key(seed), points)
    if pde.has_exact:
        exact = jax.vmap(pde.exact)(t, x)
    else:
        exact, _ = pde.reference(t, x, jax.random.key(seed + 1), samples=10_000)

    def rel(u):
        return float(jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact))

    estimator = scasml.MultilevelPicard(levels, base)
    row = {"equation": name, "dim": dim, "points": points, "levels": levels, "base": base}
    row["surrogate"] = rel(jax.vmap(surrogate)(t, x))
    plain = lambda: scasml.solve(pde, t, x, estimator, key=jax.random.key(7)).u
    u, row["plain_cold_s"] = _timed(plain)
    _, row["plain_warm_s"] = _timed(plain)
    row["plain_mlp"] = rel(u)
    for label, trace in (("exact", scasml.ExactTrace()), ("hutchinson4", scasml.HutchinsonTrace(4))):
        run = lambda trace=trace: scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(7), trace=trace)
        out, cold = _timed(run)
        _, warm = _timed(run)
        row[f"scasml_{label}"] = rel(out.u)
        row[f"scasml_{label}_cold_s"], row[f"scasml_{label}_warm_s"] = cold, warm
        row["evaluations"] = out.evaluations
        covered = (out.lower <= exact) & (exact <= out.upper)
        row[f"scasml_{label}_coverage"] = float(jnp.mean(covered))
    row["improvement_pct"] = 100 * (1 - row["scasml_exact"] / row["surrogate"])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["vb:20", "lcd:10"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = [evaluate(r.split(":")[0], int(r.split(":")[1])) for r in args.rows]
    print("| equation | d | surrogate | plain MLP | SCaSML (exact ε) | gain | 95 % CI coverage "
          "| SCaSML (Hutchinson-4 ε) | SCaSML s cold / warm (exact) | (Hutchinson) | plain MLP s warm | evals/point |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['equation']} | {r['dim']} | {r['surrogate']:.2e} | {r['plain_mlp']:.2e} "
              f"| {r['scasml_exact']:.2e} "
              f"| {r['improvement_pct']:.0f} % | {100 * r['scasml_exact_coverage']:.0f} % "
              f"| {r['scasml_hutchinson4']:.2e} "
              f"| {r['scasml_exact_cold_s']:.1f} / {r['scasml_exact_warm_s']:.1f} "
              f"| {r['scasml_hutchinson4_cold_s']:.1f} / {r['scasml_hutchinson4_warm_s']:.1f} "
              f"| {r['plain_warm_s']:.1f} | {r['evaluations']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
