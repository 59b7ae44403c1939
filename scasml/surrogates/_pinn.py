"""Physics-informed neural network surrogate: an equinox MLP on (x, t)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._checks import is_integer, is_real
from .._linalg import gram_factor
from ._base import AbstractSurrogate

_ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "sin": jnp.sin, "gelu": jax.nn.gelu}


def parameter_dtype(dtype, owner: str) -> np.dtype:
    """``dtype`` (None: JAX's default float) as a NumPy dtype, refused (ValueError) unless float32 or float64 with
    jax x64 enabled. Shared by the surrogates' constructors and loaders."""
    try:
        resolved = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in ("float32", "float64"):
        got = dtype if resolved is None else resolved.name
        raise ValueError(f"{owner}: dtype must be float32 or float64, got {got!r} (half precision, float16 or "
                         "bfloat16, cannot resolve PDE residuals and is not supported)")
    if resolved.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(f'{owner}: dtype float64 needs jax.config.update("jax_enable_x64", True) first (scasml never '
                         "enables it)")
    return resolved


def _first_two_derivatives(act, a):
    """φ'(a), φ''(a) of an elementwise activation."""
    ones = jnp.ones_like(a)
    return jax.jvp(lambda b: jax.jvp(act, (b,), (ones,))[1], (a,), (ones,))


class SweepTerms(NamedTuple):
    """What one forward sweep of a PINN's MLP yields at a point (see ``PINN._sweep``)."""

    value: jax.Array  # the MLP's output
    transport: jax.Array | None  # its derivative along the optional first-order direction
    first: jax.Array  # (k,) its derivatives along the k sweep directions
    second: jax.Array  # Σ_j v_jᵀ∇²v_j over the k directions


class PINN(AbstractSurrogate):
    """û(t, x) = s_u · MLP([(x − c)/s_x, t]) (``depth`` hidden layers of ``width``, default 5 × 50 tanh).

    With ``terminal`` given (the PDE's g), the terminal condition is built in:
    û(t, x) = g(x) + (T − t)/T · s_u · MLP([(x − c)/s_x, t]), so û(T, ·) = g exactly.

    ``input_offset`` c, ``input_scale`` s_x and ``output_scale`` s_u (scalars; defaults 0, 1, 1) put inputs and
    outputs of other magnitudes in the tanh units' working range: for prices around x₀ = 100·1, c = 100 and
    s_x = 30 map a ±30 % neighbourhood to [−1, 1], and s_u of the size of the solution keeps the network's output
    of order one. They are fixed, not trained.

    ``terminal_smoothing`` ε records that ``terminal`` is the PDE's g smoothed at scale ε
    (``pde.smoothed_terminal(ε)``, for kinked payoffs; a checkpoint rebuilds it from the PDE, which it refuses
    if its g differs from this one at a few fixed points). ``dtype``: float32 or float64 (float64 needs jax x64).
    """

    mlp: eqx.nn.MLP
    dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    terminal: Callable | None = eqx.field(static=True)
    input_offset: float = eqx.field(static=True)
    input_scale: float = eqx.field(static=True)
    output_scale: float = eqx.field(static=True)
    terminal_smoothing: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        horizon: float,
        key: PRNGKeyArray,
        width: int = 50,
        depth: int = 5,
        activation: str = "tanh",
        terminal: Callable | None = None,
        dtype=None,
        input_offset: float = 0.0,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
        terminal_smoothing: float = 0.0,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
        for label, value in (("dim", dim), ("width", width), ("depth", depth)):
            if not (is_integer(value) and value >= 1):
                raise ValueError(f"PINN {label} must be a positive integer, got {value!r}")
        dim, width, depth = int(dim), int(width), int(depth)
        if not (is_real(horizon) and math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"PINN horizon T must be a positive finite number, got {horizon!r}")
        if key is None:
            raise ValueError("PINN needs a PRNG key for its initial weights (e.g. jax.random.key(0))")
        for label, value, lowest in (("input_offset", input_offset, -math.inf), ("input_scale", input_scale, 0.0),
                                     ("output_scale", output_scale, 0.0)):
            if not (is_real(value) and math.isfinite(value) and value > lowest):
                need = "a finite number" if lowest == -math.inf else "a positive finite number"
                raise ValueError(f"PINN {label} must be {need}, got {value!r}")
        if not (is_real(terminal_smoothing) and math.isfinite(terminal_smoothing) and terminal_smoothing >= 0):
            raise ValueError(f"PINN terminal_smoothing must be a finite number ≥ 0, got {terminal_smoothing!r}")
        if terminal_smoothing and terminal is None:
            raise ValueError("PINN terminal_smoothing describes a built-in terminal condition: pass terminal= too")
        self.terminal_smoothing = float(terminal_smoothing)
        self.input_offset, self.input_scale = float(input_offset), float(input_scale)
        self.output_scale = float(output_scale)
        self.dim, self.width, self.depth, self.activation = dim, width, depth, activation
        self.horizon = float(horizon)
        # a plain closure, so that no arrays of the PDE become static data of this module
        self.terminal = None if terminal is None else (lambda x, _g=terminal: _g(x))
        dtype = parameter_dtype(dtype, "PINN")
        self.mlp = eqx.nn.MLP(dim + 1, "scalar", width, depth, _ACTIVATIONS[activation], key=key, dtype=dtype)

    def _features(self, t, x):
        """The network's input [(x − c)/s_x, t], shape (d + 1,)."""
        return jnp.concatenate([(x - self.input_offset) / self.input_scale, jnp.reshape(t, (1,)).astype(x.dtype)])

    def __call__(self, t, x):
        out = self.output_scale * self.mlp(self._features(t, x))
        if self.terminal is None:
            return out
        return self.terminal(x) + (self.horizon - t) / self.horizon * out

    def hessian_quadratic_sum(self, t, x, directions):
        """Σ_j v_jᵀ ∇²_x û(t, x) v_j for the rows of ``directions`` (k, d) in one forward-Laplacian sweep.

        Propagates each hidden unit's value h, its directional derivatives J = (v_j·∇h)_j (shape (k, width)) and
        L = Σ_j v_jᵀ∇²h v_j through the layers: a linear layer maps all three linearly; an activation φ gives
        J ← φ'(a)·J and L ← φ'(a)·L + φ''(a)·Σ_j J_j². Cost ≈ min(k, width) forward passes (see ``_sweep``).
        """
        w0 = self.mlp.layers[0].weight[:, : self.dim] / self.input_scale  # (width, d)
        network = self._sweep(t, x, directions @ w0.T).second
        return self._with_terminal(t, x, network, lambda: directions)

    def diffusion_hessian_trace(self, t, x, diffusion):
        """Tr(σσᵀ∇²_x û(t, x)) for σ = ``diffusion`` of shape (), (d,) or (d, d), exactly.

        Same sweep as ``hessian_quadratic_sum`` with the rows σe_j, without forming the (d, d) matrix of
        directions: the first layer maps them to σᵀW₀ᵀ (d, width) directly.
        """
        from .._dynamics import diffusion_directions

        network = self._sweep(t, x, self._projected_diffusion(diffusion)).second
        return self._with_terminal(t, x, network, lambda: diffusion_directions(diffusion, self.dim))

    def hutchinson_trace(self, t, x, diffusion, key, probes: int):
        """Unbiased estimate of Tr(σσᵀ∇²_x û(t, x)) from ``probes`` Rademacher probes (``HutchinsonTrace``).

        For d ≤ width (or a built-in terminal condition) the probes are σr, r ∈ {±1}^d, as for any surrogate.
        For d > width they are drawn in the width-dimensional space of the Gram factor R of the first layer's
        images of σ (RᵀR = W₀σσᵀW₀ᵀ): probes Rᵀρ, ρ ∈ {±1}^width, have the same second moment as W₀σr, so the
        estimate stays unbiased, and no probe costs a d-dimensional first-layer product (≈ 3 forward passes in
        all, instead of ≈ 8 at d = 1,000). (With Gaussian probes the two would be equal in distribution.)
        """
        from .._derivatives import HutchinsonTrace, rademacher_from_bits

        if self.dim <= self.width or self.terminal is not None:
            rows, weight = HutchinsonTrace(probes).probe_directions(diffusion, self.dim, key)
            return weight * self.hessian_quadratic_sum(t, x, rows)
        factor = gram_factor(self._projected_diffusion(diffusion))  # (width, width)
        signs = rademacher_from_bits(key, (probes, factor.shape[0]), factor.dtype)
        return self._sweep(t, x, signs @ factor).second / probes

    def _projected_diffusion(self, diffusion):
        """The first layer's images W₀σe_j of the rows σe_j, as a (d, width) array (σᵀW₀ᵀ)."""
        w0 = self.mlp.layers[0].weight[:, : self.dim] / self.input_scale  # (width, d)
        return diffusion.T @ w0.T if diffusion.ndim == 2 else jnp.reshape(diffusion, (-1, 1)) * w0.T

    def residual_terms(self, t, x, drift, diffusion) -> SweepTerms | None:
        """(û, ∂_t û + μ·∇û, σᵀ∇û, Tr(σσᵀ∇²û)) at one point from a single forward sweep (no backward pass), for
        d ≤ width and no built-in terminal condition; None otherwise (then ``scasml.residual`` uses autodiff).

        The sweep's first derivatives along the rows σe_j are the entries of σᵀ∇û, and one more first-order
        direction (μ, 1) in (x, t) gives the transport term ∂_t û + μ·∇û.
        """
        if self.terminal is not None or self.dim > self.width:
            return None
        transport = self.mlp.layers[0].weight @ jnp.concatenate([drift / self.input_scale, jnp.ones((1,), x.dtype)])
        return self._sweep(t, x, self._projected_diffusion(diffusion), transport)

    def _sweep(self, t, x, projected, transport=None) -> SweepTerms:
        """Forward-Laplacian sweep given the first layer's images W₀v_j of k directions (rows of ``projected``,
        shape (k, width)) and optionally of one first-order direction (``transport``, shape (width,)).

        Only the Gram matrix Σ_j (W₀v_j)(W₀v_j)ᵀ matters for ``second`` (every later quantity of it is a sum over j
        of squares of linear maps of the rows), so when k > width the k rows are replaced by the `width` rows of
        R from a QR factorisation (RᵀR = the Gram): the sweep then costs ≈ width forward passes instead of k —
        d-independent after the first layer (a 10,000-d exact Laplacian at the price of ~50 directions); the
        per-row derivatives are then those of R's rows.
        """
        act = _ACTIVATIONS[self.activation]
        if projected.shape[0] > self.width:
            projected = gram_factor(projected)
        layers = self.mlp.layers
        h = layers[0].weight @ self._features(t, x)
        h = h + (layers[0].bias if layers[0].bias is not None else 0.0)
        # the derivatives are held transposed, (width, k), and every product is W @ (…): vmapped over points,
        # all sweep arrays then share the (width, points, ...) layout and XLA inserts no transposes between them
        d1, d2 = _first_two_derivatives(act, h)
        h, lap, jac = act(h), d2 * jnp.sum(projected**2, axis=0), d1[:, None] * projected.T
        flow = None if transport is None else d1 * transport
        last = len(layers) - 1
        for i, layer in enumerate(layers[1:], start=1):
            weight = layer.weight
            h = weight @ h + (layer.bias if layer.bias is not None else 0.0)
            jac = weight @ jac
            lap = weight @ lap
            flow = None if flow is None else weight @ flow
            if i < last:
                d1, d2 = _first_two_derivatives(act, h)
                h = act(h)
                lap = d1 * lap + d2 * jnp.sum(jac**2, axis=1)
                jac = d1[:, None] * jac
                flow = None if flow is None else d1 * flow
        s = self.output_scale
        flow = None if flow is None else s * jnp.reshape(flow, ())
        return SweepTerms(s * jnp.reshape(h, ()), flow, s * jnp.reshape(jac, (-1,)), s * jnp.reshape(lap, ()))

    def _with_terminal(self, t, x, network, directions):
        """Adds Σ_j v_jᵀ∇²g v_j when the terminal condition is built in (û = g + (T − t)/T · MLP)."""
        if self.terminal is None:
            return network
        from .._derivatives import second_directional_derivative

        g_part = jnp.sum(jax.vmap(lambda v: second_directional_derivative(self.terminal, x, v))(directions()))
        return g_part + (self.horizon - t) / self.horizon * network

    def architecture(self) -> dict:
        return {
            "kind": "pinn",
            "dim": self.dim,
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation,
            "horizon": self.horizon,
            "terminal_transform": self.terminal is not None,
            **self._scaling(),
        }

    def _scaling(self) -> dict:
        """The non-default scalings and terminal smoothing (absent from the architecture of a plain PINN)."""
        pairs = (("input_offset", self.input_offset, 0.0), ("input_scale", self.input_scale, 1.0),
                 ("output_scale", self.output_scale, 1.0), ("terminal_smoothing", self.terminal_smoothing, 0.0))
        return {name: value for name, value, default in pairs if value != default}
