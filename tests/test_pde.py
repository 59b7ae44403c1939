import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml import equations


def _pde(**kw):
    args = dict(dim=3, horizon=1.0, nonlinearity=lambda t, x, u, z: 0.0 * u, terminal=lambda x: x @ x)
    args.update(kw)
    return scasml.SemilinearPDE(**args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dim": 0}, "dim must be a positive integer"),
        ({"dim": 2.5}, "dim must be a positive integer"),
        ({"horizon": -1.0}, "horizon T must be a finite positive number"),
        ({"horizon": "1"}, "horizon T must be a number"),
        ({"drift": np.ones(4)}, r"drift μ must have shape \(3,\)"),
        ({"diffusion": np.ones((3, 2))}, "diffusion σ must be a scalar"),
        ({"terminal": 3.0}, "terminal must be callable"),
        ({"nonlinearity": None}, "nonlinearity must be callable"),
        ({"exact": "u"}, "exact must be callable"),
        ({"drift": np.inf}, "drift μ must be finite"),
        ({"diffusion": np.nan}, "diffusion σ must be finite"),
        ({"terminal": lambda x: x}, r"terminal must return one number .* returned shape \(3,\)"),
        ({"terminal": lambda x: jnp.sum(x)[None]}, r"terminal must return one number .* returned shape \(1,\)"),
        ({"terminal": lambda x: 1}, "terminal must return a real floating-point number"),
        ({"terminal": lambda x: float(np.sum(x))}, "terminal cannot be evaluated .* write it with jax.numpy"),
        ({"nonlinearity": lambda t, x, u, z: z}, r"nonlinearity must return one number .* shape \(3,\)"),
        ({"nonlinearity": lambda t, x, u: u}, r"nonlinearity cannot be evaluated as f\(t, x, u, z\)"),
        ({"exact": lambda x: x @ x}, r"exact cannot be evaluated as u\(t, x\)"),
    ],
)
def test_semilinear_pde_validation(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _pde(**kwargs)


def test_user_pde_in_a_few_lines_matches_library_equation():
    vb = equations.get("vb", dim=4)
    mine = scasml.SemilinearPDE(
        dim=4, horizon=0.5, drift=-(1 / 4 + 0.25**2 / 2), diffusion=0.25,
        nonlinearity=lambda t, x, u, z: 0.25 * u * jnp.sum(z),
        terminal=lambda x: jax.nn.sigmoid(0.5 + jnp.sum(x)),
        exact=lambda t, x: jax.nn.sigmoid(t + jnp.sum(x)),
        domain=scasml.Box(-0.5, 0.5),
    )
    t, x = vb.sample_domain(jax.random.key(0), 50)
    r1 = jax.vmap(lambda ti, xi: scasml.residual(mine, mine.exact, ti, xi))(t, x)
    r2 = jax.vmap(lambda ti, xi: scasml.residual(vb, mine.exact, ti, xi))(t, x)
    np.testing.assert_allclose(r1, r2, atol=1e-6)
    assert mine.has_exact and not mine.is_linear


def test_diffusion_forms_agree(x64):
    """Scalar, diagonal and full σ describing the same diffusion give the same trace and z."""
    d = 5
    forms = [jnp.asarray(0.7), jnp.full((d,), 0.7), 0.7 * jnp.eye(d)]
    fn = lambda t, x: jnp.sin(x @ jnp.arange(1.0, d + 1)) * (1 + t) + jnp.sum(x**3)
    x = jax.random.normal(jax.random.key(1), (d,))
    grads, traces = [], []
    for sigma in forms:
        pde = _pde(dim=d, diffusion=sigma)
        traces.append(scasml.diffusion_trace(fn, 0.3, x, pde.dynamics.diffusion(0.3, x)))
        grads.append(pde.dynamics.sigma_transpose(0.3, x, jax.grad(fn, argnums=1)(0.3, x)))
    hess = jax.hessian(fn, argnums=1)(0.3, x)
    np.testing.assert_allclose(traces, 0.49 * jnp.trace(hess), rtol=1e-10)
    np.testing.assert_allclose(grads[0], grads[2], rtol=1e-12)
    np.testing.assert_allclose(grads[1], grads[2], rtol=1e-12)


def test_full_diffusion_trace_matches_hessian(x64):
    d = 4
    sigma = jax.random.normal(jax.random.key(2), (d, d))
    fn = lambda t, x: jnp.exp(0.3 * x @ x) + t * x[0] * x[1]
    x = jax.random.normal(jax.random.key(3), (d,))
    expected = jnp.trace(sigma @ sigma.T @ jax.hessian(fn, argnums=1)(0.0, x))
    np.testing.assert_allclose(scasml.diffusion_trace(fn, 0.0, x, sigma), expected, rtol=1e-10)


def test_domains_sample_inside():
    key = jax.random.key(0)
    x = scasml.Ball(1.0).sample(key, 2000, 50)
    norms = jnp.linalg.norm(x, axis=1)
    assert float(norms.max()) <= 1.0 + 1e-6
    # uniform in a ball: P(‖x‖ ≤ r) = r^d, so the median radius is 0.5^(1/d)
    assert abs(float(jnp.median(norms)) - 0.5 ** (1 / 50)) < 0.01
    y = scasml.Box(0.0, 0.5).sample(key, 1000, 3)
    assert float(y.min()) >= 0 and float(y.max()) <= 0.5
    with pytest.raises(ValueError, match="low < high"):
        scasml.Box(1.0, 0.0)


def test_gradient_quadratic_is_declared_and_validated():
    make = lambda a: scasml.SemilinearPDE(dim=3, horizon=1.0, nonlinearity=lambda t, x, u, z: -0.5 * z @ z,
                                          terminal=lambda x: x @ x, gradient_quadratic=a)
    assert make(-0.5).gradient_quadratic == -0.5 and make(None).gradient_quadratic is None
    assert scasml.law_of_defect(make(-0.5), lambda t, x: x @ x).gradient_quadratic == -0.5
    assert scasml.equations.get("lqg", dim=4).gradient_quadratic == -0.5
    assert scasml.equations.get("vb", dim=4).gradient_quadratic is None
    for bad in ("a", float("nan"), True):
        with pytest.raises(ValueError, match="gradient_quadratic"):
            make(bad)
