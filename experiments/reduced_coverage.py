"""Coverage of the reduced-variance estimators, and the Picard truncation bias that limits it at n = 2.

    python experiments/reduced_coverage.py shipped [ROW:DIM ...] [--n3] [--with K=V,K=V ...]  # 200 points × 8 keys
    python experiments/reduced_coverage.py bias [--with K=V,K=V ...]                          # VB test set-up
    python experiments/reduced_coverage.py tails [--with K=V,K=V ...]                         # z tails, ν
    python experiments/reduced_coverage.py truncation [EQ:DIM:AMPLITUDE:FREQUENCY ...]         # 200 points × 16 keys
    python experiments/reduced_coverage.py deeper                                             # 200 points × 8 keys

``shipped``: on the shipped PINNs, coverage of the 95 % intervals, the share of misses on each side, mean and
standard deviation of z = (u − exact)/stderr, relative L2, the RMS over points of the mean over keys minus the
exact value divided by the noise left in that mean ("bias ÷ noise": about 1 without a bias), and the coverage and
mean half-width ratio of the intervals of ``scasml.widen``, for
MultilevelPicard(2, 10) and the same with ``antithetic=True, qmc_sets=4`` (``--n3``: also MultilevelPicard(3, 6)
with them; each ``--with``: MultilevelPicard(2, 10, K=V, ...), e.g. ``--with antithetic=True,qmc_sets=4,
min_top_samples=20``). ``bias``: on VB (d = 10, surrogate = exact + 0.3·sin(Σx + t), 40 points, 200 keys), the
RMS over points of (mean over keys − exact) with the noise left in that mean, and the coverage, for n = 1
(M = 100), n = 2 at M = 10 and 20, n = 3 at M = 10 and the ``--with`` estimators at n = 2, M = 10: a bias that
does not shrink with M is the truncation u_n − u; and whether the last Picard correction u_2 − u_1 bounds it
point by point. ``tails``: on heat, LCD and LCD's defect PDE (d = 10, 200 points × 5 keys, as in
tests/test_estimators.py), the share of |z| ≤ 4, the RMS of z and the median Welch–Satterthwaite degrees of freedom
ν for MultilevelPicard(2, 10) and the ``--with`` estimators: a standard error over R nets has about R − 1.
``truncation``: the batch estimate of the Picard truncation (``CalibratedPrediction.truncation``) against the
truncation measured with the exact solution. On an equation with surrogate = exact + AMPLITUDE·sin(FREQUENCY·Σx + t)
(200 points, 16 keys per estimator): the means over keys of MultilevelPicard(1, 100) and (2, 10) give the
corrections Δ1 = u_1 − û and Δ2 = u_2 − u_1 and the truncation u − u_2 (RMS over the points, less the noise left
in the means); then, for MultilevelPicard(2, 10) and ``antithetic=True, qmc_sets=8, qmc_points=32,
min_top_samples=20`` (and both with ``next_correction=2`` where the dynamics allow it), each key's own estimate
(median and range over keys), its ratio to the RMS standard error (the warning's threshold is 0.3), the 95 %
intervals' coverage and RMS z, and both for the intervals of ``scasml.widen`` (the estimate spread over the points ∝
T − t and added in quadrature), with their mean half-width ÷ the unwidened one's. ``deeper``: on the VB-20
set-up of ``truncation`` (a = 0.05), whether n = 3
with the options, whose truncation is small, pays: coverage, mean squared error and its bias part, and
err² × evaluations for MultilevelPicard(2, 10), the reduced n = 2 estimator and n = 3 with nested estimates of
base 3 (``inner_base``).
"""

from __future__ import annotations

import ast
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import scasml
from scasml import equations

METHODS = {"MultilevelPicard(2, 10)": scasml.MultilevelPicard(2, 10),
           "antithetic + qmc 4": scasml.MultilevelPicard(2, 10, antithetic=True, qmc_sets=4)}


