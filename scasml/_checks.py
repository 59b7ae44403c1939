"""Small argument checks shared by the public entry points."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def is_integer(value) -> bool:
    """A Python or NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_count(value) -> bool:
    """A positive Python int (not a bool): a module's static size (dim, paths, levels, probes), which stays a
    plain int so that it hashes and serialises as one."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def as_count(value):
    """A NumPy integer as the Python int of the same value (so that ``is_count`` accepts ``np.int64(2)``); anything
    else unchanged, for ``is_count`` to judge. Used as the converter of static sizes."""
    return int(value) if is_integer(value) else value


def is_real(value) -> bool:
    """A Python or NumPy real number (not a bool); may be inf or NaN."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_finite_real(value) -> bool:
    """A finite real number: Python, NumPy or a 0-d array, not a bool, a string or NaN/inf."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check_key(key):
    """One typed ``jax.random`` key; a legacy uint32 ``PRNGKey`` becomes the same threefry key, typed."""
    if key is None:
        raise ValueError("a PRNG key is required (e.g. key=jax.random.key(0)); scasml never draws hidden randomness")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key, impl="threefry2x32")
    raise TypeError(f"key must be a jax.random key (one, e.g. jax.random.key(0)), got dtype {key.dtype} and shape "
                    f"{key.shape}")


# Function evaluations per query point beyond which solve/calibrate (and config files) refuse an estimator unless
# told otherwise: 1e8 evaluations of even a small surrogate take minutes per point, and the unrolled program of
# such an estimator takes longer to trace than to forget (levels=30 never finishes tracing).
MAX_EVALUATIONS_PER_POINT = 10**8


def check_cost(estimator, pde, max_evaluations=None) -> dict[str, int]:
    """``estimator.evaluations(pde)``, refused (ValueError) when their sum exceeds ``max_evaluations`` (default
    ``MAX_EVALUATIONS_PER_POINT``). Pure Python arithmetic: nothing is traced."""
    if max_evaluations is None:
        limit = MAX_EVALUATIONS_PER_POINT
    elif is_real(max_evaluations) and max_evaluations > 0:  # inf: no limit
        limit = max_evaluations
    else:
        raise ValueError(f"max_evaluations must be a positive number (or math.inf), got {max_evaluations!r}")
    counts = estimator.evaluations(pde)
    cost = sum(counts.values())
    if cost > limit:
        detail = ", ".join(f"{v:.3g} {k}" for k, v in counts.items())
        lower = ("lower paths" if hasattr(estimator, "paths") else "lower levels or base" if
                 hasattr(estimator, "levels") else "choose a cheaper estimator")
        raise ValueError(
            f"{estimator!r} needs {cost:.3g} function evaluations per query point ({detail}), more than the limit "
            f"of {limit:.3g}; {lower} (the scasml command and config files keep this limit; from Python, "
            f"max_evaluations=math.inf or at least {cost} raises it)"
        )
    return counts
