"""Bring your own surrogate: adapters for equinox and Flax models, and a checker with actionable messages.

scasml needs û(t, x) for a scalar ``t`` and ``x`` of shape ``(d,)``, returning a scalar, written in JAX so that
∂_t û, ∇û and a trace of ∇²û come from autodiff. Three ways in:

* any JAX callable ``fn(t, x)``:             ``FunctionSurrogate(fn)``
* an equinox module on one input vector:     ``EquinoxSurrogate(model, layout="xt")``  (input [x, t])
* a Flax (linen) module and its parameters:  ``FlaxSurrogate(module, params, layout="xt")``, which calls
  ``module.apply(params, inputs)``; Flax is *not* a dependency: any object with that ``apply`` signature works.

``as_surrogate`` picks one of these; ``check_surrogate(surrogate, pde, key)`` traces the value, gradient and
second derivatives once on abstract inputs and evaluates them at a few domain points, so that a wrong output
shape, a non-JAX (numpy) computation, a non-differentiable step or a NaN is reported before any Monte Carlo run.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ._base import AbstractSurrogate, FunctionSurrogate

_LAYOUTS = ("xt", "tx", "t,x")


class SurrogateError(ValueError):
    """A user-supplied surrogate cannot be used by scasml (see the message for what to change)."""


def _check_layout(layout):
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS} (input [x, t], [t, x], or two arguments), got {layout!r}")


def _inputs(layout: str, t, x):
    t = jnp.asarray(t, x.dtype)
    if layout == "xt":
        return jnp.concatenate([x, jnp.reshape(t, (1,))])
    return jnp.concatenate([jnp.reshape(t, (1,)), x])


def _scalar(out, who: str):
    shape = jnp.shape(out)
    if shape == ():
        return jnp.asarray(out)
    if shape == (1,):
        return jnp.asarray(out)[0]
    raise SurrogateError(
        f"{who} returned shape {shape} for one point; a surrogate must return one value per point (shape () or "
        "(1,)). scasml evaluates one point at a time and vmaps itself, so do not add a batch axis (or pass "
        "batched=True to FlaxSurrogate if the model needs one)"
    )


class EquinoxSurrogate(AbstractSurrogate):
    """An equinox module (or any pytree callable) as a surrogate.

    ``layout="xt"`` calls ``module(concatenate([x, t]))`` (the layout of ``scasml.PINN``), ``"tx"`` calls
    ``module(concatenate([t, x]))``, ``"t,x"`` calls ``module(t, x)``. An output of shape ``(1,)`` (e.g.
    ``eqx.nn.MLP(d + 1, 1, ...)``) is squeezed. The module's arrays are leaves of this surrogate (so it can be
    trained, jitted and vmapped like any equinox model).
    """

    module: Any
    layout: str = eqx.field(static=True, default="xt")

    def __check_init__(self):
        if not callable(self.module):
            raise TypeError(f"EquinoxSurrogate needs a callable module, got {type(self.module).__name__}")
        _check_layout(self.layout)

    def __call__(self, t, x):
        if self.layout == "t,x":
            out = self.module(t, x)
        else:
            out = self.module(_inputs(self.layout, t, x))
        return _scalar(out, f"the {type(self.module).__name__} module")


class FlaxSurrogate(AbstractSurrogate):
    """A Flax linen module (duck-typed: anything with ``module.apply(params, inputs)``) and its parameters.

    ``inputs`` is ``[x, t]`` (``layout="xt"``) or ``[t, x]`` (``"tx"``) of shape ``(d + 1,)``, or ``(1, d + 1)``
    with ``batched=True`` (then the output's first row is used); ``layout="t,x"`` calls
    ``module.apply(params, t, x)``. ``params`` (the variables dict returned by ``module.init``) are array leaves of
    this surrogate; the module itself is static metadata and must be hashable (linen modules are).
    """

    module: Any = eqx.field(static=True)
    params: Any
    layout: str = eqx.field(static=True, default="xt")
    batched: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not callable(getattr(self.module, "apply", None)):
            raise TypeError(
                f"FlaxSurrogate needs a Flax-style module with an apply(params, inputs) method; "
                f"{type(self.module).__name__} has none (for a plain function use FunctionSurrogate)"
            )
        try:
            hash(self.module)
        except TypeError:
            raise TypeError(
                f"FlaxSurrogate: the module ({type(self.module).__name__}) must be hashable, as Flax linen modules "
                "are (it is treated as static configuration; its parameters go in `params`)"
            ) from None
        _check_layout(self.layout)

    def __call__(self, t, x):
        if self.layout == "t,x":
            out = self.module.apply(self.params, t, x)
        else:
            inputs = _inputs(self.layout, t, x)
            out = self.module.apply(self.params, inputs[None] if self.batched else inputs)
            if self.batched:
                out = _batch_row(out, type(self.module).__name__)
        return _scalar(out, f"{type(self.module).__name__}.apply")


def _batch_row(out, name):
    if jnp.ndim(out) < 1 or jnp.shape(out)[0] != 1:
        raise SurrogateError(
            f"{name}.apply was given a batch of one input (batched=True) but returned shape {jnp.shape(out)}; "
            "expected a leading axis of length 1"
        )
    return out[0]


def as_surrogate(obj, params=None, *, layout: str | None = None) -> AbstractSurrogate:
    """Wrap ``obj`` as a surrogate.

    * an ``AbstractSurrogate`` is returned unchanged;
    * with ``params`` given, ``obj`` must have ``apply(params, inputs)`` (Flax): ``FlaxSurrogate``;
    * with ``layout`` given (``"xt"``, ``"tx"``, ``"t,x"``): ``EquinoxSurrogate(obj, layout)``;
    * any other callable is taken to be ``fn(t, x)``: ``FunctionSurrogate``.
    """
    if isinstance(obj, AbstractSurrogate):
        if params is not None or layout is not None:
            raise ValueError(f"{type(obj).__name__} is already a surrogate: do not pass params or layout")
        return obj
    if params is not None:
        return FlaxSurrogate(obj, params, layout or "xt")
    if layout is not None:
        return EquinoxSurrogate(obj, layout)
    if isinstance(obj, tuple) and obj and isinstance(obj[0], AbstractSurrogate):
        raise TypeError(f"cannot use a tuple as a surrogate: its first element is a {type(obj[0]).__name__}. "
                        "scasml.train and scasml.fit_gp return (surrogate, log): unpack it, e.g. "
                        "`gp, log = scasml.fit_gp(pde, key)`, and pass the surrogate")
    if not callable(obj):
        raise TypeError(f"cannot use a {type(obj).__name__} as a surrogate: it is not callable")
    return FunctionSurrogate(obj)


def _second_derivative(surrogate, t, x, v):
    fn_x = lambda y: surrogate(t, y)
    first = lambda y: jax.jvp(fn_x, (y,), (v,))[1]
    return jax.jvp(first, (x,), (v,))[1]


def check_surrogate(surrogate, pde, key: PRNGKeyArray | None = None, points: int = 8) -> AbstractSurrogate:
    """Check that ``surrogate`` can be used with ``pde``; return it (wrapped by ``as_surrogate`` if needed).

    Raises ``SurrogateError`` (a ``ValueError``) naming the problem: not callable, cannot be traced by JAX (e.g.
    it calls numpy on its input), does not return one value per point, does not return a floating dtype,
    cannot be differentiated twice (e.g. a ``jax.pure_callback`` without a JVP rule), or, with ``key`` given,
    returns a non-finite value, gradient or second derivative at one of ``points`` points from
    ``pde.sample_domain``.
    """
    try:
        surrogate = as_surrogate(surrogate)
    except TypeError as err:
        raise SurrogateError(str(err)) from None
    d = pde.dim
    sdim = getattr(surrogate, "dim", None)
    if isinstance(sdim, int) and sdim != d:
        raise SurrogateError(f"the surrogate is {sdim}-dimensional but the PDE is {d}-dimensional")
    t0 = jax.ShapeDtypeStruct((), pde.dtype)
    x0 = jax.ShapeDtypeStruct((d,), pde.dtype)
    try:
        out = jax.eval_shape(surrogate, t0, x0)
    except SurrogateError:
        raise
    except Exception as err:
        hint = ""
        if isinstance(err, jax.errors.TracerArrayConversionError | jax.errors.ConcretizationTypeError):
            hint = (
                " It looks like the surrogate converts its input to a NumPy array or Python number (numpy "
                "functions, float(), if-statements on values): scasml differentiates û with JAX, so write it with "
                "jax.numpy and jax.lax control flow."
            )
        raise SurrogateError(
            f"the surrogate cannot be evaluated as û(t, x) with a scalar t and x of shape ({d},) under JAX tracing "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).{hint}"
        ) from err
    shape = getattr(out, "shape", None)
    if shape != ():
        raise SurrogateError(
            f"the surrogate must return a scalar for one point (t scalar, x of shape ({d},)); it returned "
            f"{'shape ' + str(shape) if shape is not None else type(out).__name__}. scasml vmaps over points itself; "
            "squeeze a (1,) output (EquinoxSurrogate/FlaxSurrogate do) or fix the batch handling"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise SurrogateError(f"the surrogate must return floating-point values, it returned dtype {out.dtype}")
    v0 = jax.ShapeDtypeStruct((d,), pde.dtype)
    try:
        jax.eval_shape(jax.grad(surrogate, argnums=(0, 1)), t0, x0)
        jax.eval_shape(lambda t, x, v: _second_derivative(surrogate, t, x, v), t0, x0, v0)
    except Exception as err:
        raise SurrogateError(
            "the surrogate is not twice differentiable by JAX (scasml needs ∂_t û, ∇û and second derivatives "
            f"of û for its residual): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
            "Use jax.numpy operations throughout, or give custom callbacks a jax.custom_jvp rule."
        ) from err
    if key is not None:
        t, x = pde.sample_domain(key, points)
        def probe(ti, xi):
            value, (dt, grad) = jax.value_and_grad(surrogate, argnums=(0, 1))(ti, xi)
            second = _second_derivative(surrogate, ti, xi, pde.dynamics.diffusion_directions(ti, xi)[0])
            return jnp.stack([value, dt, jnp.max(jnp.abs(grad)), second])

        values = jax.jit(jax.vmap(probe))(t, x)
        bad = ~jnp.isfinite(values)
        if bool(jnp.any(bad)):
            i, what = (int(v) for v in jnp.argwhere(bad)[0])
            label = ("value", "time derivative", "gradient", "second derivative")[what]
            raise SurrogateError(
                f"the surrogate's {label} is not finite at {int(jnp.sum(jnp.any(bad, axis=1)))} of {points} sample "
                f"points from pde.sample_domain (first: t = {float(t[i]):.4g}, x[:3] = "
                f"{[round(float(v), 4) for v in x[i, :3]]}); fix the surrogate there (NaN inputs, log/sqrt of "
                "non-positive numbers, division by zero, overflow)"
            )
    return surrogate