def _runs(surrogate, pde, t, x, estimator, keys, first):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "calibrate: the Picard truncation", RuntimeWarning)
        runs = [scasml.calibrate(surrogate, pde, t, x, estimator, key=jax.random.key(first + k)) for k in range(keys)]
    out = {name: np.stack([np.asarray(getattr(r, name), np.float64) for r in runs])
           for name in ("u", "stderr", "lower", "upper")}
    out["truncation"] = np.stack([np.full(t.shape, np.nan) if r.truncation is None else np.asarray(r.truncation)
                                  for r in runs])
    return out


def _options(spec: str) -> dict:
    """'antithetic=True,qmc_sets=4' → {'antithetic': True, 'qmc_sets': 4} (Python literals only)."""
    pairs = (item.split("=", 1) for item in spec.split(",") if item)
    return {key.strip(): ast.literal_eval(value.strip()) for key, value in pairs}


def _with(extra) -> dict:
    """The ``--with`` estimators: MultilevelPicard(2, 10, K=V, ...) by label."""
    return {f"MultilevelPicard(2, 10, {spec})": scasml.MultilevelPicard(2, 10, **_options(spec)) for spec in extra}


def _bias_over_noise(r, exact):
    offset = r["u"].mean(0) - exact
    noise = r["u"].std(0, ddof=1) / np.sqrt(r["u"].shape[0])
    return np.sqrt(np.mean(offset**2)) / np.sqrt(np.mean(noise**2))


def shipped(rows, n3=False, extra=()):
    methods = dict(METHODS)
    if n3:
        methods["n = 3, M = 6, antithetic + qmc 4"] = scasml.MultilevelPicard(3, 6, antithetic=True, qmc_sets=4)
    methods |= _with(extra)
    for row in rows:
        name, dim = row.split(":")
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
            z = (r["u"] - exact) / r["stderr"]
            s, cut = r["stderr"], np.nan_to_num(r["truncation"])
            q = (r["upper"] - r["lower"]) / (2 * s)
            widened = np.hypot(s, cut)  # scasml.widen
            inside = np.mean(np.abs(r["u"] - exact) <= q * widened)
            print(f"{name.upper()}-{dim:<4} {label:<33} coverage {1 - below - above:.3f} (below {below:.3f}, above "
                  f"{above:.3f})  z mean {np.mean(z):+.2f} sd {np.std(z):.2f}  rel. L2 {rel:.3e}  bias ÷ noise "
                  f"{_bias_over_noise(r, exact):.2f}  widened: coverage {inside:.3f}, "
                  f"half-width ×{np.nanmean(widened / s):.3f}", flush=True)


def bias(keys=200, extra=()):
    pde = equations.get("vb", dim=10)
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.3 * jnp.sin(jnp.sum(x) + t))
    t, x = pde.sample_domain(jax.random.key(3), 40)
    exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
    methods = {f"MultilevelPicard({n}, {m})": scasml.MultilevelPicard(n, m)
               for n, m in ((1, 100), (2, 10), (2, 20), (3, 10))}
    methods |= _with(extra)
    means = {}
    for label, estimator in methods.items():
        r = _runs(surrogate, pde, t, x, estimator, keys, 1000)
        means[label] = r["u"].mean(0)
        offset = means[label] - exact
        noise = r["u"].std(0, ddof=1) / np.sqrt(keys)
        coverage = np.mean((r["lower"] <= exact) & (exact <= r["upper"]))
        print(f"{label}: RMS bias {np.sqrt(np.mean(offset**2)):.3e} (noise in it {np.sqrt(np.mean(noise**2)):.3e}), "
              f"RMS stderr of one estimate {np.sqrt(np.mean(r['stderr']**2)):.3e}, coverage {coverage:.3f}",
              flush=True)
    # does the last Picard correction u_2 − u_1 predict the truncation u_2 − u point by point?
    two, one = means["MultilevelPicard(2, 10)"], means["MultilevelPicard(1, 100)"]
    ratio = np.abs(two - exact) / np.abs(two - one)
    print("|u_2 − u| / |u_2 − u_1| over points: median {:.3f}, 90 % {:.3f}, max {:.3f}".format(
        *np.quantile(ratio, [0.5, 0.9, 1.0])))


