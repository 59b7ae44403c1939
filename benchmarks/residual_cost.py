"""Residual cost in units of one surrogate forward pass, vs dimension, for each Laplacian method.

    python benchmarks/residual_cost.py [--dims 10 100 1000 10000] [--json out.json]

Methods: exact trace with the PINN's forward-Laplacian sweep ("exact-forward-laplacian"), exact trace with
d nested forward-mode JVPs ("exact-nested-jvp"), and Hutchinson with 4 Rademacher probes ("hutchinson-4").
Printed: seconds per point and the ratio to a forward pass (median over interleaved rounds); targets: exact
≤ 1.5·d, Hutchinson ≤ 8.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import scasml


def _seconds(fn, args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def _ratio(method, method_args, forward, forward_args, rounds):
    """Median over ``rounds`` of (method seconds ÷ forward seconds), the two timed back to back in each round
    (this machine's speed drifts; interleaving cancels the drift), and the median method seconds."""
    jax.block_until_ready(method(*method_args))
    jax.block_until_ready(forward(*forward_args))
    pairs = [(_seconds(method, method_args), _seconds(forward, forward_args)) for _ in range(rounds)]
    return float(np.median([m / f for m, f in pairs])), float(np.median([m for m, _ in pairs]))


def measure(dim: int, points: int, rounds: int):
    pde = scasml.equations.get("vb", dim=dim)
    pinn = scasml.PINN(dim, pde.horizon, jax.random.key(0))
    generic = scasml.FunctionSurrogate(lambda t, x: pinn(t, x))  # hides the fast path
    t, x = pde.sample_domain(jax.random.key(1), points)
    keys = jax.random.split(jax.random.key(2), points)
    forward = jax.jit(jax.vmap(pinn))
    row = {"dim": dim, "points": points, "forward_s": _ratio(forward, (t, x), forward, (t, x), rounds)[1] / points}
    methods = {
        "exact-forward-laplacian": (pinn, scasml.ExactTrace()),
        "exact-nested-jvp": (generic, scasml.ExactTrace()),
        "hutchinson-4": (pinn, scasml.HutchinsonTrace(4)),
    }
    for name, (surrogate, trace) in methods.items():
        if name == "exact-nested-jvp" and dim > 1000:
            continue  # minutes per batch; the forward-Laplacian sweep is the exact method at this size
        fn = jax.jit(jax.vmap(lambda t, x, k, s=surrogate, tr=trace: scasml.residual(pde, s, t, x, tr, k)))
        ratio, seconds = _ratio(fn, (t, x, keys), forward, (t, x), rounds)
        row[name] = {"seconds_per_point": seconds / points, "forward_passes": ratio}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", nargs="+", type=int, default=[10, 100, 1000, 10000])
    parser.add_argument("--json", default=None)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved (method, forward) timings per method")
    args = parser.parse_args()
    rows = []
    for dim in args.dims:
        rows.append(measure(dim, points=max(256, min(4096, 4_000_000 // dim)), rounds=args.rounds))
        r = rows[-1]
        cells = "  ".join(f"{k}: {v['forward_passes']:8.1f} fwd ({v['forward_passes'] / dim:5.2f}·d)"
                          for k, v in r.items() if isinstance(v, dict))
        print(f"d = {dim:>6}  forward {r['forward_s'] * 1e6:8.1f} µs/pt  {cells}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
