"""Whether the quadrature variant escapes the n = 2 Picard truncation that limits the reduced options' coverage.

    python experiments/quadrature_truncation.py

VB-20 with surrogate = exact + 0.05·sin(Σx + t) (the set-up of ``reduced_coverage.py deeper``), 200 points ×
16 keys: for MultilevelPicard(2, 10) in both variants, plain and with ``antithetic=True, qmc_sets=8,
qmc_points=32, min_top_samples=20``, the evaluations per point, coverage of the 95 % intervals, RMS standard error,
the bias (RMS over points of the mean over keys minus the exact value, its noise subtracted) and the mean squared
error.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import equations

KEYS = 16
REDUCED = {"antithetic": True, "qmc_sets": 8, "qmc_points": 32, "min_top_samples": 20}
ESTIMATORS = {
    "full history": scasml.MultilevelPicard(2, 10),
    "quadrature": scasml.MultilevelPicard(2, 10, variant="quadrature"),
    "full history, reduced": scasml.MultilevelPicard(2, 10, **REDUCED),
    "quadrature, reduced": scasml.MultilevelPicard(2, 10, variant="quadrature", **REDUCED),
}


def main():
    warnings.simplefilter("ignore")  # the truncation warning: measured here
    pde = equations.get("vb", dim=20)
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.05 * jnp.sin(jnp.sum(x) + t))
    t, x = pde.sample_domain(jax.random.key(3), 200)
    exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
    for name, estimator in ESTIMATORS.items():
        runs = [scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(100 + k)) for k in range(KEYS)]
        u = np.array([np.asarray(r.u, np.float64) for r in runs])
        stderr = np.array([np.asarray(r.stderr, np.float64) for r in runs])
        covered = np.mean([(np.asarray(r.lower) <= exact) & (exact <= np.asarray(r.upper)) for r in runs])
        noise = np.mean(u.var(axis=0, ddof=1) / KEYS)
        bias = np.sqrt(max(np.mean((u.mean(axis=0) - exact) ** 2) - noise, 0.0))
        evaluations = sum(estimator.evaluations(pde).values())
        print(f"{name:22s} evaluations {evaluations:5d}  coverage {covered:.3f}  RMS stderr "
              f"{np.sqrt(np.mean(stderr**2)):.3e}  bias {bias:.3e}  mean err² {np.mean((u - exact) ** 2):.3e}")


if __name__ == "__main__":
    main()