def tails(extra=()):
    lcd = equations.get("lcd", dim=10)
    perturbed = scasml.FunctionSurrogate(lambda t, x: lcd.exact(t, x) + 0.3 * jnp.sin(2 * jnp.sum(x) + t))
    problems = {"heat": equations.get("heat", dim=10), "lcd": lcd, "lcd-defect": scasml.law_of_defect(lcd, perturbed)}
    methods = {"MultilevelPicard(2, 10)": scasml.MultilevelPicard(2, 10)}
    methods |= _with(extra)
    for label, estimator in methods.items():
        cells = []
        for name, pde in problems.items():
            t, x = pde.sample_domain(jax.random.key(0), 200)
            exact = jax.vmap(pde.exact)(t, x)
            outs = [scasml.solve(pde, t, x, estimator, key=jax.random.key(1 + k)) for k in range(5)]
            z = np.concatenate([np.asarray((out.u - exact) / out.stderr, np.float64) for out in outs])
            dof = np.median(np.concatenate([np.asarray(out.dof, np.float64) for out in outs]))
            cells.append(f"{name}: |z| ≤ 4 {np.mean(np.abs(z) <= 4):.3f}, RMS z {np.sqrt(np.mean(z**2)):.2f}, "
                         f"ν {dof:.1f}")
        print(f"{label}: " + "; ".join(cells), flush=True)


REDUCED = {"antithetic": True, "qmc_sets": 8, "qmc_points": 32, "min_top_samples": 20}


def truncation(cases, keys=16):
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))
    for case in cases:
        name, dim, amplitude, frequency = case.split(":")
        pde = equations.get(name, dim=int(dim))
        a, w = float(amplitude), float(frequency)
        perturbed = lambda t, x, pde=pde, a=a, w=w: pde.exact(t, x) + a * jnp.sin(w * jnp.sum(x) + t)
        surrogate = scasml.FunctionSurrogate(perturbed)
        t, x = pde.sample_domain(jax.random.key(3), 200)
        exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
        u_hat = np.asarray(jax.vmap(surrogate)(t, x), np.float64)
        one = _runs(surrogate, pde, t, x, scasml.MultilevelPicard(1, 100), keys, 100)
        two = _runs(surrogate, pde, t, x, scasml.MultilevelPicard(2, 10), keys, 200)
        noise = {label: r["u"].std(0, ddof=1) / np.sqrt(keys) for label, r in (("1", one), ("2", two))}
        delta1 = one["u"].mean(0) - u_hat
        left = rms(noise["1"]) ** 2 + rms(noise["2"]) ** 2
        delta2 = np.sqrt(max(rms(two["u"].mean(0) - one["u"].mean(0)) ** 2 - left, 0))
        measured = np.sqrt(max(rms(exact - two["u"].mean(0)) ** 2 - rms(noise["2"]) ** 2, 0))
        print(f"{name.upper()}-{dim}, amplitude {a:g}, frequency {w:g}: RMS Δ1 {rms(delta1):.3e}, Δ2 {delta2:.3e}; "
              f"Δ2²/Δ1 {delta2**2 / rms(delta1):.3e} (from the means over keys); measured truncation {measured:.3e}",
              flush=True)
        reduced = _runs(surrogate, pde, t, x, scasml.MultilevelPicard(2, 10, **REDUCED), keys, 300)
        rows = [("MultilevelPicard(2, 10)", two), ("aq8×32, top ≥ 20", reduced)]
        if pde.dynamics.brownian_transitions:  # the linearised next correction (next_correction=2)
            rows += [(label, _runs(surrogate, pde, t, x, scasml.MultilevelPicard(2, 10, next_correction=2, **options),
                                   keys, 400)) for label, options in (("next 2", {}), ("aq8×32, top ≥ 20, next 2",
                                                                                    REDUCED))]
        for label, r in rows:
            err, s, cut = r["u"] - exact, r["stderr"], r["truncation"]
            b = np.sqrt(np.mean(cut**2, axis=1))  # per key: the batch estimate (all points before the horizon)
            q = (r["upper"] - r["lower"]) / (2 * s)  # the interval's t quantile
            widened = np.hypot(s, cut)  # scasml.widen: the estimate spread ∝ T − t, in quadrature
            ratio = b / np.sqrt(np.mean(s**2, axis=1))
            print(f"    {label:<24} estimate per key {np.median(b):.2e} (range {b.min():.2e}–{b.max():.2e}), "
                  f"÷ RMS stderr {np.median(ratio):.2f} (warns for {np.mean(ratio > 0.3):.0%} of keys); coverage "
                  f"{np.mean(np.abs(err) <= q * s):.3f}, RMS z {rms(err / s):.2f}; widened "
                  f"{np.mean(np.abs(err) <= q * widened):.3f}, RMS z {rms(err / widened):.2f}, half-width "
                  f"×{np.mean(widened / s):.2f}", flush=True)


