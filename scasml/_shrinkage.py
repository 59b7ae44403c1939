"""Shrinking defect estimates toward the surrogate where the Monte Carlo noise swamps them.

SCaSML's defect estimate v ≈ θ = u − û is unbiased with standard error s. Where |θ| is small next to s (a point
the surrogate already gets right, or one where the noise is large) adding v makes the prediction worse on
average. The non-negative garrote (Breiman 1995; Gao 1998) with threshold c·s,

    δ(v) = v·(1 − c²s²/v²)  if |v| > c·s,  else 0,

keeps well-resolved corrections almost whole and drops those within c standard errors of zero. ``c`` is chosen
once per batch of points by minimising Stein's unbiased estimate of the summed squared error Σ(δ_i − θ_i)²
(SURE; Donoho & Johnstone 1995), which for each point reads

    s² + (c⁴ + 2c²)·s⁴/v²   if |v| > c·s (kept),      v² − s²   otherwise (dropped).

With c = 0 nothing changes, so where every correction is resolved SURE picks c ≈ 0. SURE assumes each v
Gaussian around θ with the reported s; the shrunk estimate is biased toward û, and its point error can exceed
the unshrunk one by up to ~1.5× at |θ| ≈ 2.5·s (the garrote's maximum risk); what it lowers is the error summed
over the batch when many corrections are unresolved.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from ._calibrate import CalibratedPrediction
from ._checks import is_real


def _usable_pair(defect, stderr) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 (v, s) of the points that enter SURE: finite v and s, and s > 0."""
    v, s = np.asarray(defect, np.float64), np.asarray(stderr, np.float64)
    if v.shape != s.shape:
        raise ValueError(f"defect and stderr must have the same shape, got {v.shape} and {s.shape}")
    v, s = v.reshape(-1), s.reshape(-1)
    use = np.isfinite(v) & np.isfinite(s) & (s > 0)
    return v[use], s[use]


def _ratio(v, s):
    """|v|/s (inf where s = 0 < |v|, NaN where both are 0): a point is dropped when its ratio ≤ c."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(v) / s


def sure_risk(defect, stderr, threshold: float) -> float:
    """Stein's unbiased estimate of Σ_i (δ_i − θ_i)² for the garrote at ``threshold`` = c (points with a
    non-finite value or stderr ≤ 0 left out)."""
    v, s = _usable_pair(defect, stderr)
    ratio = _ratio(v, s)
    kept = ratio > threshold
    c2 = threshold**2 / np.where(kept, ratio, 1.0) ** 2
    return float(np.sum(np.where(kept, s**2 * (1 + c2 * (threshold**2 + 2)), v**2 - s**2)))


def sure_threshold(defect, stderr) -> float:
    """The garrote threshold c ≥ 0 (in standard errors) that minimises SURE over the batch.

    ``defect``, ``stderr``: (N,) estimates and their standard errors; points with a non-finite value or
    ``stderr`` ≤ 0 are left out. Exact minimiser: between consecutive ratios |v_i|/s_i SURE grows with c, so the
    minimum is at c = 0 or at one of the ratios (that point then just dropped). Cost O(N log N).
    """
    v, s = _usable_pair(defect, stderr)
    if not v.size:
        return 0.0
    ratio = _ratio(v, s)
    order = np.argsort(ratio, kind="stable")
    v2, s2, ratio = v[order] ** 2, s[order] ** 2, ratio[order]
    a = np.where(v2 > 0, s2**2 / np.where(v2 > 0, v2, 1.0), 0.0)
    # candidate k = 0 … N: the k smallest ratios dropped, c = ratio_k (c = 0 for k = 0)
    c = np.concatenate([[0.0], ratio])
    dropped = np.concatenate([[0.0], np.cumsum(v2 - s2)])
    kept_s2 = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
    kept_a = np.concatenate([np.cumsum(a[::-1])[::-1], [0.0]])
    risk = dropped + kept_s2 + (c**4 + 2 * c**2) * kept_a
    return float(c[int(np.argmin(risk))])


def garrote(defect, stderr, threshold: float) -> np.ndarray:
    """δ = v·(1 − c²s²/v²) where |v|/s > c, else 0 (c = ``threshold``); non-finite entries pass through."""
    v, s = np.asarray(defect, np.float64), np.asarray(stderr, np.float64)
    ratio = _ratio(v, s)
    kept = ~(ratio <= threshold)  # NaN ratio (v = s = 0) and non-finite entries: kept, unchanged
    factor = np.where(kept, 1 - (threshold / np.where(kept & (ratio > 0), ratio, 1.0)) ** 2, 0.0)
    return np.where(np.isfinite(v) & np.isfinite(s), v * factor, v)


def shrink_defect(defect, stderr, finite=None, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """(garrote-shrunk ``defect``, c) for host arrays (N,); ``threshold`` None: c by SURE over the ``finite``
    points (default: all). Entries not ``finite`` are returned unchanged; the dtype of ``defect`` is kept."""
    defect, stderr = np.asarray(defect), np.asarray(stderr)
    finite = np.ones(defect.shape, bool) if finite is None else np.asarray(finite, bool)
    if threshold is None:
        threshold = sure_threshold(defect[finite], stderr[finite])
    elif not (is_real(threshold) and 0 <= threshold < math.inf):
        raise ValueError(f"threshold must be None (SURE) or a finite number ≥ 0, got {threshold!r}")
    shrunk = np.where(finite, garrote(defect, stderr, float(threshold)), defect).astype(defect.dtype)
    return shrunk, float(threshold)


def shrunk_prediction(surrogate, defect, stderr, finite=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(û + δ, δ, c) for host arrays (N,): ``shrink_defect`` with c by SURE, and the prediction it gives."""
    shrunk, threshold = shrink_defect(defect, stderr, finite)
    return (np.asarray(surrogate) + shrunk).astype(shrunk.dtype), shrunk, threshold


def shrink(prediction: CalibratedPrediction, threshold: float | None = None) -> CalibratedPrediction:
    """``prediction`` with its defect estimates garrote-shrunk toward the surrogate: u = û + δ(defect).

    ``threshold``: c in standard errors (e.g. 1.0); None (default) picks it by SURE over all finite points of
    ``prediction`` (so one point's result depends on the whole batch: call it on the full set of query points,
    ideally hundreds). ``stderr``, ``lower``/``upper`` (the Monte Carlo interval of the unshrunk estimate),
    ``surrogate`` and ``defect_z`` are unchanged; ``threshold`` records c. With c = 0 nothing changes.
    """
    if not isinstance(prediction, CalibratedPrediction):
        raise TypeError(f"shrink takes the CalibratedPrediction returned by calibrate, got {type(prediction).__name__}")
    if prediction.threshold is not None:
        raise ValueError(f"this prediction is already shrunk (threshold {prediction.threshold:g})")
    shrunk, threshold = shrink_defect(prediction.defect, prediction.stderr, prediction.finite, threshold)
    u = (np.asarray(prediction.surrogate) + shrunk).astype(shrunk.dtype)
    return dataclasses.replace(prediction, u=jnp.asarray(u), defect=jnp.asarray(shrunk), threshold=threshold)
