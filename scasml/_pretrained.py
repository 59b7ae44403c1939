"""Pretrained surrogates shipped with the package (trained by experiments/train_pretrained.py)."""

from __future__ import annotations

from pathlib import Path

from . import equations
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