def deeper(keys=8):
    """n = 3 with the options and cheap nested estimates against n = 2 on VB-20, û = exact + 0.05·sin(Σx + t)."""
    pde = equations.get("vb", dim=20)
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.05 * jnp.sin(jnp.sum(x) + t))
    t, x = pde.sample_domain(jax.random.key(3), 200)
    exact = np.asarray(jax.vmap(pde.exact)(t, x), np.float64)
    nets = {k: REDUCED[k] for k in ("antithetic", "qmc_sets", "qmc_points")}
    estimators = {"MultilevelPicard(2, 10)": scasml.MultilevelPicard(2, 10),
                  "(2, 10), aq8×32, top ≥ 20": scasml.MultilevelPicard(2, 10, **REDUCED),
                  "(3, 5), aq8×32": scasml.MultilevelPicard(3, 5, **nets),
                  "(3, 4), aq8×32, nested M = 3": scasml.MultilevelPicard(3, 4, inner_base=3, **nets),
                  "(3, 5), aq8×32, nested M = 3": scasml.MultilevelPicard(3, 5, inner_base=3, **nets),
                  "(3, 6), aq8×32, nested M = 3": scasml.MultilevelPicard(3, 6, inner_base=3, **nets)}
    defect = scasml.law_of_defect(pde, surrogate)
    first = None
    for label, estimator in estimators.items():
        r = _runs(surrogate, pde, t, x, estimator, keys, 500)
        err, s = r["u"] - exact, r["stderr"]
        evaluations = sum(estimator.evaluations(defect).values())
        work = np.mean(err**2) * evaluations
        first = first or work
        noise = np.mean(r["u"].var(0, ddof=1)) / keys
        bias = np.sqrt(max(np.mean(err.mean(0) ** 2) - noise, 0))
        covered = np.mean((r["lower"] <= exact) & (exact <= r["upper"]))
        print(f"{label:<30} evaluations {evaluations:5d}, coverage {covered:.3f}, RMS z "
              f"{np.sqrt(np.mean((err / s) ** 2)):.2f}, mean err² {np.mean(err**2):.3e} (bias² {bias**2:.1e}), "
              f"RMS stderr {np.sqrt(np.mean(s**2)):.2e}; err² × evaluations ÷ the first {work / first:.2f}", flush=True)


def main(argv):
    if not argv or argv[0] not in ("shipped", "bias", "tails", "truncation", "deeper"):
        sys.exit(__doc__)
    extra = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--with"]
    positional = [a for i, a in enumerate(argv[1:], 1) if a not in ("--with", "--n3") and argv[i - 1] != "--with"]
    if argv[0] == "shipped":
        shipped(positional or ["vb:20", "dr:100", "lcd:10", "bsb:100"], n3="--n3" in argv, extra=extra)
    elif argv[0] == "bias":
        bias(extra=extra)
    elif argv[0] == "deeper":
        deeper()
    elif argv[0] == "truncation":
        truncation(positional or ["vb:20:0.05:1", "vb:20:0.05:2", "vb:10:0.3:1", "vb:5:0.3:1", "lqou:5:0.3:1",
                                  "lqou:10:0.1:1", "dr:10:0.1:1"])
    else:
        tails(extra=extra)


if __name__ == "__main__":
    main(sys.argv[1:])
