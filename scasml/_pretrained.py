"""Pretrained surrogates shipped with the package (trained by experiments/train_pretrained.py)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from . import equations
from ._calibrate import full_float32_matmuls
from .surrogates import load, read_header

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def available_pretrained() -> tuple[str, ...]:
    """Names such as ``"vb_20"`` (equation_dimension)."""
    return tuple(sorted(p.stem for p in PRETRAINED_DIR.glob("*.scasml")))


def pretrained(name: str, dim: int):
    """Load a shipped surrogate and its equation: ``surrogate, pde = scasml.pretrained("vb", dim=20)``.

    The checkpoint header (``scasml.surrogates.read_header``) records the training config, seed and the
    surrogate's measured test error.
    """
    path = PRETRAINED_DIR / f"{name.lower()}_{dim}.scasml"
    if not path.exists():
        available = ", ".join(available_pretrained())
        raise ValueError(f"no pretrained surrogate {name!r} for dim={dim}; available: {available}")
    params = dict(read_header(path)["pde"])
    params.pop("name"), params.pop("dim")
    pde = equations.get(name, dim=dim, **params)
    return load(path, pde), pde


def recorded_error(surrogate, pde, test_points: int = 1200, test_seed: int = 1, samples: int = 10_000):
    """Relative L2 error of ``surrogate`` on ``test_points`` points ``pde.sample_domain(key(test_seed), ·)``,
    against the exact solution or, without one, the Monte Carlo reference (``samples`` per point, key
    ``test_seed + 1``); for an equation with only a recorded reference value (pricing), the relative error
    there. This is the number a shipped checkpoint records (header ``training.relative_l2``);
    on the machine that recorded it, it is reproduced bit for bit. Returns (error, reference description)."""
    recorded = pde.recorded_reference()
    if not pde.has_exact and recorded is not None:  # no closed form: the error at the recorded reference point
        with full_float32_matmuls():
            u = surrogate(jnp.asarray(recorded.t, pde.dtype), jnp.asarray(recorded.x, pde.dtype))
        error = float(jnp.abs(u - recorded.value) / abs(recorded.value))
        return error, f"recorded reference u(0, x₀) = {recorded.value}"
    t, x = pde.sample_domain(jax.random.key(test_seed), test_points)
    if pde.has_exact:
        exact, kind = jax.vmap(pde.exact)(t, x), "exact"
    else:
        exact, _ = pde.reference(t, x, jax.random.key(test_seed + 1), samples=samples)
        kind = f"Monte Carlo reference, {samples} samples"
    with full_float32_matmuls():  # no TF32 products on GPUs, as in ``calibrate``
        u = jax.vmap(surrogate)(t, x)
    return float(jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact)), kind
