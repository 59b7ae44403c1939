import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test in float64."""
    with jax.enable_x64(True):
        yield


def assert_within_stderr(estimate, exact, stderr, k=4.0, fraction=0.97):
    """At least ``fraction`` of |estimate − exact| ≤ k·stderr (CLT: 4σ fails with prob. 6e-5 per point)."""
    estimate, exact, stderr = (np.asarray(a, np.float64) for a in (estimate, exact, stderr))
    inside = np.abs(estimate - exact) <= k * stderr
    assert inside.mean() >= fraction, f"only {inside.mean():.3f} of points within {k} stderr (need {fraction})"
