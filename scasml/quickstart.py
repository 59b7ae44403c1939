"""Quickstart: correct a 10-d PINN at query time and print the errors.

    python -m scasml.quickstart            # uses the pretrained VB (d = 10) PINN shipped with scasml
    python -m scasml.quickstart --train    # trains that PINN first (≈ 1 minute on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import scasml


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (anything else is a usage error, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the PINN instead of loading the pretrained one")
    parser.add_argument("--points", type=positive_int, default=1200, help="number of test points (default 1200)")
    args = parser.parse_args(argv)

    if args.train:
        pde = scasml.equations.get("vb", dim=10)
        pinn = scasml.PINN(pde.dim, pde.horizon, jax.random.key(0))
        pinn, _ = scasml.train(pinn, pde, jax.random.key(1), steps=600, collocation=256, terminal_points=256)
    else:
        pinn, pde = scasml.pretrained("vb", dim=10)
    t, x = pde.sample_domain(jax.random.key(1), args.points)
    exact = jax.vmap(pde.exact)(t, x)

    def rel(u):
        return float(jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact))

    estimator = scasml.MultilevelPicard(levels=2, base=10)
    start = time.perf_counter()
    out = scasml.calibrate(pinn, pde, t, x, estimator, key=jax.random.key(2))
    out.u.block_until_ready()
    seconds = time.perf_counter() - start
    covered = float(jnp.mean((out.lower <= exact) & (exact <= out.upper)))
    print(f"{pde.name}, d = {pde.dim}, {args.points} points, multilevel Picard n = {estimator.levels}, "
          f"M = {estimator.base}")
    print(f"  surrogate (PINN)   relative L2 error {rel(out.surrogate):.3e}")
    print(f"  SCaSML (corrected) relative L2 error {rel(out.u):.3e}   ({seconds:.1f} s incl. compilation)")
    print(f"  improvement {100 * (1 - rel(out.u) / rel(out.surrogate)):.0f} %, 95 % intervals cover the exact "
          f"solution at {100 * covered:.0f} % of points")


if __name__ == "__main__":
    scasml.use_every_cpu_core()  # one JAX device per core: query chunks run in parallel
    main()
