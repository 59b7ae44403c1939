"""Writes calibrate's outputs on the shipped PINNs at fixed keys to an .npz, so that two versions of the engine
can be compared point by point:

    PYTHONPATH=<old checkout> python benchmarks/engine_equivalence.py old.npz
    python benchmarks/engine_equivalence.py new.npz
    python benchmarks/engine_equivalence.py --compare old.npz new.npz
"""

import sys

import jax
import numpy as np

import scasml

ROWS = (("vb", 20), ("lcd", 10), ("lqg", 100), ("dr", 100))


def record(path, points=128):
    out = {}
    for name, dim in ROWS:
        pinn, pde = scasml.pretrained(name, dim=dim)
        t, x = pde.sample_domain(jax.random.key(0), points)
        for variant in ("full_history", "quadrature"):
            est = scasml.calibrate(pinn, pde, t, x, scasml.MultilevelPicard(2, 10, variant=variant),
                                   key=jax.random.key(1))
            out[f"{name}{dim}-{variant}-u"] = np.asarray(est.u)
            out[f"{name}{dim}-{variant}-stderr"] = np.asarray(est.stderr)
    np.savez(path, **out)


def compare(old_path, new_path):
    old, new = np.load(old_path), np.load(new_path)
    worst = 0.0
    for key in old.files:
        a, b = old[key], new[key]
        rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30)))
        worst = max(worst, rel)
        print(f"{key:32s} max relative difference {rel:.2e}")
    print(f"maximum over all rows: {worst:.2e}")


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        record(sys.argv[1])
