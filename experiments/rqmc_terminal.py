"""Randomised quasi-Monte Carlo for the terminal term: does it pay where the variance is?

On the shipped PINNs the terminal term ğ(X_T) − ğ(x) of the defect carries most of the estimator's variance
(experiments/RESULTS.md, "Variance reduction"). This measures, per point, the variance of its mean over
``--paths`` paths from (a) independent Gaussian draws, (b) antithetic pairs, and (c) scrambled Sobol' points
(Owen scrambling, ``scipy.stats.qmc.Sobol``; Gaussians by the inverse normal CDF), and (d) one unscrambled
Sobol' net under independent random digital shifts (XOR of the 32-bit coordinates), each over ``--randomisations``
independent randomisations, and prints the variance ratios to (a) (median over points and ratio of the summed
variances). The Sobol' sets are made on the host: a measurement of what RQMC would buy, not an estimator.

    python experiments/rqmc_terminal.py          # vb 20, lcd 10, lqg 100, dr 100; 64 points, 128 paths, 32 sets

(A PINN with g built in, as the shipped BSB/LQ-OU ones, has no terminal term in its defect.)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri
from scipy.stats import qmc

import scasml


def terminal_means(defect, t, x, normals):
    """Mean over paths of ğ(X_T) − ğ(x) at each point; ``normals`` (sets, paths, d) shared by the points."""
    horizon = defect.horizon

    def one(ti, xi, noise):
        ends = jax.vmap(lambda n: defect.dynamics.sample(ti, xi, horizon - ti, n[None])[0])(noise)
        return jnp.mean(jax.vmap(defect.terminal)(ends)) - defect.terminal(xi)

    per_set = jax.jit(jax.vmap(lambda noise: jax.vmap(lambda ti, xi: one(ti, xi, noise))(t, x)))
    return np.asarray(per_set(normals), np.float64)  # (sets, points)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["vb:20", "lcd:10", "lqg:100", "dr:100"])
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--paths", type=int, default=128)
    parser.add_argument("--randomisations", type=int, default=32)
    args = parser.parse_args()
    m, sets = args.paths, args.randomisations
    print(f"{args.points} points, {m} paths, {sets} randomisations; variance of the terminal mean, ratio to i.i.d.")
    for spec in args.rows:
        name, dim = spec.split(":")
        surrogate, pde = scasml.pretrained(name, int(dim))
        defect = scasml.law_of_defect(pde, surrogate)
        t, x = pde.sample_domain(jax.random.key(1), args.points)
        d = pde.dim
        iid = jax.random.normal(jax.random.key(2), (sets, m, d), pde.dtype)
        half = jax.random.normal(jax.random.key(3), (sets, m // 2, d), pde.dtype)
        pairs = jnp.concatenate([half, -half], axis=1)
        sobol = np.stack([qmc.Sobol(d, scramble=True, seed=1000 + s).random(m) for s in range(sets)])
        quasi = jnp.asarray(ndtri(np.clip(sobol, 1e-12, 1 - 1e-12)), pde.dtype)  # float64 on the host
        net = np.floor(qmc.Sobol(d, scramble=False).random(m) * 2**32).astype(np.uint64)  # digital shifts of it
        shifts = np.random.default_rng(7).integers(0, 2**32, size=(sets, 1, d), dtype=np.uint64)
        shifted = ((net[None] ^ shifts).astype(np.float64) + 0.5) / 2**32
        digital = jnp.asarray(ndtri(shifted), pde.dtype)
        variances = {label: np.var(terminal_means(defect, t, x, normals), axis=0, ddof=1)
                     for label, normals in (("iid", iid), ("antithetic", pairs), ("sobol", quasi),
                                            ("sobol-shift", digital))}
        base = variances["iid"]
        for label in ("antithetic", "sobol", "sobol-shift"):
            ratio = variances[label] / base
            print(f"{name.upper()}-{dim:<4} {label:<11} median ratio {np.median(ratio):.3f}  "
                  f"summed-variance ratio {variances[label].sum() / base.sum():.3f}", flush=True)


if __name__ == "__main__":
    main()
