"""Bring-your-own surrogates: plain callables, equinox modules, Flax-style modules, and clear errors."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml.surrogates._adapters import (
    EquinoxSurrogate,
    FlaxSurrogate,
    SurrogateError,
    as_surrogate,
    check_surrogate,
)

DIM = 5
ESTIMATOR = scasml.MultilevelPicard(2, 10)  # the paper's setting, for the user-function acceptance check
QUICK = scasml.MultilevelPicard(1, 8)  # one Picard level: compiles in a third of the time (adapter checks)
TINY = scasml.MultilevelPicard(1, 2)  # for error paths


@pytest.fixture(scope="module")
def vb():
    return scasml.equations.get("vb", dim=DIM)


@pytest.fixture(scope="module")
def points(vb):
    return vb.sample_domain(jax.random.key(3), 16)


def perturbed_exact(pde):
    """The exact solution × (1 + 0.05 sin(Σx)): a user-supplied surrogate with a known 5 % error."""
    return lambda t, x: pde.exact(t, x) * (1.0 + 0.05 * jnp.sin(jnp.sum(x)))


def _batch(fn):
    return jax.jit(lambda t, x: jax.vmap(fn)(t, x))  # jitted: eager vmaps dispatch op by op (slow)


def _errors(out, pde, t, x):
    ref = jax.vmap(pde.exact)(t, x)
    return float(jnp.linalg.norm(out.surrogate - ref)), float(jnp.linalg.norm(out.u - ref))


# ---- a tiny stand-in for a flax.linen module: the same apply(params, inputs) signature, hashable --------------
@dataclasses.dataclass(frozen=True)
class TinyDense:
    """Mimics flax.linen: tanh layer then a linear read-out of width 1, parameters passed to apply."""

    features: int

    def init(self, key, inputs):
        k1, k2 = jax.random.split(key)
        n = inputs.shape[-1]
        return {
            "params": {
                "hidden": {
                    "kernel": jax.random.normal(k1, (n, self.features)) / n**0.5,
                    "bias": jnp.zeros(self.features),
                },
                "out": {"kernel": jax.random.normal(k2, (self.features, 1)) / self.features**0.5},
            }
        }

    def apply(self, variables, inputs):
        p = variables["params"]
        pre = inputs @ p["hidden"]["kernel"]
        hidden = jnp.tanh(pre + jnp.reshape(p["hidden"]["bias"], (1,) * (pre.ndim - 1) + (-1,)))  # as flax Dense
        return hidden @ p["out"]["kernel"]  # shape (..., 1), as a flax Dense(1) head returns


@dataclasses.dataclass(frozen=True)
class ExactPlusFlax:
    """A Flax-style module whose output is the VB solution × (1 + 0.05 sin(Σx)) plus a learnable offset."""

    dim: int

    def apply(self, variables, inputs):
        x, t = inputs[..., : self.dim], inputs[..., self.dim]
        u = jax.nn.sigmoid(t + jnp.sum(x, axis=-1)) * (1.0 + 0.05 * jnp.sin(jnp.sum(x, axis=-1)))
        return (u + variables["params"]["offset"])[..., None]


class ExactPlusEquinox(eqx.Module):
    """An equinox module on [x, t] with one array leaf, returning shape (1,)."""

    amplitude: jax.Array

    def __call__(self, inputs):
        x, t = inputs[:-1], inputs[-1]
        u = jax.nn.sigmoid(t + jnp.sum(x)) * (1.0 + self.amplitude * jnp.sin(jnp.sum(x)))
        return jnp.reshape(u, (1,))


# ---- adapters -------------------------------------------------------------------------------------------------
def _check_user_function(vb, points, estimator):
    t, x = points
    out = scasml.calibrate(perturbed_exact(vb), vb, t, x, estimator, key=jax.random.key(0))
    err_surrogate, err_scasml = _errors(out, vb, t, x)
    assert bool(jnp.all(out.finite))
    assert err_surrogate > 0.01
    assert err_scasml < 0.5 * err_surrogate
    # the standard error is an honest scale for the remaining error (within a generous factor)
    ref = jax.vmap(vb.exact)(t, x)
    assert float(jnp.sqrt(jnp.mean((out.u - ref) ** 2))) < 5 * float(jnp.sqrt(jnp.mean(out.stderr**2)))


def test_user_function_is_calibrated_through_the_api(vb, points):
    _check_user_function(vb, points, QUICK)


@pytest.mark.slow
def test_user_function_is_calibrated_with_the_papers_estimator(vb, points):
    _check_user_function(vb, points, ESTIMATOR)  # MultilevelPicard(2, 10): compiles in ~15 s of CPU


def test_equinox_module_adapter(vb, points):
    t, x = points
    model = ExactPlusEquinox(jnp.asarray(0.05))
    surrogate = EquinoxSurrogate(model, layout="xt")
    expected = _batch(perturbed_exact(vb))(t, x)
    np.testing.assert_allclose(_batch(surrogate)(t, x), expected, rtol=1e-6)
    # the module's array is a leaf of the surrogate: gradients flow to it
    grads = jax.grad(lambda s: s(t[0], x[0]))(surrogate)
    assert float(grads.module.amplitude) == pytest.approx(float(vb.exact(t[0], x[0]) * jnp.sin(jnp.sum(x[0]))), 1e-5)
    out = scasml.calibrate(surrogate, vb, t, x, QUICK, key=jax.random.key(0))
    err_surrogate, err_scasml = _errors(out, vb, t, x)
    assert err_scasml < 0.5 * err_surrogate


def test_equinox_layouts_and_pinn_equivalence(vb, points):
    t, x = points
    pinn = scasml.PINN(DIM, vb.horizon, jax.random.key(0), width=8, depth=2)
    wrapped = EquinoxSurrogate(pinn.mlp, layout="xt")
    np.testing.assert_allclose(_batch(wrapped)(t, x), _batch(pinn)(t, x), rtol=1e-6)
    two_args = EquinoxSurrogate(pinn, layout="t,x")
    np.testing.assert_allclose(_batch(two_args)(t, x), _batch(pinn)(t, x), rtol=1e-6)
    mlp = eqx.nn.MLP(DIM + 1, 1, 8, 1, key=jax.random.key(1))  # output shape (1,) is squeezed
    tx = EquinoxSurrogate(mlp, layout="tx")
    assert tx(t[0], x[0]).shape == ()
    np.testing.assert_allclose(tx(t[0], x[0]), mlp(jnp.concatenate([t[:1], x[0]]))[0], rtol=1e-6)


def test_flax_style_adapter(vb, points):
    t, x = points
    module = TinyDense(features=8)
    variables = module.init(jax.random.key(0), jnp.zeros(DIM + 1))
    surrogate = FlaxSurrogate(module, variables)
    direct = module.apply(variables, jnp.concatenate([x[0], t[:1]]))[0]
    assert float(surrogate(t[0], x[0])) == pytest.approx(float(direct), rel=1e-6)
    batched = FlaxSurrogate(module, variables, layout="xt", batched=True)
    np.testing.assert_allclose(_batch(batched)(t, x), _batch(surrogate)(t, x), rtol=1e-6)
    assert isinstance(as_surrogate(module, variables), FlaxSurrogate)
    # parameters are leaves: a gradient step changes the surrogate
    grads = jax.grad(lambda s: s(t[0], x[0]))(surrogate)
    assert float(jnp.sum(jnp.abs(grads.params["params"]["out"]["kernel"]))) > 0
    # calibrating a Flax-style surrogate through the API improves it
    good = FlaxSurrogate(ExactPlusFlax(DIM), {"params": {"offset": jnp.asarray(0.0)}})
    out = scasml.calibrate(good, vb, t, x, QUICK, key=jax.random.key(0))
    err_surrogate, err_scasml = _errors(out, vb, t, x)
    assert err_scasml < 0.5 * err_surrogate


def test_as_surrogate_dispatch(vb):
    fn = perturbed_exact(vb)
    assert isinstance(as_surrogate(fn), scasml.FunctionSurrogate)
    gp_like = scasml.FunctionSurrogate(fn)
    assert as_surrogate(gp_like) is gp_like
    assert isinstance(as_surrogate(ExactPlusEquinox(jnp.asarray(0.0)), layout="xt"), EquinoxSurrogate)
    with pytest.raises(TypeError, match="not callable"):
        as_surrogate(3.0)
    with pytest.raises(TypeError, match="apply"):
        FlaxSurrogate(object(), {})

    @dataclasses.dataclass  # mutable dataclass: unhashable, unlike flax.linen modules
    class Unhashable:
        def apply(self, params, inputs):
            return jnp.sum(inputs)

    with pytest.raises(TypeError, match="hashable"):
        FlaxSurrogate(Unhashable(), {})
    with pytest.raises(ValueError, match="layout"):
        EquinoxSurrogate(ExactPlusEquinox(jnp.asarray(0.0)), layout="x,t")


# ---- errors: wrong shape, NaN, not differentiable ---------------------------------------------------------------
def test_wrong_output_shape_is_reported(vb, points):
    t, x = points
    vector = lambda t, x: jnp.stack([t, jnp.sum(x), 1.0 + 0 * t])
    with pytest.raises(ValueError, match=r"must return a scalar for one point .* shape \(3,\)"):
        scasml.calibrate(vector, vb, t, x, TINY, key=jax.random.key(0))
    with pytest.raises(SurrogateError, match=r"must return a scalar for one point .* shape \(3,\)"):
        check_surrogate(vector, vb)
    with pytest.raises(SurrogateError, match=r"returned shape \(2,\) for one point"):
        check_surrogate(EquinoxSurrogate(lambda z: z[:2], layout="xt"), vb)


def test_nan_surrogate_is_reported(vb, points):
    t, x = points
    broken = EquinoxSurrogate(ExactPlusEquinox(jnp.asarray(jnp.nan)), layout="xt")  # same program as the test above
    with pytest.raises(ValueError, match="non-finite values at 16 query point"):
        scasml.calibrate(broken, vb, t, x, QUICK, key=jax.random.key(0))
    nan = lambda t, x: jnp.log(jnp.sum(x) - 10.0)  # log of a negative number on the whole domain
    with pytest.raises(SurrogateError, match="value is not finite at 8 of 8 sample points"):
        check_surrogate(nan, vb, jax.random.key(0))
    # finite values but an infinite gradient somewhere in the domain
    kink = lambda t, x: jnp.sqrt(jnp.abs(x[0] - x[0]))
    with pytest.raises(SurrogateError, match="gradient is not finite"):
        check_surrogate(kink, vb, jax.random.key(0))


def test_numpy_surrogate_is_reported(vb, points):
    t, x = points
    numpy_fn = lambda t, x: np.tanh(np.sum(np.asarray(x))) + t  # numpy on a tracer
    with pytest.raises(ValueError, match="cannot be evaluated as û\\(t, x\\).*under JAX tracing"):
        scasml.calibrate(numpy_fn, vb, t, x, TINY, key=jax.random.key(0))
    with pytest.raises(SurrogateError, match="write it with jax.numpy"):
        check_surrogate(numpy_fn, vb)


def test_non_differentiable_callback_is_reported(vb):
    def host(x):
        return np.tanh(np.sum(x)).astype(x.dtype)

    def callback_fn(t, x):
        return jax.pure_callback(host, jax.ShapeDtypeStruct((), x.dtype), x) + t

    assert np.isfinite(float(callback_fn(jnp.asarray(0.1), jnp.zeros(DIM))))  # it evaluates fine...
    with pytest.raises(SurrogateError, match="not twice differentiable by JAX"):  # ...but cannot be differentiated
        check_surrogate(callback_fn, vb)


def test_check_surrogate_accepts_good_surrogates(vb):
    good = check_surrogate(perturbed_exact(vb), vb, jax.random.key(0))
    assert isinstance(good, scasml.FunctionSurrogate)
    with pytest.raises(SurrogateError, match="4-dimensional but the PDE is 5-dimensional"):
        check_surrogate(scasml.PINN(4, 0.5, jax.random.key(0), width=4, depth=1), vb)
