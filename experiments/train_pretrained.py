"""Train the pretrained surrogates shipped in scasml/pretrained/ (each file records its config and seed).

    python experiments/train_pretrained.py              # all
    python experiments/train_pretrained.py vb_20 lcd_10 # some
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp

import scasml
from scasml._pretrained import PRETRAINED_DIR

# name -> (equation, dim, training config); the PINN is 5 × 50 tanh (paper architecture) unless stated.
RECIPES = {
    "vb_10": ("vb", 10, dict(steps=600, collocation=256, terminal_points=256, learning_rate=1e-3)),
    "vb_20": ("vb", 20, dict(steps=2000, collocation=500, terminal_points=500, learning_rate=1e-3, log_every=250)),
    "lcd_10": ("lcd", 10, dict(steps=1000, collocation=500, terminal_points=500, learning_rate=1e-3)),
    "lqg_100": ("lqg", 100, dict(steps=1500, collocation=256, terminal_points=256, learning_rate=1e-3, probes=8)),
    "dr_100": ("dr", 100, dict(steps=1500, collocation=256, terminal_points=256, learning_rate=1e-3, probes=8)),
}
SEED = 0
TEST_POINTS = 1200


def surrogate_error(pde, surrogate, seed: int = 1) -> tuple[float, str]:
    """Relative L2 error on TEST_POINTS points drawn with ``seed`` (reference MC for HJB-type equations)."""
    t, x = pde.sample_domain(jax.random.key(seed), TEST_POINTS)
    if pde.has_exact:
        exact, kind = jax.vmap(pde.exact)(t, x), "exact"
    else:
        exact, _ = pde.reference(t, x, jax.random.key(seed + 1), samples=10_000)
        kind = "cole-hopf reference, 1e4 samples"
    u = jax.vmap(surrogate)(t, x)
    return float(jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact)), kind


def train_one(name: str) -> None:
    equation, dim, config = RECIPES[name]
    config = dict(config)
    probes = config.pop("probes", None)
    config.setdefault("log_every", 100)
    trace = scasml.HutchinsonTrace(probes) if probes else scasml.ExactTrace()
    pde = scasml.equations.get(equation, dim=dim)
    pinn = scasml.PINN(dim, pde.horizon, jax.random.key(SEED))
    start = time.perf_counter()
    pinn, log = scasml.train(pinn, pde, jax.random.key(SEED + 1), trace=trace, **config)
    seconds = time.perf_counter() - start
    save(name, pde, pinn, log.summary(), config, trace, seconds)


def save(name, pde, pinn, summary, config, trace, seconds) -> None:
    error, kind = surrogate_error(pde, pinn)
    training = {
        **summary, **config, "trace": repr(trace), "seed": SEED, "init_key": SEED, "train_key": SEED + 1,
        "test_points": TEST_POINTS, "test_seed": 1, "relative_l2": error, "reference": kind,
        "machine": "2-core CPU", "seconds": round(seconds, 1), "script": "experiments/train_pretrained.py",
    }
    scasml.save_surrogate(PRETRAINED_DIR / f"{name}.scasml", pinn, pde, training)
    print(f"{name}: relative L2 {error:.3e} ({kind}), {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(RECIPES):
        train_one(name)
