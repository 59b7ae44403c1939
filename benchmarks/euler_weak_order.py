"""The discretisation bias of ``ItoDiffusion`` (Euler–Maruyama) made visible: steps vs error against an exact answer.

The linear PDE ∂_t u + Lu = 0, u(T) = ‖x‖², with L the generator of geometric Brownian motion
dX_i = μX_i ds + σX_i dW_i, has u(0, x) = ‖x‖² e^{(2μ + σ²)T}. ``ItoDiffusion`` is given the same coefficients as
callables and simulated with 4 … 64 steps; Feynman–Kac (one time sample, many paths) averages over points at
x = 1. Both u and the first component of z = σ(x)ᵀ∇u are compared with the exact values, and the weak order is
fitted on log error vs log steps (Euler–Maruyama: order 1).

    python benchmarks/euler_weak_order.py                 # d = 10, 50 points × 4,000 paths per step count
    python benchmarks/euler_weak_order.py --steps 4 8 16 32 64 --paths 8000
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import scasml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--paths", type=int, default=4000)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--drift", type=float, default=0.5)
    parser.add_argument("--volatility", type=float, default=0.3)
    args = parser.parse_args()
    d, mu, vol, horizon = args.dim, args.drift, args.volatility, 1.0
    gbm = scasml.GeometricBrownianMotion(d, drift=mu, volatility=vol)
    growth = np.exp((2 * mu + vol**2) * horizon)
    exact_u, exact_z0 = d * growth, 2 * vol * growth  # at x = 1: z_i = σ x_i ∂_i u = 2σ e^{(2μ+σ²)T}
    x = jnp.ones((args.points, d))
    print(f"GBM coefficients through ItoDiffusion, d = {d}, μ = {mu}, σ = {vol}, T = {horizon}; "
          f"{args.points} points × {args.paths} paths at x = 1")
    print(f"{'steps':>6} {'u error':>10} {'± stderr':>9} {'z_1 error':>10} {'± stderr':>9} {'seconds':>8}")
    errors = []
    for steps in args.steps:
        ito = scasml.ItoDiffusion(d, drift=lambda t, x: gbm.drift(t, x), diffusion=lambda t, x: gbm.diffusion(t, x),
                                  steps=steps)
        pde = scasml.SemilinearPDE(dim=d, horizon=horizon, dynamics=ito, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                   terminal=lambda x: x @ x, linear=True)
        start = time.perf_counter()
        est = scasml.solve(pde, jnp.zeros(args.points), x, scasml.FeynmanKac(paths=args.paths),
                           key=jax.random.key(steps))
        seconds = time.perf_counter() - start
        u_err = float(jnp.mean(est.u)) - exact_u
        u_se = float(jnp.sqrt(jnp.mean(est.stderr**2) / args.points))
        z_err = float(jnp.mean(est.z[:, 0])) - exact_z0
        z_se = float(jnp.sqrt(jnp.mean(est.z_stderr[:, 0] ** 2) / args.points))
        errors.append((abs(u_err), abs(z_err)))
        print(f"{steps:>6} {u_err:>10.4f} {u_se:>9.4f} {z_err:>10.4f} {z_se:>9.4f} {seconds:>8.1f}")
    logs = np.log(np.asarray(args.steps, float))
    u_order = -np.polyfit(logs, np.log([e[0] for e in errors]), 1)[0]
    print(f"fitted weak order (u): {u_order:.2f}   (Euler–Maruyama: 1; a z error within ~2 stderr is noise)")


if __name__ == "__main__":
    main()
