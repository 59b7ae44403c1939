"""The benchmark equation library (the paper's Table-1 equations, pricing and control problems) and the heat/HJB
sanity anchors.

    scasml.equations.get("vb", dim=20)   ->  ViscousBurgers(dim=20)
    scasml.equations.available()         ->  ("bsb", "bsdr", "bsir", "dr", "heat", "hjb", "lcd", "lqg", "lqou", "vb")
"""

from __future__ import annotations

from .._checks import is_integer
from .._pde import AbstractSemilinearPDE
from .bsb import BlackScholesBarenblatt as BlackScholesBarenblatt
from .dr import DiffusionReaction as DiffusionReaction
from .heat import Heat as Heat
from .hjb import AbstractHJB as AbstractHJB
from .hjb import HJBLog as HJBLog
from .hjb import LinearQuadraticGaussian as LinearQuadraticGaussian
from .hjb import cole_hopf_reference as cole_hopf_reference
from .lcd import LinearConvectionDiffusion as LinearConvectionDiffusion
from .lq import LinearQuadraticOU as LinearQuadraticOU
from .pricing import BlackScholesDefaultRisk as BlackScholesDefaultRisk
from .pricing import DifferentInterestRates as DifferentInterestRates
from .vb import ViscousBurgers as ViscousBurgers

_REGISTRY = {
    "heat": Heat,
    "lcd": LinearConvectionDiffusion,
    "vb": ViscousBurgers,
    "lqg": LinearQuadraticGaussian,
    "hjb": HJBLog,
    "dr": DiffusionReaction,
    "bsb": BlackScholesBarenblatt,
    "lqou": LinearQuadraticOU,
    "bsdr": BlackScholesDefaultRisk,
    "bsir": DifferentInterestRates,
}


def available() -> tuple[str, ...]:
    """Names accepted by ``get``."""
    return tuple(sorted(_REGISTRY))


def get(name: str, dim: int, **parameters) -> AbstractSemilinearPDE:
    """Build a library equation by name, e.g. ``get("lqg", dim=100, seed=0)``."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown equation {name!r}; available: {', '.join(available())}")
    if not is_integer(dim) or dim < 1:
        raise ValueError(f"equation {name!r}: dim must be a positive integer, got {dim!r}")
    dim = int(dim)
    try:
        return _REGISTRY[key](dim, **parameters)
    except TypeError as err:
        raise TypeError(f"equation {name!r}: {err}") from err


def from_parameters(parameters: dict) -> AbstractSemilinearPDE:
    """Inverse of ``pde.parameters()`` for library equations."""
    params = dict(parameters)
    name = params.pop("name")
    dim = params.pop("dim")
    return get(name, dim=dim, **params)
