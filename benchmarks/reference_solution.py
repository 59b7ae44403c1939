"""Cole–Hopf Monte Carlo reference for LQG: 1,200 points in 100 d with 10,000 samples per point.

    python benchmarks/reference_solution.py [--dim 100] [--points 1200] [--samples 10000]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import scasml


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--points", type=int, default=1200)
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    pde = scasml.equations.get("lqg", dim=args.dim)
    t, x = pde.sample_domain(jax.random.key(0), args.points)
    start = time.perf_counter()
    value, stderr = pde.reference(t, x, jax.random.key(1), samples=args.samples)
    jax.block_until_ready(value)
    seconds = time.perf_counter() - start
    print(f"LQG d = {args.dim}: {args.points} points × {args.samples} samples in {seconds:.1f} s (cold); "
          f"median stderr {float(jnp.median(stderr)):.2e}, max {float(jnp.max(stderr)):.2e}")


if __name__ == "__main__":
    main()
