"""Reference prices u(0, x₀) of the pricing equations without a closed form (bsdr, bsir; d = 100, x₀ = 100·1):
plain multilevel Picard, ``--estimates`` independent estimates at x₀ (point i uses ``fold_in(key(0), i)``),
mean ± its standard error √(mean stderr² / N) from the estimates' reported standard errors (and, as a check,
from their spread), for each (n, M) budget given.

    python benchmarks/pricing_reference.py                       # n = 3, M = 16, 256 estimates, both equations
    python benchmarks/pricing_reference.py --budget 4,8 --estimates 64 --equations bsir
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import scasml


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--equations", default="bsdr,bsir")
    parser.add_argument("--budget", action="append", help="n,M (repeatable; default 3,16)")
    parser.add_argument("--estimates", type=int, default=256)
    args = parser.parse_args()
    for name in args.equations.split(","):
        pde = scasml.equations.get(name, dim=100)
        t, x = jnp.zeros(args.estimates), jnp.full((args.estimates, 100), 100.0)
        for budget in args.budget or ["3,16"]:
            n, m = (int(v) for v in budget.split(","))
            start = time.perf_counter()
            est = scasml.solve(pde, t, x, scasml.MultilevelPicard(levels=n, base=m), key=jax.random.key(0))
            u = np.asarray(est.u, dtype=np.float64)
            seconds = time.perf_counter() - start
            mean, spread = u.mean(), u.std(ddof=1) / np.sqrt(len(u))
            stderr = float(np.sqrt(np.mean(np.asarray(est.stderr, np.float64) ** 2) / len(u)))
            gap = (mean - pde.LITERATURE_VALUE) / pde.LITERATURE_VALUE
            print(f"{name}: n = {n}, M = {m}: {mean:.3f} ± {stderr:.3f} (from the spread: ± {spread:.3f}; "
                  f"{args.estimates} estimates, {seconds:.1f} s "
                  f"cold); literature {pde.LITERATURE_VALUE:.3f} ({100 * gap:+.2f} %, "
                  f"{abs(mean - pde.LITERATURE_VALUE) / stderr:.1f} s.e.)", flush=True)


if __name__ == "__main__":
    main()
