"""Train the pretrained surrogates shipped in scasml/pretrained/ (each file records its config and seed).

    python experiments/train_pretrained.py              # all recipes
    python experiments/train_pretrained.py vb_20 lcd_10 # some
    python experiments/train_pretrained.py --from-run runs/t1/lqg-100d lqg_100 "an NVIDIA H100"  # ship a run's
    python experiments/train_pretrained.py --from-run runs/bsb-100d bsb_100                      # checkpoint

``--from-run`` ships the surrogate a `scasml run` trained (e.g. a Table-1 row on a GPU), with that run's
config.toml in the header; its error is measured here (the recorded number that tests reproduce).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax

import scasml
from scasml._pretrained import PRETRAINED_DIR, recorded_error

# name -> (equation, dim, training config); the PINN is 5 × 50 tanh (paper architecture) unless stated.
RECIPES = {
    "vb_10": ("vb", 10, dict(steps=600, collocation=256, terminal_points=256, learning_rate=1e-3)),
    "vb_20": ("vb", 20, dict(steps=2000, collocation=500, terminal_points=500, learning_rate=1e-3, log_every=250)),
    "lcd_10": ("lcd", 10, dict(steps=1000, collocation=500, terminal_points=500, learning_rate=1e-3)),
}
SEED = 0
TEST_POINTS = 1200


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
    error, kind = recorded_error(pinn, pde, TEST_POINTS)
    training = {
        **summary, **config, "trace": repr(trace), "seed": SEED, "init_key": SEED, "train_key": SEED + 1,
        "test_points": TEST_POINTS, "test_seed": 1, "relative_l2": error, "reference": kind,
        "machine": "2-core CPU", "seconds": round(seconds, 1), "script": "experiments/train_pretrained.py",
    }
    scasml.save_surrogate(PRETRAINED_DIR / f"{name}.scasml", pinn, pde, training)
    print(f"{name}: relative L2 {error:.3e} ({kind}), {seconds:.0f} s", flush=True)


def from_run(run_dir: str, name: str, machine: str = "the 2-core CPU") -> None:
    """Ship ``run_dir/checkpoint.scasml`` (trained by `scasml run`) as ``name``, recording the run's config."""
    run = Path(run_dir)
    header = scasml.surrogates.read_header(run / "checkpoint.scasml")
    params = dict(header["pde"])
    equation, dim = params.pop("name"), params.pop("dim")
    pde = scasml.equations.get(equation, dim=dim, **params)
    surrogate = scasml.load_surrogate(run / "checkpoint.scasml", pde)
    start = time.perf_counter()
    error, kind = recorded_error(surrogate, pde, TEST_POINTS)
    training = {
        **header["training"], "test_points": TEST_POINTS, "test_seed": 1, "relative_l2": error, "reference": kind,
        "error_seconds": round(time.perf_counter() - start, 1),
        "machine": f"trained on {machine}; error measured on the 2-core CPU",
        "script": "scasml run (see config), then experiments/train_pretrained.py --from-run",
        "config": (run / "config.toml").read_text(),
    }
    scasml.save_surrogate(PRETRAINED_DIR / f"{name}.scasml", surrogate, pde, training)
    print(f"{name}: relative L2 {error:.3e} ({kind}); {json.dumps({k: training[k] for k in ('steps', 'seed')})}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--from-run"]:
        from_run(*sys.argv[2:5])
    else:
        for name in sys.argv[1:] or list(RECIPES):
            train_one(name)
