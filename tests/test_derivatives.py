import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml


@pytest.fixture(autouse=True)
def _full_precision_products():
    """Compare derivative methods in full float32 (GPUs default to TF32 products, ~1e-3 relative error)."""
    with jax.default_matmul_precision("highest"):
        yield


def _random_mlp(d, key):
    mlp = eqx.nn.MLP(d + 1, "scalar", 32, 3, jnp.tanh, key=key)
    return lambda t, x: mlp(jnp.concatenate([x, t[None]]))


def test_exact_laplacian_matches_hessian():
    d = 6
    fn = _random_mlp(d, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (d,))
    t = jnp.asarray(0.2)
    hess = jax.hessian(fn, argnums=1)(t, x)
    np.testing.assert_allclose(scasml.laplacian(fn, t, x), jnp.trace(hess), rtol=1e-4, atol=1e-6)


def test_hutchinson_is_unbiased_for_exact_laplacian():
    """Hutchinson mean over many independent probes lies within 4 standard errors of the exact trace."""
    d = 20
    fn = _random_mlp(d, jax.random.key(2))
    x = 0.5 * jax.random.normal(jax.random.key(3), (d,))
    t = jnp.asarray(0.1)
    exact = float(scasml.laplacian(fn, t, x))
    keys = jax.random.split(jax.random.key(4), 4000)
    samples = jax.vmap(lambda k: scasml.laplacian(fn, t, x, scasml.HutchinsonTrace(1), k))(keys)
    samples = np.asarray(samples, np.float64)
    mean, se = samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)
    assert se > 0
    assert abs(mean - exact) <= 4 * se, (mean, exact, se)
    # and the estimator is not exact by accident (it has variance)
    assert samples.std() > 1e-3 * abs(exact)


def test_residual_components(x64):
    pde = scasml.equations.get("vb", dim=3)
    fn = lambda t, x: t**2 + jnp.sum(x**2) * t
    t, x = jnp.asarray(0.3), jnp.array([0.1, -0.2, 0.4])
    value, grad = scasml.value_and_gradient(fn, t, x)
    expected = (
        2 * t + jnp.sum(x**2)
        + pde.dynamics.drift(t, x) @ (2 * x * t)
        + 0.5 * 0.25**2 * (2 * t * 3)
        + pde.nonlinearity(t, x, value, 0.25 * grad)
    )
    np.testing.assert_allclose(scasml.residual(pde, fn, t, x), expected, rtol=1e-12)
    np.testing.assert_allclose(scasml.time_derivative(fn, t, x), 2 * t + jnp.sum(x**2), rtol=1e-12)


def test_pinn_forward_laplacian_matches_nested_jvps():
    pde = scasml.equations.get("vb", dim=7)
    for terminal in (None, pde.terminal):
        pinn = scasml.PINN(7, 0.5, jax.random.key(0), width=20, depth=3, terminal=terminal)
        x, t = jax.random.normal(jax.random.key(1), (7,)), jnp.asarray(0.2)
        rows = jax.random.normal(jax.random.key(2), (5, 7))
        generic = scasml.FunctionSurrogate(lambda t, x, pinn=pinn: pinn(t, x))  # no fast path
        np.testing.assert_allclose(
            scasml._derivatives.quadratic_form_sum(pinn, t, x, rows),
            scasml._derivatives.quadratic_form_sum(generic, t, x, rows), rtol=1e-5)
        np.testing.assert_allclose(scasml.residual(pde, pinn, t, x), scasml.residual(pde, generic, t, x),
                                   rtol=1e-5, atol=1e-6)


def test_pinn_exact_trace_with_more_directions_than_units_matches_nested_jvps():
    """k = d > width: the sweep replaces the k directions by the width rows of a QR factor (same Gram)."""
    d, width = 20, 8
    x, t = 0.5 * jax.random.normal(jax.random.key(1), (d,)), jnp.asarray(0.2)
    sigmas = {
        "scalar": jnp.asarray(0.7),
        "diagonal": jax.random.uniform(jax.random.key(3), (d,), minval=0.5, maxval=1.5),
        "full": jax.random.normal(jax.random.key(4), (d, d)) / jnp.sqrt(d),
    }
    terminal = lambda y: jnp.log1p(jnp.sum(y**2))
    for transform in (None, terminal):
        pinn = scasml.PINN(d, 0.5, jax.random.key(0), width=width, depth=3, terminal=transform)
        generic = scasml.FunctionSurrogate(lambda t, x, pinn=pinn: pinn(t, x))  # no fast path
        for label, sigma in sigmas.items():
            fast = scasml.ExactTrace()(pinn, t, x, sigma)
            slow = scasml.ExactTrace()(generic, t, x, sigma)
            np.testing.assert_allclose(fast, slow, rtol=2e-5, atol=1e-6, err_msg=label)
        rows = jax.random.normal(jax.random.key(2), (13, d))  # the generic-directions entry point, k = 13 > 8
        np.testing.assert_allclose(
            scasml._derivatives.quadratic_form_sum(pinn, t, x, rows),
            scasml._derivatives.quadratic_form_sum(generic, t, x, rows), rtol=2e-5, atol=1e-6)


