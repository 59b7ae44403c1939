"""Unshrunk SCaSML vs the garrote at a fixed c = 1 vs the SURE-chosen c (scasml.shrink), per repetition.

Two sources of estimates:
    python experiments/shrinkage_study.py --rows vb:20 dr:100 lcd:10 --keys 4     # shipped PINNs, 1,200 new points
    python experiments/shrinkage_study.py --runs runs/t1s/lqg-120d --method scasml_noclip   # finished run folders

``--runs`` reads a run's stored (unshrunk) estimates and test points, so nothing is recomputed. Prints the mean
relative L2 of the surrogate and of each variant, the gain, the paired t-test over repetitions (or keys) and
the chosen thresholds; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import scasml
from scasml.experiments._statistics import paired_t_test


def relative_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def variants(surrogate, defect, stderr, finite, exact) -> dict:
    """Relative L2 of û, û + v, û + garrote(v; c = 1), û + garrote(v; SURE c), and the SURE c."""
    fixed, _ = scasml.shrink_defect(defect, stderr, finite, threshold=1.0)
    sure, c = scasml.shrink_defect(defect, stderr, finite)
    return {"surrogate": relative_l2(surrogate, exact), "unshrunk": relative_l2(surrogate + defect, exact),
            "garrote_c1": relative_l2(surrogate + fixed, exact), "sure": relative_l2(surrogate + sure, exact),
            "threshold": c}


def from_pretrained(row: str, keys: int, points: int) -> list[dict]:
    name, dim = row.split(":")
    surrogate, pde = scasml.pretrained(name, int(dim))
    t, x = pde.sample_domain(jax.random.key(100), points)
    exact = np.asarray(jax.vmap(pde.exact)(t, x))
    out = []
    for k in range(keys):
        pred = scasml.calibrate(surrogate, pde, t, x, scasml.MultilevelPicard(2, 10), key=jax.random.key(1000 + k))
        out.append(variants(*(np.asarray(a) for a in (pred.surrogate, pred.defect, pred.stderr, pred.finite)), exact))
    return out


def from_run(folder: Path, method: str) -> list[dict]:
    from scasml.experiments import RunDirectory
    from scasml.experiments._runner import collect_results

    run = RunDirectory.open(folder)
    config = run.config()
    results = collect_results(run, config, config.make_pde().horizon)
    out = []
    for points, result in zip(results.points, results.methods[method], strict=True):
        a = result.arrays
        out.append(variants(a["surrogate"], a["defect"], a["stderr"], a["finite"], points["exact"]))
    return out


def summarise(label: str, reps: list[dict]) -> dict:
    base = [r["surrogate"] for r in reps]
    row = {"row": label, "repetitions": len(reps), "surrogate": float(np.mean(base)),
           "thresholds": [r["threshold"] for r in reps]}
    for name in ("unshrunk", "garrote_c1", "sure"):
        values = [r[name] for r in reps]
        row[name] = {"relative_l2": float(np.mean(values)), "gain_percent": 100 * (1 - np.mean(values) / np.mean(base)),
                     "p_value": paired_t_test(base, values).get("p_value") if len(reps) > 1 else None}
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="*", default=[], help="shipped PINNs, e.g. vb:20 dr:100 lcd:10")
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--points", type=int, default=1200)
    p.add_argument("--runs", nargs="*", default=[], help="finished run folders")
    p.add_argument("--method", default="scasml_noclip", help="the unshrunk SCaSML method of --runs")
    p.add_argument("--cpu-devices", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    scasml.use_every_cpu_core(args.cpu_devices)
    rows = [summarise(r, from_pretrained(r, args.keys, args.points)) for r in args.rows]
    rows += [summarise(str(f), from_run(Path(f), args.method)) for f in args.runs]
    print("| row | reps | surrogate | unshrunk: gain, p | garrote c = 1: gain, p | SURE: gain, p | SURE c |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]['gain_percent']:.1f} %, {r[k]['p_value']:.1g}" if r[k]["p_value"] is not None else
                 f"{r[k]['gain_percent']:.1f} %" for k in ("unshrunk", "garrote_c1", "sure")]
        print(f"| {r['row']} | {r['repetitions']} | {r['surrogate']:.3e} | " + " | ".join(cells)
              + f" | {min(r['thresholds']):.2f}–{max(r['thresholds']):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
