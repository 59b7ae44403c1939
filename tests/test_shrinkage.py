"""SURE garrote shrinkage of defect estimates (scasml.shrink): the risk estimate, its minimiser, the API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml import equations
from scasml._shrinkage import garrote, shrink_defect, sure_risk


def _mixture(rng, n):
    """Half the points unresolved (θ = 0), half resolved (|θ| ≈ 4 s); heteroscedastic s."""
    s = rng.uniform(0.5, 2.0, n)
    theta = np.where(np.arange(n) % 2 == 0, 0.0, 4.0 * s * rng.choice([-1.0, 1.0], n))
    return theta, s


def test_sure_is_an_unbiased_estimate_of_the_summed_squared_error():
    """E[SURE(c)] = E[Σ(δ − θ)²] for Gaussian v ~ N(θ, s²): mean difference within 4 standard errors (CLT)."""
    rng = np.random.default_rng(0)
    theta, s = _mixture(rng, 200)
    for c in (0.5, 1.0, 2.0):
        diffs = []
        for _ in range(4000):
            v = theta + s * rng.standard_normal(theta.shape)
            diffs.append(sure_risk(v, s, c) - np.sum((garrote(v, s, c) - theta) ** 2))
        diffs = np.asarray(diffs)
        assert abs(diffs.mean()) <= 4 * diffs.std(ddof=1) / np.sqrt(diffs.size), (c, diffs.mean(), diffs.std())


def test_sure_threshold_is_the_exact_minimiser():
    rng = np.random.default_rng(1)
    grid = np.linspace(0, 6, 3001)
    for _ in range(5):
        theta, s = _mixture(rng, 300)
        v = theta + s * rng.standard_normal(300)
        c = scasml.sure_threshold(v, s)
        assert sure_risk(v, s, c) <= min(sure_risk(v, s, g) for g in grid) + 1e-9
    # every correction 10 standard errors out: dropping one costs 99 s² > s², so nothing is shrunk
    s = rng.uniform(0.5, 2.0, 100)
    assert scasml.sure_threshold(10 * s * rng.choice([-1.0, 1.0], 100), s) == 0.0
    # points with stderr 0 or non-finite values are left out; none left → 0
    assert scasml.sure_threshold(np.array([1.0, np.nan]), np.array([0.0, 1.0])) == 0.0


def test_garrote_values():
    v, s = np.array([3.0, -3.0, 0.5, 0.0, 2.0, np.nan]), np.array([1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    out = garrote(v, s, 1.0)
    np.testing.assert_allclose(out[:5], [3 - 1 / 3, -3 + 1 / 3, 0.0, 0.0, 2.0])
    assert np.isnan(out[5])
    np.testing.assert_array_equal(garrote(v[:5], s[:5], 0.0), v[:5])
    # a shrunk value moves at most c standard errors
    rng = np.random.default_rng(2)
    v, s = rng.normal(0, 3, 1000), rng.uniform(0.1, 2, 1000)
    assert np.all(np.abs(garrote(v, s, 1.5) - v) <= 1.5 * s + 1e-12)


def test_pure_noise_is_mostly_removed():
    """θ = 0 everywhere: the garrote at c = 1 already has risk 0.335·Σs² (≈ 0.58 in L2); SURE's c does as well
    up to O(N^-1/2), so the shrunk L2 error is below 0.6 of the unshrunk one."""
    rng = np.random.default_rng(3)
    s = rng.uniform(0.5, 2.0, 2000)
    v = s * rng.standard_normal(2000)
    shrunk, c = shrink_defect(v, s)
    assert c > 1.0
    assert np.linalg.norm(shrunk) < 0.6 * np.linalg.norm(v)


def _vb20_prediction(amplitude, trace):
    pde = equations.get("vb", dim=20)
    t, x = pde.sample_domain(jax.random.key(0), 1200)
    sur = lambda t, x: pde.exact(t, x) + amplitude * jnp.sin(jnp.sum(x) + t)
    est = scasml.MultilevelPicard(2, 4)
    return scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(1), trace=trace), jax.vmap(pde.exact)(t, x)


def test_shrink_removes_unresolved_corrections_and_keeps_resolved_ones():
    rel = lambda u, exact: float(jnp.linalg.norm(u - exact) / jnp.linalg.norm(exact))
    # a one-probe Hutchinson residual adds noise far above a 1e-3 defect: SCaSML alone is worse than û
    noisy, exact = _vb20_prediction(1e-3, scasml.HutchinsonTrace(1))
    shrunk = scasml.shrink(noisy)
    assert rel(noisy.u, exact) > rel(noisy.surrogate, exact)
    assert rel(shrunk.u, exact) < 0.6 * rel(noisy.u, exact)  # as in test_pure_noise_is_mostly_removed
    # the exact residual resolves a 0.01 defect (|v|/s ≈ 5): SURE barely shrinks
    resolved, exact = _vb20_prediction(1e-2, scasml.ExactTrace())
    kept = scasml.shrink(resolved)
    assert kept.threshold < 0.5
    assert np.all(np.abs(np.asarray(kept.u) - np.asarray(resolved.u)) <= kept.threshold * np.asarray(resolved.stderr)
                  + 1e-6 * np.abs(np.asarray(resolved.u)))
    # the bookkeeping
    for before, after in ((noisy, shrunk), (resolved, kept)):
        np.testing.assert_array_equal(after.u, np.asarray(after.surrogate) + np.asarray(after.defect))
        for name in ("surrogate", "stderr", "lower", "upper", "defect_z", "finite"):
            np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
        assert after.u.dtype == before.u.dtype and after.evaluations == before.evaluations
    assert noisy.threshold is None and shrunk.threshold == scasml.sure_threshold(noisy.defect, noisy.stderr)


def test_shrink_options_and_bad_input():
    pde = equations.get("vb", dim=4)
    t, x = pde.sample_domain(jax.random.key(0), 20)
    sur = lambda t, x: pde.exact(t, x) + 0.01 * jnp.cos(jnp.sum(x))
    pred = scasml.calibrate(sur, pde, t, x, scasml.MultilevelPicard(1, 4), key=jax.random.key(1))
    np.testing.assert_array_equal(scasml.shrink(pred, 0.0).u, pred.u)  # c = 0 changes nothing, bit for bit
    assert scasml.shrink(pred, 1).threshold == 1.0
    one = scasml.calibrate(sur, pde, t[0], x[0], scasml.MultilevelPicard(1, 4), key=jax.random.key(1))
    assert scasml.shrink(one).u.shape == ()
    with pytest.raises(ValueError, match="already shrunk"):
        scasml.shrink(scasml.shrink(pred))
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="threshold must be"):
            scasml.shrink(pred, bad)
    with pytest.raises(TypeError, match="CalibratedPrediction"):
        scasml.shrink(scasml.solve(pde, t, x, scasml.MultilevelPicard(1, 4), key=jax.random.key(1)))
    with pytest.raises(ValueError, match="same shape"):
        scasml.sure_threshold(np.ones(3), np.ones(4))
    # a non-finite point passes through unchanged and does not enter the threshold
    flagged = type(pred)(pred.u, pred.surrogate, pred.defect.at[0].set(jnp.nan), pred.stderr, pred.defect_z,
                         pred.lower, pred.upper, pred.finite.at[0].set(False), pred.evaluations)
    out = scasml.shrink(flagged)
    assert np.isnan(out.defect[0]) and out.threshold == scasml.sure_threshold(pred.defect[1:], pred.stderr[1:])