def test_pinn_compressed_sweep_has_the_right_parameter_gradient():
    """Training differentiates the Laplacian through the QR factor: compare with nested JVPs."""
    d = 12
    pinn = scasml.PINN(d, 0.5, jax.random.key(0), width=6, depth=2)
    x, t, sigma = 0.3 * jax.random.normal(jax.random.key(1), (d,)), jnp.asarray(0.1), jnp.asarray(0.9)

    def trace_of(model, generic):
        fn = scasml.FunctionSurrogate(lambda t, x: model(t, x)) if generic else model
        return scasml.ExactTrace()(fn, t, x, sigma)

    fast = eqx.filter_grad(lambda m: trace_of(m, False))(pinn)
    slow = eqx.filter_grad(lambda m: trace_of(m, True))(pinn)
    for a, b in zip(jax.tree.leaves(eqx.filter(fast, eqx.is_array)), jax.tree.leaves(eqx.filter(slow, eqx.is_array)),
                    strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_pinn_hutchinson_with_more_dimensions_than_units_is_unbiased():
    """d > width: the PINN draws its Rademacher probes in the width-dim space of the first layer's Gram factor."""
    d, width = 20, 8
    pinn = scasml.PINN(d, 0.5, jax.random.key(0), width=width, depth=3)
    x, t = 0.5 * jax.random.normal(jax.random.key(1), (d,)), jnp.asarray(0.1)
    sigma = jax.random.uniform(jax.random.key(3), (d,), minval=0.5, maxval=1.5)
    exact = float(scasml.ExactTrace()(scasml.FunctionSurrogate(lambda t, x: pinn(t, x)), t, x, sigma))
    keys = jax.random.split(jax.random.key(4), 4000)
    samples = np.asarray(jax.jit(jax.vmap(lambda k: scasml.HutchinsonTrace(2)(pinn, t, x, sigma, k)))(keys),
                         np.float64)
    mean, se = samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)
    assert samples.std() > 1e-3 * abs(exact)  # random, not exact by accident
    assert abs(mean - exact) <= 4 * se, (mean, exact, se)


def test_pinn_single_sweep_residual_matches_autodiff(x64):
    """``scasml.residual`` of a PINN with d ≤ width comes from one forward sweep (value, transport term ∂_t û + μ·∇û,
    σᵀ∇û, trace): it equals the autodiff residual for scalar, diagonal and full σ and a gradient-dependent f."""
    d = 7
    x = 0.4 * jax.random.normal(jax.random.key(20), (d,))
    t = jnp.asarray(0.3)
    pinn = scasml.PINN(d, 1.0, jax.random.key(21), width=12, depth=3)
    drift = jnp.linspace(-0.5, 0.8, d)
    sigmas = (0.7, jnp.linspace(0.5, 1.5, d), 0.3 * jax.random.normal(jax.random.key(22), (d, d)) + jnp.eye(d))
    for sigma in sigmas:
        pde = scasml.SemilinearPDE(dim=d, horizon=1.0, drift=drift, diffusion=sigma,
                                   nonlinearity=lambda t, x, u, z: jnp.sin(u) - 0.5 * z @ z + z[0] * x[1],
                                   terminal=lambda x: jnp.sum(x))
        value, transport, z, second = pinn.residual_terms(t, x, pde.dynamics.drift(t, x), pde.dynamics.diffusion(t, x))
        autodiff = scasml._derivatives.residual_parts(pde, pinn, t, x)
        np.testing.assert_allclose(z, pde.dynamics.sigma_transpose(t, x, autodiff.gradient), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(scasml.residual(pde, pinn, t, x), autodiff.residual, rtol=1e-12, atol=1e-14)
        dt = jax.grad(pinn, argnums=0)(t, x)
        np.testing.assert_allclose(transport, dt + drift @ autodiff.gradient, rtol=1e-12, atol=1e-14)
    wide = scasml.PINN(d, 1.0, jax.random.key(23), width=5, depth=3)  # d > width: autodiff (None here)
    assert wide.residual_terms(t, x, drift, jnp.asarray(0.7)) is None


def test_static_sizes_are_positive_python_integers():
    """Probe counts, estimator sizes and dimensions refuse bools (True is not 1 probe); NumPy integers given
    to an equation's constructor are stored as int."""
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match="positive integer"):
            scasml.HutchinsonTrace(bad)
        with pytest.raises(ValueError, match="levels must be a positive integer"):
            scasml.MultilevelPicard(levels=bad)
    pde = scasml.equations.get("vb", dim=np.int64(5))
    assert type(pde.dim) is int and pde.dim == 5
