"""Semilinear parabolic PDEs in the terminal-value convention.

    ∂_t u + μ(t, x)·∇u + ½ Tr(σσᵀ(t, x) ∇²u) + f(t, x, u, σ(t, x)ᵀ∇u) = 0   on [0, T) × R^d,     u(T, x) = g(x).

The operator belongs to the PDE's ``dynamics`` (``scasml.AbstractDynamics``): the diffusion
dX_s = μ(s, X_s) ds + σ(s, X_s) dW_s, which alone makes paths and gradient weights. Throughout, z = σ(t, x)ᵀ∇u.
Per-point functions take a scalar ``t`` and an ``x`` of shape ``(d,)``; vectorise with ``jax.vmap``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import is_count, is_integer, is_real
from ._domain import AbstractDomain, Box
from ._dynamics import AbstractDynamics, ConstantCoefficients, as_dynamics

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]


def _check_scalar_function(fn: Callable, label: str, signature: str, *args) -> None:
    """Trace ``fn`` on abstract arguments: it must run under JAX and return one real number."""
    try:
        out = jax.eval_shape(fn, *args)
    except Exception as err:
        hint = ""
        if isinstance(err, jax.errors.TracerArrayConversionError | jax.errors.ConcretizationTypeError):
            hint = (" It converts its input to a NumPy array or Python number (numpy functions, float(), if on "
                    "values): write it with jax.numpy and jax.lax control flow.")
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{label} cannot be evaluated as {signature} under JAX tracing "
                         f"({type(err).__name__}: {first}).{hint}") from err
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != ():
        got = f"shape {shape}" if shape is not None else type(out).__name__
        raise ValueError(f"{label} must return one number for one point ({signature}); it returned {got}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{label} must return a real floating-point number; it returned dtype {dtype}")


def _check_count(n) -> None:
    if not is_integer(n) or n < 0:
        raise ValueError(f"the number of points must be a non-negative integer, got {n!r}")


class RecordedReference(NamedTuple):
    """A measured reference u(t, x) at one point, with its standard error and how it was obtained."""

    t: float
    x: tuple[float, ...]
    value: float
    stderr: float
    source: str


class AbstractSemilinearPDE(eqx.Module):
    """A semilinear parabolic PDE ∂_t u + μ(t, x)·∇u + ½ Tr(σσᵀ(t, x) ∇²u) + f(t, x, u, σ(t, x)ᵀ∇u) = 0,
    u(T, x) = g(x), with μ, σ those of its ``dynamics`` and z = σ(t, x)ᵀ∇u.

    Subclasses provide ``dim``, ``horizon`` (T), ``dynamics`` (μ, σ and the paths; e.g.
    ``ConstantCoefficients`` or ``GeometricBrownianMotion``), a ``domain`` for test/collocation points, and the
    methods ``nonlinearity`` f and ``terminal`` g. ``exact`` is optional.
    """

    dim: eqx.AbstractVar[int]
    horizon: eqx.AbstractVar[float]
    dynamics: eqx.AbstractVar[AbstractDynamics]
    domain: eqx.AbstractVar[AbstractDomain]

    def __check_init__(self):
        if not is_count(self.dim):
            raise ValueError(f"dim must be a positive integer, got {self.dim!r}")
        if not (isinstance(self.horizon, (int, float)) and math.isfinite(self.horizon) and self.horizon > 0):
            raise ValueError(f"horizon T must be a finite positive number, got {self.horizon!r}")
        if not isinstance(self.dynamics, AbstractDynamics):
            raise TypeError(f"dynamics must be an AbstractDynamics (e.g. scasml.ConstantCoefficients), got "
                            f"{type(self.dynamics).__name__}")
        if self.dynamics.dim != self.dim:
            raise ValueError(f"the dynamics has dim={self.dynamics.dim}, the PDE dim={self.dim}")
        if not isinstance(self.domain, AbstractDomain):
            raise TypeError(f"domain must be an AbstractDomain (e.g. scasml.Box), got {type(self.domain).__name__}")

    # ---- the equation -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def nonlinearity(self, t: Scalar, x: Vector, u: Scalar, z: Vector) -> Scalar:
        """The generator f(t, x, u, z), z = σᵀ∇u. Returns a scalar."""

    @abc.abstractmethod
    def terminal(self, x: Vector) -> Scalar:
        """The terminal value g(x). Returns a scalar."""

    def smoothed_terminal(self, width: float) -> Callable[[Vector], Scalar]:
        """g smoothed at scale ``width`` (width = 0: g itself), for a surrogate that builds its terminal condition
        in: a PDE residual sees no curvature in a kink of g (∇²g = 0 almost everywhere), so a network carrying a
        non-smooth g never learns how the diffusion spreads it; carrying a smooth g_ε, it does, and the Monte Carlo
        correction's terminal value g − g_ε restores the exact payoff. Equations with kinked g override this."""
        if width == 0:
            return self.terminal
        raise ValueError(f"{type(self).__name__} has no smoothed terminal condition (terminal smoothing must be 0)")

    def recorded_reference(self) -> RecordedReference | None:
        """A reference value measured at one point for exactly these parameters (None: none recorded). Equations
        without a closed form record one (``scasml run`` with ``evaluation.at = "reference"`` compares there)."""
        return None

    def exact(self, t: Scalar, x: Vector) -> Scalar:
        """The exact solution u(t, x), where known (see ``has_exact``)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form solution")

    @property
    def has_exact(self) -> bool:
        return type(self).exact is not AbstractSemilinearPDE.exact

    @property
    def is_linear(self) -> bool:
        """True when f does not depend on (u, z): the PDE is then a plain Feynman–Kac expectation."""
        return False

    @property
    def is_defect(self) -> bool:
        """True for the law of defect of a surrogate (``law_of_defect``): its solution u − û is small, and f at
        (0, 0) is the base equation's generator at the surrogate, a point to linearise f at
        (``MultilevelPicard(next_correction=K)`` needs one)."""
        return False

    @property
    def gradient_quadratic(self) -> float | None:
        """a, when f(t, x, u, z) = a‖z‖² + terms affine in z (e.g. −½ for HJB control problems); else None.

        A noisy gradient estimate ẑ gives E[a‖ẑ‖²] = a‖E ẑ‖² + a·tr Var(ẑ): ``MultilevelPicard`` removes that
        bias (``debias=True``) with the estimate's own variance."""
        return None

    @property
    def curved_in_value(self) -> bool:
        """True when f is curved in u (∂²f/∂u² ≠ 0 somewhere, e.g. DR's (u − u*)²).

        A noisy value estimate û gives E f(û) = f(E û) + ½·∂²f/∂u²·Var(û) for f quadratic in u (to second order
        otherwise): ``MultilevelPicard`` removes that bias (``debias=True``) with the estimate's own variance."""
        return False

    @property
    def couples_value_and_gradient(self) -> bool:
        """True when f has a mixed second derivative ∂²f/∂u∂z_j ≠ 0 somewhere (e.g. VB's s·u·Σz).

        Noisy estimates (û, ẑ) give E f(û, ẑ) = f(E û, E ẑ) + Σ_j ∂²f/∂u∂z_j·Cov(û, ẑ_j) for f bilinear in (u, z)
        (to second order otherwise): ``MultilevelPicard`` removes that bias (``debias=True``) with the estimate's
        own covariance."""
        return False

    @property
    def name(self) -> str:
        return type(self).__name__

    def parameters(self) -> dict:
        """JSON-serialisable description (stored in checkpoints and compared on load). Dynamics other than
        constant coefficients are recorded under ``"dynamics"``."""
        out = {"name": self.name, "dim": self.dim, "horizon": float(self.horizon)}
        if not isinstance(self.dynamics, ConstantCoefficients):
            out["dynamics"] = self.dynamics.parameters()
        return out

    @property
    def dtype(self):
        return self.dynamics.dtype

    # ---- points ------------------------------------------------------------------------------------------
    def sample_domain(self, key: PRNGKeyArray, n: int) -> tuple[Float[Array, " n"], Float[Array, "n d"]]:
        """n points (t, x) of the equation's domain (``domain.sample_points``: t uniform on [0, T], x from the
        domain, unless the domain couples them, e.g. ``AlongPaths``)."""
        _check_count(n)
        return self.domain.sample_points(key, n, self)

    def sample_terminal(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        _check_count(n)
        return self.domain.sample_terminal_points(key, n, self)

    # ---- hooks used by the Monte Carlo solvers (overridden by the law of defect) ---------------------------
    def source(self, key: PRNGKeyArray, t: Scalar, x: Vector) -> Scalar:
        """f(t, x, 0, 0): the generator at the zero solution (the only f-term of a level-0 Picard step)."""
        del key
        return self.nonlinearity(t, x, jnp.zeros((), x.dtype), jnp.zeros_like(x))

    def increment_inputs(self, t: Scalar, x: Vector):
        """What ``nonlinearity_increment`` needs at (t, x) that costs an evaluation (here nothing; for the law of
        defect û and σᵀ∇û). The estimators evaluate these for all their samples in one batch."""
        del t, x
        return None

    def nonlinearity_increment(self, t: Scalar, x: Vector, new: tuple, old: tuple | None, inputs=None) -> Scalar:
        """f(t, x, *new) − f(t, x, *old), with old = None meaning (0, 0); ``inputs``: ``increment_inputs(t, x)``."""
        del inputs
        if old is None:
            old = (jnp.zeros((), x.dtype), jnp.zeros_like(x))
        return self.nonlinearity(t, x, *new) - self.nonlinearity(t, x, *old)


class SemilinearPDE(AbstractSemilinearPDE):
    """A PDE from plain callables.

    Example:
        pde = scasml.SemilinearPDE(dim=10, horizon=1.0, drift=0.0, diffusion=2 ** 0.5,
                                   nonlinearity=lambda t, x, u, z: -0.5 * z @ z,
                                   terminal=lambda x: jnp.log(0.5 * (1 + x @ x)))
    Constant coefficients: ``drift`` a scalar (broadcast to μ·1) or a ``(d,)`` vector, ``diffusion`` a scalar,
    ``(d,)`` or ``(d, d)`` (defaults 0 and 1). State-dependent ones: ``dynamics=`` any ``AbstractDynamics``
    (``GeometricBrownianMotion``, ``OrnsteinUhlenbeck``, ``ItoDiffusion``) instead of drift/diffusion.
    Set ``linear=True`` when f ignores (u, z), so that ``FeynmanKac`` may be used; set ``gradient_quadratic=a``
    when f = a‖z‖² + terms affine in z (as in the example, a = −0.5), ``curved_in_value=True`` when f is curved
    in u and ``couples_value_and_gradient=True`` when ∂²f/∂u∂z ≠ 0 (e.g. u·Σz), so that ``MultilevelPicard`` can
    debias f (see those properties of ``AbstractSemilinearPDE``).
    """

    dim: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    dynamics: AbstractDynamics
    domain: AbstractDomain
    nonlinearity_fn: Callable = eqx.field(static=True)
    terminal_fn: Callable = eqx.field(static=True)
    exact_fn: Callable | None = eqx.field(static=True)
    linear: bool = eqx.field(static=True)
    quadratic: float | None = eqx.field(static=True)
    curved: bool = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)
    label: str = eqx.field(static=True)

    def __init__(
        self,
        *,
        dim: int,
        horizon: float,
        drift: Any = None,
        diffusion: Any = None,
        dynamics: AbstractDynamics | None = None,
        nonlinearity: Callable,
        terminal: Callable,
        exact: Callable | None = None,
        domain: AbstractDomain | None = None,
        linear: bool = False,
        gradient_quadratic: float | None = None,
        curved_in_value: bool = False,
        couples_value_and_gradient: bool = False,
        name: str = "custom",
    ):
        if not is_integer(dim) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim = int(dim)
        if not is_real(horizon):
            raise TypeError(f"horizon T must be a number, got {type(horizon).__name__}")
        self.horizon = float(horizon)
        self.dynamics = as_dynamics(dim, dynamics, drift, diffusion)
        for label, fn in (("nonlinearity", nonlinearity), ("terminal", terminal)):
            if not callable(fn):
                raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
        if exact is not None and not callable(exact):
            raise TypeError(f"exact must be callable or None, got {type(exact).__name__}")
        scalar, point = jax.ShapeDtypeStruct((), self.dtype), jax.ShapeDtypeStruct((dim,), self.dtype)
        _check_scalar_function(terminal, "terminal", f"g(x) with x of shape ({dim},)", point)
        signature = f"f(t, x, u, z) with t, u scalars and x, z of shape ({dim},)"
        _check_scalar_function(nonlinearity, "nonlinearity", signature, scalar, point, scalar, point)
        if exact is not None:
            _check_scalar_function(exact, "exact", f"u(t, x) with t scalar and x of shape ({dim},)", scalar, point)
        self.nonlinearity_fn = nonlinearity
        self.terminal_fn = terminal
        self.exact_fn = exact
        self.domain = Box(-1.0, 1.0) if domain is None else domain
        self.linear = bool(linear)
        if gradient_quadratic is not None and not (
            isinstance(gradient_quadratic, (int, float)) and not isinstance(gradient_quadratic, bool)
            and math.isfinite(gradient_quadratic)
        ):
            raise ValueError(f"gradient_quadratic must be None or a finite number, got {gradient_quadratic!r}")
        self.quadratic = None if gradient_quadratic is None else float(gradient_quadratic)
        for label, flag in (("curved_in_value", curved_in_value),
                            ("couples_value_and_gradient", couples_value_and_gradient)):
            if not isinstance(flag, bool):
                raise TypeError(f"{label} must be True or False, got {flag!r}")
        self.curved, self.coupled = curved_in_value, couples_value_and_gradient
        self.label = name

    def nonlinearity(self, t, x, u, z):
        return self.nonlinearity_fn(t, x, u, z)

    def terminal(self, x):
        return self.terminal_fn(x)

    def exact(self, t, x):
        if self.exact_fn is None:
            raise NotImplementedError("this SemilinearPDE was built without exact=")
        return self.exact_fn(t, x)

    @property
    def has_exact(self) -> bool:
        return self.exact_fn is not None

    @property
    def is_linear(self) -> bool:
        return self.linear

    @property
    def gradient_quadratic(self) -> float | None:
        return self.quadratic

    @property
    def curved_in_value(self) -> bool:
        return self.curved

    @property
    def couples_value_and_gradient(self) -> bool:
        return self.coupled

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self) -> str:  # in the constructor's words (the fields quadratic/curved/coupled/label differ)
        return (f"SemilinearPDE(name={self.label!r}, dim={self.dim}, horizon={self.horizon}, "
                f"dynamics={self.dynamics!r}, linear={self.linear}, gradient_quadratic={self.quadratic}, "
                f"curved_in_value={self.curved}, couples_value_and_gradient={self.coupled})")
