"""Adaptive per-point budgets against uniform ones, on the shipped PINNs (LQG 100 d, VB 20 d).

For each row and key (all with MultilevelPicard(2, 10) replicas on the same points):

* same maximum standard error: a uniform run of R replicas per point (``scasml.Uniform(R)``) reaches a largest
  standard error S; ``TargetStderr(absolute=S)`` reaches it with fewer evaluations: the ratio is printed;
* same total budget: ``Budget(evaluations=`` the uniform run's ``)`` against the uniform run: relative L2
  errors against the exact solution (VB) or a Cole–Hopf Monte Carlo reference (LQG, 10⁵ samples per point);
* overhead: a target the one-replica run already meets everywhere; adaptive and plain warm seconds, alternated.

    python benchmarks/adaptive.py                      # both rows, 512 points, R = 4, 5 keys
    python benchmarks/adaptive.py --rows vb:20 --points 256 --keys 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import scasml


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.u)
    return out, time.perf_counter() - start


def _reference(pde, t, x):
    if pde.has_exact:
        return np.asarray(jax.vmap(pde.exact)(t, x), np.float64), "exact"
    value, stderr = pde.reference(t, x, jax.random.key(12345), samples=100_000)
    return np.asarray(value, np.float64), f"Cole–Hopf reference, max stderr {float(np.max(stderr)):.1e}"


def _rel_l2(u, exact) -> float:
    return float(np.linalg.norm(np.asarray(u, np.float64) - exact) / np.linalg.norm(exact))


def run_row(name, dim, points, replicas, keys, estimator):
    surrogate, pde = scasml.pretrained(name, dim)
    t, x = pde.sample_domain(jax.random.key(1), points)
    exact, described = _reference(pde, t, x)
    calibrate = lambda key, allocation=None: scasml.calibrate(surrogate, pde, t, x, estimator, key=key,
                                                              allocation=allocation)
    print(f"\n{name.upper()}-{dim}: {points} points, {estimator!r}, uniform {replicas} replicas; {described}")
    print(f"{'key':>4} {'uniform evals':>14} {'target evals':>13} {'ratio':>6} {'max se unif':>12} "
          f"{'max se adapt':>13} {'met':>6} {'relL2 unif':>11} {'relL2 budget':>13}")
    ratios, errors = [], []
    for k in range(keys):
        key = jax.random.key(100 + k)
        uniform = calibrate(key, scasml.Uniform(replicas))
        cost = sum(uniform.evaluations.values())
        spent_uniform = int(np.sum(uniform.replicas)) * cost
        target = float(np.max(uniform.stderr))
        adaptive = calibrate(key, scasml.TargetStderr(absolute=target, max_replicas=16 * replicas))
        spent_adaptive = int(np.sum(adaptive.replicas)) * cost
        budget = calibrate(key, scasml.Budget(evaluations=spent_uniform))
        ratio = spent_uniform / spent_adaptive
        errs = (_rel_l2(uniform.u, exact), _rel_l2(budget.u, exact))
        ratios.append(ratio)
        errors.append(errs)
        print(f"{k:>4} {spent_uniform:>14.4g} {spent_adaptive:>13.4g} {ratio:>6.2f} {target:>12.3e} "
              f"{float(np.max(adaptive.stderr)):>13.3e} {float(np.mean(adaptive.met)):>6.3f} {errs[0]:>11.4e} "
              f"{errs[1]:>13.4e}")
    unif, budg = np.mean(errors, axis=0)
    print(f"evaluations, uniform ÷ adaptive at the same max stderr: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"relative L2 at the same total budget: uniform {unif:.4e}, Neyman budget {budg:.4e} "
          f"(budget ÷ uniform {budg / unif:.3f}; budget no worse in {sum(b <= u for u, b in errors)}/{keys} keys)")
    # overhead: a target that one replica meets everywhere; plain and adaptive warm runs, alternated
    plain_run = calibrate(jax.random.key(7))
    easy = scasml.TargetStderr(absolute=2 * float(np.max(plain_run.stderr)))
    calibrate(jax.random.key(7), easy)  # compile
    plain, adaptive = [], []
    for r in range(5):
        plain.append(_timed(lambda r=r: calibrate(jax.random.key(200 + r)))[1])
        adaptive.append(_timed(lambda r=r: calibrate(jax.random.key(200 + r), easy))[1])
    p, a = statistics.median(plain), statistics.median(adaptive)
    print(f"overhead (target met by the pilot everywhere), warm medians of 5 alternated: plain {p:.3f} s, "
          f"adaptive {a:.3f} s, ratio {a / p:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["lqg:100", "vb:20"])
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--base", type=int, default=10)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {len(jax.devices())} device(s)")
    estimator = scasml.MultilevelPicard(args.levels, args.base)
    for row in args.rows:
        name, dim = row.split(":")
        run_row(name, int(dim), args.points, args.replicas, args.keys, estimator)


if __name__ == "__main__":
    main()
