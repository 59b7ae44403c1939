"""A PINN trained on this CPU in high dimension, then calibrated with the exact and the Hutchinson residual.

    python experiments/high_dim_pinn.py dr 1000 300      # equation, d, training steps (500 collocation points)

Prints the training time, and for each residual the cold calibration time of 100 points (n = 2, M = 10), the
PINN's and SCaSML's relative L2 errors against the exact solution, and the 95 % interval coverage.
"""

import sys
import time

import jax
import numpy as np

import scasml


def main():
    name, d, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pde = scasml.equations.get(name, dim=d)
    pinn = scasml.PINN(d, pde.horizon, jax.random.key(0))
    start = time.perf_counter()
    pinn, log = scasml.train(pinn, pde, jax.random.key(1), steps=steps, collocation=500, terminal_points=250,
                             learning_rate=1e-3, final_learning_rate=1e-4, log_every=max(1, steps // 5),
                             progress=False)
    print(f"train {steps} steps: {time.perf_counter() - start:.1f} s, loss {log.loss[-1]:.3e}", flush=True)
    t, x = pde.sample_domain(jax.random.key(2), 100)
    exact = np.asarray(jax.vmap(pde.exact)(t, x))

    def rel(u):
        return float(np.linalg.norm(np.asarray(u) - exact) / np.linalg.norm(exact))

    for label, trace in (("exact", scasml.ExactTrace()), ("hutchinson-4", scasml.HutchinsonTrace(4))):
        start = time.perf_counter()
        out = scasml.calibrate(pinn, pde, t, x, scasml.MultilevelPicard(2, 10), key=jax.random.key(3), trace=trace)
        jax.block_until_ready(out.u)
        seconds = time.perf_counter() - start
        coverage = np.mean(np.abs(np.asarray(out.u) - exact) <= 1.96 * np.asarray(out.stderr))
        print(f"{label}: {seconds:.1f} s cold; PINN {rel(out.surrogate):.3e} -> SCaSML {rel(out.u):.3e} "
              f"({100 * (1 - rel(out.u) / rel(out.surrogate)):.0f} % lower), coverage {coverage:.2f}", flush=True)


if __name__ == "__main__":
    main()
