"""The distribution of SCaSML's defect estimate at one query point, from many independent estimates.

Used on the LQG-120 outlier (experiments/RESULTS.md): the point of a finished run with the largest |defect|,
estimated again with ``--estimates`` independent keys (copies of the point get keys fold_in(key, i)).

    python experiments/heavy_tail.py runs/lqg120-outlier --rep 1 --checkpoint runs/t1p/lqg-120d/checkpoint.scasml
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import surrogates


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a finished `scasml run` folder (its raw/ per-point results)")
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--method", default="scasml_noclip")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--estimates", type=int, default=2000)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    pde = scasml.equations.get(config["equation"]["name"], dim=config["equation"]["dim"])
    surrogate = surrogates.load(args.checkpoint, pde)
    chunks = [np.load(f) for f in sorted(glob.glob(str(run / f"raw/eval/rep-{args.rep}/{args.method}/chunk-*.npz")))]
    index = np.concatenate([c["index"] for c in chunks])
    defect = np.concatenate([c["defect"] for c in chunks])
    points = np.load(run / f"raw/points/rep-{args.rep}.npz")
    i = int(index[np.argmax(np.abs(defect))])
    print(f"point {i}: t = {points['t'][i]:.4f}, defect in the run {defect[np.argmax(np.abs(defect))]:.3f}")
    n = args.estimates
    t = jnp.full((n,), points["t"][i])
    x = jnp.broadcast_to(jnp.asarray(points["x"][i]), (n, pde.dim))
    out = scasml.calibrate(surrogate, pde, t, x, scasml.MultilevelPicard(2, 10), key=jax.random.key(args.seed))
    d, se = np.asarray(out.defect), np.asarray(out.stderr)
    print(f"reference − surrogate (the true defect up to the reference's error): "
          f"{float(points['exact'][i] - np.asarray(out.surrogate)[0]):.4f}")
    q = np.percentile(d, [0.1, 1, 5, 25, 50, 75, 95, 99, 99.9])
    kurtosis = float(((d - d.mean()) ** 4).mean() / d.var() ** 2)
    print(f"{n} estimates: mean {d.mean():.4f}, median {np.median(d):.4f}, sd {d.std():.4f}, "
          f"min {d.min():.3f}, max {d.max():.3f}, kurtosis {kurtosis:.0f}")
    print("quantiles 0.1 1 5 25 50 75 95 99 99.9 %:", np.round(q, 3).tolist())
    print(f"reported standard error: mean {se.mean():.4f}, median {np.median(se):.4f}")


if __name__ == "__main__":
    main()
