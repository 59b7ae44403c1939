"""Coverage of the reduced-variance estimators, and the Picard truncation bias that limits it at n = 2.

    python experiments/reduced_coverage.py shipped [ROW:DIM ...] [--n3]  # shipped PINNs: 200 points × 8 keys
    python experiments/reduced_coverage.py bias                          # VB test set-up: 200 keys

``shipped``: coverage of the 95 % intervals, mean z and the share of misses on each side, for
MultilevelPicard(2, 10) and the same with ``antithetic=True, qmc_sets=4`` (``--n3``: also MultilevelPicard(3, 6)
with them). ``bias``: on VB (d = 10, surrogate = exact + 0.3·sin(Σx + t), 40 points), the RMS over points of
(mean over keys − exact) with the noise left in that mean, for n = 1 (M = 100), n = 2 at M = 10 and 20 and n = 3 at
M = 10: a bias that does not shrink with M is the truncation u_n − u; and whether the last Picard correction
u_2 − u_1 bounds it point by point.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import equations

METHODS = {"MultilevelPicard(2, 10)": scasml.MultilevelPicard(2, 10),
           "antithetic + qmc 4": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4)}


def _runs(surrogate, pde, t, x, estimator, keys, first):
    runs = [scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(first + k)) for k in range(keys)]
    return {name: np.stack([np.asarray(getattr(r, name), np.float64) for r in runs])
            for name in ("u", "stderr", "lower", "upper")}


def shipped(rows, n3=False):
    methods = dict(METHODS)
    if n3:
        methods["n = 3, M = 6, antithetic + qmc 4"] = scasml.MultilevelPicard(3, 6, antithetic=True, qmc_sets=4)
    for spec in rows:
        name, dim = spec.split(":")
        surrogate, pde = scasml.pretrained(name, int(dim))
        t, x = pde.sample_domain(jax.random.key(11), 200)
        if pde.has_exact:
            exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
        else:
            exact = np.asarray(pde.reference(t, x, jax.random.key(12345), samples=100_000)[0], np.float64)
        for label, estimator in methods.items():
            r = _runs(surrogate, pde, t, x, estimator, 8, 50)
            below, above = np.mean(exact < r["lower"]), np.mean(exact > r["upper"])
            rel = np.linalg.norm(r["u"] - exact) / np.linalg.norm(np.broadcast_to(exact, r["u"].shape))
            z = np.mean((r["u"] - exact) / r["stderr"])
            print(f"{name.upper()}-{dim:<4} {label:<33} coverage {1 - below - above:.3f} (below {below:.3f}, above "
                  f"{above:.3f})  mean z {z:+.2f}  rel. L2 {rel:.3e}", flush=True)


def bias(keys=200):
    pde = equations.get("vb", dim=10)
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.3 * jnp.sin(jnp.sum(x) + t))
    t, x = pde.sample_domain(jax.random.key(3), 40)
    exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
    means = {}
    for n, m in ((1, 100), (2, 10), (2, 20), (3, 10)):
        r = _runs(surrogate, pde, t, x, scasml.MultilevelPicard(n, m), keys, 1000)
        means[n, m] = r["u"].mean(0)
        offset = means[n, m] - exact
        noise = r["u"].std(0, ddof=1) / np.sqrt(keys)
        print(f"MultilevelPicard({n}, {m}): RMS bias {np.sqrt(np.mean(offset**2)):.3e} (noise in it "
              f"{np.sqrt(np.mean(noise**2)):.3e}), RMS stderr of one estimate {np.sqrt(np.mean(r['stderr']**2)):.3e}",
              flush=True)
    # does the last Picard correction u_2 − u_1 predict the truncation u_2 − u point by point?
    ratio = np.abs(means[2, 10] - exact) / np.abs(means[2, 10] - means[1, 100])
    print("|u_2 − u| / |u_2 − u_1| over points: median {:.3f}, 90 % {:.3f}, max {:.3f}".format(
        *np.quantile(ratio, [0.5, 0.9, 1.0])))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("shipped", "bias"):
        sys.exit(__doc__)
    if sys.argv[1] == "shipped":
        rows = [a for a in sys.argv[2:] if a != "--n3"]
        shipped(rows or ["vb:20", "dr:100", "lcd:10", "bsb:100"], n3="--n3" in sys.argv)
    else:
        bias()
