"""VB with a Gaussian-process (kernel collocation) surrogate: the VB-GP rows and the convergence study (issue #8).

    nice -n 10 .venv/bin/python experiments/gp_study.py acceptance            # d = 20, 1,200 test points
    nice -n 10 .venv/bin/python experiments/gp_study.py rows --dims 40 60 80 --test-points 300
    nice -n 10 .venv/bin/python experiments/gp_study.py convergence --dims 20 40 --test-points 300

Everything runs in float64 (this script enables jax x64; the library never does). The surrogate is
``fit_gp(pde, key, interior=3m/4, terminal=m/4, kernel="matern52")`` with the median-heuristic lengthscale;
SCaSML and plain MLP use ``MultilevelPicard(2, 10)`` (full history, no clipping) with the same key.

Two routes to the SCaSML numbers, which give the same estimates (checked here on the first ``--check`` points,
max |difference| printed): ``scasml.calibrate`` (the public API; its residual uses autodiff with the exact trace,
O(m·d²) per residual) and the closed-form route ``û + scasml.solve(defect)``, where ``defect`` is the law of
defect whose level-0 source uses ``GPSurrogate.residual_parts`` (O(m·d)). All other randomness and arithmetic
are identical (same keys, same estimator), so the closed form only saves time. Times are wall-clock seconds on
the machine running the script, compilation included (every call compiles afresh).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import scasml  # noqa: E402
from scasml._defect import DefectPDE  # noqa: E402
from scasml._derivatives import ExactTrace  # noqa: E402
from scasml.surrogates._gp import fit_gp  # noqa: E402

ESTIMATOR = scasml.MultilevelPicard(2, 10)


class ClosedFormGPDefect(DefectPDE):
    """The law of defect of a GP surrogate with the level-0 residual in closed form (same values as autodiff)."""

    def source(self, key, t, x):
        del key
        return self.surrogate.residual_parts(self.base, t, x).residual


def rel_l2(u, ref) -> float:
    return float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def calibrate_closed_form(gp, pde, t, x, key):
    def run():
        est = scasml.solve(ClosedFormGPDefect(pde, gp, ExactTrace()), t, x, ESTIMATOR, key=key)
        return jax.vmap(gp)(t, x) + est.u

    return timed(run)


def one_case(d: int, m: int, test_points: int, *, check: int = 0, kernel: str = "matern52", plain: bool = True):
    pde = scasml.equations.get("vb", dim=d)
    t, x = pde.sample_domain(jax.random.key(1), test_points)
    ref = jax.vmap(pde.exact)(t, x)
    key = jax.random.key(2)
    interior = 3 * m // 4
    (gp, log), fit_s = timed(fit_gp, pde, jax.random.key(0), interior=interior, terminal=m - interior, kernel=kernel)
    u_hat = jax.vmap(gp)(t, x)
    u_cal, cal_s = calibrate_closed_form(gp, pde, t, x, key)
    row = {
        "d": d,
        "m": m,
        "test_points": test_points,
        "kernel": kernel,
        "lengthscale": log.lengthscale[1],
        "gn_iterations": int(len(log.step)),
        "gn_damping": [float(v) for v in log.damping],
        "collocation_residual_rms": float(log.residual_rms[-1]),
        "fit_s": fit_s,
        "surrogate": rel_l2(u_hat, ref),
        "scasml": rel_l2(u_cal, ref),
        "scasml_s": cal_s,
    }
    row["gain"] = 1.0 - row["scasml"] / row["surrogate"]
    if plain:
        est, mlp_s = timed(lambda: scasml.solve(pde, t, x, ESTIMATOR, key=key))
        row.update(plain_mlp=rel_l2(est.u, ref), plain_mlp_s=mlp_s)
    if check:
        official, off_s = timed(lambda: scasml.calibrate(gp, pde, t[:check], x[:check], ESTIMATOR, key=key))
        row.update(
            check_points=check,
            check_calibrate_s=off_s,
            check_max_abs_diff=float(jnp.max(jnp.abs(official.u - u_cal[:check]))),
            check_stderr_mean=float(jnp.mean(official.stderr)),
        )
    print(json.dumps(row), flush=True)
    return row


def slope(ms, errs) -> float:
    return float(np.polyfit(np.log(ms), np.log(errs), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["acceptance", "rows", "convergence"])
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument("--m", type=int, nargs="+", default=None, help="collocation points (3/4 interior)")
    parser.add_argument("--test-points", type=int, default=None)
    parser.add_argument("--check", type=int, default=None, help="points on which scasml.calibrate is also run")
    parser.add_argument("--kernel", default="matern52")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain MLP baseline (surrogate-independent)")
    args = parser.parse_args(argv)
    print(json.dumps({"devices": [str(dv) for dv in jax.devices()], "x64": bool(jax.config.jax_enable_x64)}))
    if args.stage == "acceptance":
        check = 100 if args.check is None else args.check
        one_case(20, (args.m or [2000])[0], args.test_points or 1200, check=check, kernel=args.kernel)
    elif args.stage == "rows":
        for d in args.dims or [20, 40, 60, 80]:
            m, n = (args.m or [2000])[0], args.test_points or 300
            one_case(d, m, n, check=args.check or 0, kernel=args.kernel, plain=not args.no_plain)
    else:
        for d in args.dims or [20, 40]:
            rows = []
            for i, m in enumerate(args.m or [250, 500, 1000, 2000]):
                rows.append(one_case(d, m, args.test_points or 300, kernel=args.kernel, plain=i == 0))
            ms = [r["m"] for r in rows]
            fits = {
                "d": d,
                "slope_surrogate": slope(ms, [r["surrogate"] for r in rows]),
                "slope_scasml": slope(ms, [r["scasml"] for r in rows]),
                "plain_mlp": rows[0].get("plain_mlp", math.nan),
            }
            print(json.dumps(fits), flush=True)


if __name__ == "__main__":
    main()
