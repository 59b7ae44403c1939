"""Coverage of adaptive runs (scasml.TargetStderr) on three equations with exact solutions.

For each equation (LCD, linear; VB, semilinear; LQ-OU, gradient-quadratic with Ornstein–Uhlenbeck dynamics; d = 5,
surrogate = exact solution + 0.3·sin(Σx + t)), a target of 0.7 × the median one-replica standard error, and
(a) 1,000 distinct points, one key; (b) 50 points × 20 keys (as in tests/test_adaptive.py): 95 % coverage, the
fraction of points that met the target, E[(err/τ)²] over the met points (≤ 1 if "met" is honest) and the RMS of
err/stderr. ``--default``: each with ``scasml.default_estimator`` instead (what ``calibrate`` uses when given
none: variance reduction and the next Picard correction on LCD and VB, plain on LQ-OU).

    python experiments/adaptive_coverage.py [--default]
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import equations

PROBLEMS = {"lcd": scasml.FeynmanKac(paths=64), "vb": scasml.MultilevelPicard(2, 6),
            "lqou": scasml.MultilevelPicard(2, 6)}


def summary(exact, runs, tau):
    u = np.stack([np.asarray(r.u, np.float64) for r in runs])
    se = np.stack([np.asarray(r.stderr, np.float64) for r in runs])
    lower = np.stack([np.asarray(r.lower, np.float64) for r in runs])
    upper = np.stack([np.asarray(r.upper, np.float64) for r in runs])
    met = np.stack([np.asarray(r.met) for r in runs])
    reps = np.stack([np.asarray(r.replicas) for r in runs])
    err = u - exact
    return (f"{err.size:>5} estimates: coverage {np.mean((lower <= exact) & (exact <= upper)):.3f}, "
            f"met {met.mean():.3f}, "
            f"E[(err/τ)²] over met {np.mean((err[met] / tau) ** 2):.3f}, RMS err/stderr "
            f"{math.sqrt(np.mean((err / se) ** 2)):.3f}, replicas mean {reps.mean():.2f} (max {reps.max()})")


def main(default=False):
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    for name, estimator in PROBLEMS.items():
        pde = equations.get(name, dim=5)
        surrogate = scasml.FunctionSurrogate(lambda t, x, pde=pde: pde.exact(t, x) + 0.3 * jnp.sin(jnp.sum(x) + t))
        if default:
            estimator = scasml.default_estimator(scasml.law_of_defect(pde, surrogate))
        start = time.perf_counter()
        t, x = pde.sample_domain(jax.random.key(3), 1000)
        exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
        uniform = scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(999))
        tau = 0.7 * float(np.median(uniform.stderr))
        allocation = scasml.TargetStderr(absolute=tau, max_replicas=32)
        one = scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(0), allocation=allocation)
        inside = (np.asarray(uniform.lower) <= exact) & (exact <= np.asarray(uniform.upper))
        print(f"\n{name} ({estimator!r}), τ = {tau:.3g}, uniform coverage {np.mean(inside):.3f}")
        print(f"  (a) 1,000 points, 1 key:  {summary(exact, [one], tau)}")
        runs = [scasml.calibrate(surrogate, pde, t[:50], x[:50], estimator, key=jax.random.key(k),
                                 allocation=allocation) for k in range(20)]
        print(f"  (b) 50 points × 20 keys: {summary(exact[:50], runs, tau)}  [{time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
    main(default="--default" in sys.argv[1:])
