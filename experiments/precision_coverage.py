"""Interval coverage of SCaSML in float32 vs float64 for one trained Table-1 surrogate.

Tests whether float32 rounding in the surrogate's residual (a deterministic error, hence a bias the Monte Carlo
standard error cannot cover) explains 95 % intervals covering fewer than 95 % of the points.

    python experiments/precision_coverage.py runs/t1/lcd-60d/checkpoint.scasml lcd 60 --points 1200 --keys 2
"""

from __future__ import annotations

import argparse
import json

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import scasml  # noqa: E402
from scasml import surrogates  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("equation")
    p.add_argument("dim", type=int)
    p.add_argument("--points", type=int, default=1200)
    p.add_argument("--keys", type=int, default=2)
    p.add_argument("--base", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    results = []
    for dtype in (jnp.float32, jnp.float64):
        pde = scasml.equations.get(args.equation, dim=args.dim, dtype=dtype)
        surrogate = surrogates.load(args.checkpoint, scasml.equations.get(args.equation, dim=args.dim))
        surrogate = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype) if eqx_float(a) else a, surrogate)
        t, x = pde.sample_domain(jax.random.key(1), args.points)
        exact = jax.vmap(pde.exact)(t, x)
        for k in range(args.keys):
            estimator = scasml.MultilevelPicard(2, args.base)
            out = scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(7 + k))
            u, se = np.asarray(out.u), np.asarray(out.stderr)
            e = np.asarray(exact)
            rel = float(np.linalg.norm(u - e) / np.linalg.norm(e))
            rel_sur = float(np.linalg.norm(np.asarray(out.surrogate) - e) / np.linalg.norm(e))
            z = (u - e) / se
            row = {"dtype": jnp.dtype(dtype).name, "key": 7 + k, "surrogate": rel_sur, "scasml": rel,
                   "coverage": float(np.mean(np.abs(z) <= 1.96)), "rms_z": float(np.sqrt(np.mean(z**2))),
                   "mean_z": float(np.mean(z))}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def eqx_float(a):
    return isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)


if __name__ == "__main__":
    main()
