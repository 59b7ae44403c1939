"""Random bits to numbers: uniforms on (0, 1), normals, and randomised quasi-Monte Carlo normals (one Sobol' net
under independent random digital shifts)."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

MAX_SOBOL_DIMENSIONS = 21201  # scipy.stats.qmc.Sobol's direction numbers


@functools.lru_cache(maxsize=32)
def sobol_net(points: int, dims: int) -> np.ndarray:
    """The first ``points`` points of the unscrambled Sobol' sequence in ``dims`` dimensions as 32-bit integers
    (coordinate × 2³²), shape (points, dims); made once on the host (``scipy.stats.qmc``)."""
    from scipy.stats import qmc

    if dims > MAX_SOBOL_DIMENSIONS:
        raise ValueError(f"quasi-Monte Carlo paths need a Sobol' net in {dims} dimensions (noise rows × d); "
                         f"the Sobol' generator has direction numbers for at most {MAX_SOBOL_DIMENSIONS}")
    with warnings.catch_warnings():  # nets of any size are valid (unbiased) after the shift; 2^k balance best
        warnings.simplefilter("ignore", UserWarning)
        net = qmc.Sobol(dims, scramble=False).random(points)
    return np.floor(net * 2.0**32).astype(np.uint32)


def shift_word_count(sets: int, points: int, dims: int, dtype) -> int:
    """uint32 words ``shifted_sobol_normals`` takes: a shift per set and dimension (float32), and for float64 a
    low word per point as well."""
    return sets * dims if jnp.dtype(dtype).itemsize == 4 else sets * dims + sets * points * dims


def shifted_sobol_normals(words, sets: int, points: int, dims: int, dtype):
    """``sets`` independent random digital shifts (XOR with uniform bits ``words``, ``shift_word_count`` of them)
    of a ``points``-point Sobol' net in ``dims`` dimensions, mapped to N(0, 1) by the inverse normal CDF: shape
    (sets · points, dims), set-major. Every row is exactly N(0, I) in distribution (a digitally shifted point is
    uniform), the sets are independent, and within a set the points keep the net's balance (low-discrepancy)."""
    return normal_quantile(shifted_sobol_uniforms(words, sets, points, dims, dtype))


def normal_quantile(unit):
    """Φ⁻¹(U) = √2·erfinv(2U − 1): N(0, 1) from uniforms on (0, 1) (finite there)."""
    return jnp.sqrt(jnp.asarray(2, unit.dtype)) * jax.scipy.special.erfinv(2 * unit - 1)


def shifted_sobol_uniforms(words, sets: int, points: int, dims: int, dtype):
    """As ``shifted_sobol_normals``, uniform on (0, 1) (the grid midpoints of ``open_unit_interval``)."""
    net = jnp.asarray(sobol_net(points, dims))
    high = net[None] ^ words[: sets * dims].reshape(sets, 1, dims)  # (sets, points, dims)
    if jnp.dtype(dtype).itemsize == 4:
        flat = high.reshape(-1)
    else:  # float64: the shifted net gives the high word, the low word is uniform (a shift of trailing zeros)
        low = words[sets * dims :].reshape(high.shape)
        flat = jnp.stack([high, low], axis=-1).reshape(-1)
    return open_unit_interval(flat, dtype).reshape(sets * points, dims)


def open_unit_interval(words, dtype):
    """Uniform floats in (0, 1) on the midpoints of a grid of 2^-mantissa: symmetric about ½, never 0 or 1
    (so that √2·erfinv(2U − 1) is finite). ``words``: uint32, one per float32 or two per float64."""
    if jnp.dtype(dtype) == jnp.float32:  # [1, 2) from 23 random mantissa bits, then shifted by 1 − 2^-24
        mantissa, step = (words >> 9) | np.uint32(0x3F800000), 2.0**-24
        floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32)
    elif jnp.dtype(dtype) == jnp.float64:  # 52 mantissa bits from two words
        pairs = words.reshape(-1, 2).astype(jnp.uint64)
        bits = (pairs[:, 0] << np.uint64(32)) | pairs[:, 1]
        mantissa, step = (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000), 2.0**-53
        floats = jax.lax.bitcast_convert_type(mantissa, jnp.float64)
    else:
        raise TypeError(f"the estimators draw float32 or float64 noise, not {jnp.dtype(dtype)}")
    return floats - jnp.asarray(1 - step, floats.dtype)  # exact: (2k + 1)·step
