"""Library equations and domains: parameters that used to give NaN (or two different equations) silently."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml import equations

nan, inf = math.nan, math.inf

# lqg, dim=5, seed=0 in float32, as drawn before the draw was pinned to float32 (the shipped lqg PINN's equation)
LQG_SEED0_DIM5 = np.array([[1.447667, 1.4785799, 0.8322915, 0.96866846],
                           [1.0698887, 0.665503, 0.8101946, 1.1894805]], np.float32)


def test_lqg_coefficients_are_the_same_in_float32_and_float64(x64):
    for seed, dim in [(0, 5), (3, 7), (1, 100)]:
        single = equations.get("lqg", dim=dim, seed=seed, dtype=jnp.float32)
        double = equations.get("lqg", dim=dim, seed=seed, dtype=jnp.float64)
        assert single.coefficients.dtype == jnp.float32 and double.coefficients.dtype == jnp.float64
        # one seed, one equation: the float64 coefficients are the float32 ones, widened
        np.testing.assert_array_equal(np.asarray(double.coefficients), np.asarray(single.coefficients, np.float64))
        x = jnp.linspace(-0.5, 0.5, dim)
        np.testing.assert_allclose(float(double.terminal(x)), float(single.terminal(x.astype(jnp.float32))),
                                   rtol=1e-6)
    # and the float32 equation is the one it always was (what the shipped surrogate was trained on)
    np.testing.assert_array_equal(np.asarray(equations.get("lqg", dim=5, dtype=jnp.float32).coefficients),
                                  LQG_SEED0_DIM5)
    np.testing.assert_array_equal(np.asarray(equations.get("lqg", dim=5, dtype=jnp.float64).coefficients),
                                  LQG_SEED0_DIM5.astype(np.float64))


def test_lqg_float32_coefficients_are_unchanged_without_x64():
    np.testing.assert_array_equal(np.asarray(equations.get("lqg", dim=5).coefficients), LQG_SEED0_DIM5)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("bsir", {"volatility": 0.0}, "DifferentInterestRates volatility must be positive"),
        ("bsir", {"volatility": -0.2}, "DifferentInterestRates volatility must be positive"),
        ("bsir", {"volatility": nan}, "DifferentInterestRates volatility must be a finite number, got nan"),
        ("bsir", {"volatility": inf}, "DifferentInterestRates volatility must be a finite number, got inf"),
        ("bsir", {"lending": nan}, "DifferentInterestRates lending must be a finite number, got nan"),
        ("bsir", {"borrowing": inf}, "DifferentInterestRates borrowing must be a finite number, got inf"),
        ("bsir", {"borrowing": None}, "DifferentInterestRates borrowing must be a finite number, got None"),
        ("bsdr", {"recovery": nan}, "BlackScholesDefaultRisk recovery must be a finite number, got nan"),
        ("bsdr", {"rate": -inf}, "BlackScholesDefaultRisk rate must be a finite number, got -inf"),
        ("bsb", {"rate": nan}, "BlackScholesBarenblatt rate must be a finite number, got nan"),
        ("bsb", {"rate": inf}, "BlackScholesBarenblatt rate must be a finite number, got inf"),
        ("bsb", {"volatility": inf}, "BlackScholesBarenblatt volatility must be a finite number, got inf"),
    ],
)
def test_pricing_parameters_must_be_finite(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        equations.get(name, dim=3, **kwargs)


def test_pricing_parameters_outside_the_economic_range_are_allowed():
    """The generators are Lipschitz for any finite recovery and rates, so a recovery outside [0, 1] or borrowing
    below lending is a well-posed (if unusual) equation: accepted, with a finite f."""
    x, z = jnp.full((3,), 100.0), jnp.full((3,), 2.0)
    for pde in (equations.get("bsdr", dim=3, recovery=1.5), equations.get("bsdr", dim=3, recovery=-0.1),
                equations.get("bsir", dim=3, lending=0.06, borrowing=0.04)):
        assert math.isfinite(float(pde.nonlinearity(0.0, x, jnp.asarray(5.0), z)))


def _max_residual(pde, t, x):
    """max |residual| of the equation's exact solution (the library's residual, autodiff derivatives)."""
    return float(jnp.max(jnp.abs(jax.vmap(lambda ti, xi: scasml.residual(pde, pde.exact, ti, xi))(t, x))))


def test_lqou_without_rate_and_state_cost_has_the_kappa_zero_solution(x64):
    """b = q = 0 gives κ = 0: w(τ) = 1 + λs²Gτ, P = G/(1 + λs²Gτ). The exact solution solves the PDE there, and a
    tiny κ (from b or from q) agrees with it."""
    pde = equations.get("lqou", dim=3, rate=0.0, state_cost=0.0)
    assert pde.dtype == jnp.float64
    t, x = pde.sample_domain(jax.random.key(0), 200)
    u = jax.vmap(pde.exact)(t, x)
    assert _max_residual(pde, t, x) <= 1e-10
    mismatch = jax.vmap(lambda xi: pde.exact(pde.horizon, xi) - pde.terminal(xi))(x)
    assert float(jnp.max(jnp.abs(mismatch))) <= 1e-12
    grow = 1 + pde.control_weight * pde.vol**2 * pde.terminal_cost * (pde.horizon - t)
    closed = 0.5 * pde.terminal_cost / grow * jnp.sum(x * x, axis=1) + pde.dim * jnp.log(grow) / (
        2 * pde.control_weight)
    np.testing.assert_allclose(u, closed, rtol=1e-13)
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.grad(pde.exact, argnums=(0, 1)))(t, x)[0])))
    for kwargs in ({"rate": 1e-8, "state_cost": 0.0}, {"rate": 0.0, "state_cost": 4e-16}):  # κ = 1e-8
        tiny = equations.get("lqou", dim=3, **kwargs)
        np.testing.assert_allclose(jax.vmap(tiny.exact)(t, x), u, rtol=1e-7, atol=1e-12)
        assert _max_residual(tiny, t, x) <= 1e-10


def test_lqou_kappa_zero_in_float32():
    pde = equations.get("lqou", dim=3, rate=0.0, state_cost=0.0)
    t, x = pde.sample_domain(jax.random.key(0), 50)
    assert bool(jnp.all(jnp.isfinite(jax.vmap(pde.exact)(t, x))))
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.grad(pde.exact, argnums=1))(t, x))))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: scasml.Box(0.0, inf), r"Box needs finite bounds, got \[0.0, inf\]"),
        (lambda: scasml.Box(-inf, 0.0), r"Box needs finite bounds, got \[-inf, 0.0\]"),
        (lambda: scasml.Box(nan, 1.0), r"Box needs finite bounds, got \[nan, 1.0\]"),
        (lambda: scasml.Ball(inf), "Ball needs a finite radius, got inf"),
        (lambda: scasml.Ball(nan), "Ball needs a finite radius, got nan"),
        (lambda: scasml.ScaledBox((nan, 1.0)), r"ScaledBox needs a centre of finite coordinates, got \(nan, 1.0\)"),
        (lambda: scasml.ScaledBox((1.0, inf)), r"ScaledBox needs a centre of finite coordinates, got \(1.0, inf\)"),
        (lambda: scasml.ScaledBox((1.0,), 0.5, inf), r"ScaledBox needs finite bounds, got \[0.5, inf\]"),
        (lambda: scasml.AlongPaths((nan, 1.0)), r"AlongPaths needs a starting point of finite coordinates"),
        (lambda: scasml.AlongPaths((1.0, -inf)), r"AlongPaths needs a starting point of finite coordinates"),
    ],
)
def test_domains_refuse_non_finite_geometry(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_domain_checks_keep_their_order_and_finite_domains_still_work():
    with pytest.raises(ValueError, match="low < high"):
        scasml.Box(1.0, 0.0)
    with pytest.raises(ValueError, match="radius > 0"):
        scasml.Ball(0.0)
    with pytest.raises(ValueError, match="non-empty"):
        scasml.AlongPaths(())
    key = jax.random.key(0)
    for domain in (scasml.Box(-2, 3), scasml.Ball(2.0), scasml.ScaledBox((1.0, 0.5)), scasml.AlongPaths((1.0, 2.0))):
        assert bool(jnp.all(jnp.isfinite(domain.sample(key, 8, 2))))
