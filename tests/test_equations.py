import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml import equations

EXACT = ["heat", "lcd", "vb", "dr"]


def test_listing_and_errors():
    assert set(equations.available()) == {"heat", "lcd", "vb", "lqg", "hjb", "dr"}
    with pytest.raises(ValueError, match="unknown equation 'nope'"):
        equations.get("nope", dim=3)
    pde = equations.get("lqg", dim=7, seed=3)
    assert equations.from_parameters(pde.parameters()).parameters() == pde.parameters()


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("dim", [10, 100])
def test_exact_solution_has_zero_residual(name, dim, x64):
    pde = equations.get(name, dim=dim)
    assert pde.dtype == jnp.float64
    t, x = pde.sample_domain(jax.random.key(0), 1000)
    res = jax.vmap(lambda ti, xi: scasml.residual(pde, pde.exact, ti, xi))(t, x)
    assert float(jnp.max(jnp.abs(res))) <= 1e-8
    mismatch = jax.vmap(lambda xi: pde.exact(pde.horizon, xi) - pde.terminal(xi))(x)
    assert float(jnp.max(jnp.abs(mismatch))) <= 1e-12


def test_nonzero_residual_is_detected(x64):
    """Guard against a residual that is identically zero: perturbing the solution must show up."""
    pde = equations.get("vb", dim=10)
    t, x = pde.sample_domain(jax.random.key(0), 100)
    wrong = lambda t, x: pde.exact(t, x) + 0.01 * jnp.sin(jnp.sum(x))
    res = jax.vmap(lambda ti, xi: scasml.residual(pde, wrong, ti, xi))(t, x)
    assert float(jnp.max(jnp.abs(res))) > 1e-3


def test_hjb_log_reference_value(x64):
    """Han–Jentzen–E (2018): u(0, 0) ≈ 4.5901 for d = 100."""
    pde = equations.get("hjb", dim=100)
    value, stderr = pde.reference(jnp.zeros(1), jnp.zeros((1, 100)), jax.random.key(0), samples=200_000)
    assert float(stderr[0]) < 0.0005
    assert abs(float(value[0]) - 4.590) <= 0.002


def test_cole_hopf_reference_solves_the_pde_in_low_dimension(x64):
    """In d = 1 the Cole–Hopf Monte Carlo agrees with a fine Gauss–Hermite quadrature."""
    pde = equations.get("lqg", dim=2, seed=1)
    t = jnp.array([0.0, 0.5])
    x = jnp.array([[0.3, -0.2], [0.1, 0.4]])
    value, stderr = pde.reference(t, x, jax.random.key(5), samples=100_000)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    expected = []
    for ti, xi in zip(np.asarray(t), np.asarray(x), strict=True):
        s = np.sqrt(2 * (1 - ti))
        g = np.array([[float(pde.terminal(jnp.asarray(xi + s * np.array([a, b])))) for b in nodes] for a in nodes])
        w = np.outer(weights, weights) / (2 * np.pi)
        expected.append(-np.log(np.sum(w * np.exp(-g))))
    assert np.all(np.abs(np.asarray(value) - expected) <= 4 * np.asarray(stderr))


def test_lqg_coefficients_are_fixed_per_instance():
    a = equations.get("lqg", dim=20, seed=0)
    b = equations.get("lqg", dim=20, seed=0)
    c = equations.get("lqg", dim=20, seed=1)
    assert a.coefficients.shape == (2, 19)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    assert not np.allclose(a.coefficients, c.coefficients)
    assert float(a.coefficients.min()) >= 0.5 and float(a.coefficients.max()) <= 1.5
    x = jax.random.normal(jax.random.key(0), (8, 20))
    # g does not depend on a point's position in the batch
    g_batch = jax.vmap(a.terminal)(x)
    np.testing.assert_allclose(g_batch[3], a.terminal(x[3]), rtol=1e-6)


def test_reference_independent_of_batching():
    pde = equations.get("lqg", dim=10)
    t, x = pde.sample_domain(jax.random.key(0), 10)
    full, _ = pde.reference(t, x, jax.random.key(1), samples=2000)
    part, _ = pde.reference(t[3:5], x[3:5], jax.random.key(1), samples=2000, chunk_points=1)
    # point i uses fold_in(key, i): only the first two coincide with indices 0, 1 of the subset call
    fresh, _ = pde.reference(t, x, jax.random.key(1), samples=2000, chunk_points=3)
    np.testing.assert_array_equal(full, fresh)
    assert part.shape == (2,)
