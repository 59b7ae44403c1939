"""The diffusion behind a PDE: dX_s = μ(s, X_s) ds + σ(s, X_s) dW_s in R^d (W a d-dimensional Brownian motion).

This module is the only place where paths X_s and Elworthy–Bismut–Li gradient weights are made. Every dynamics
answers one question (``path``): given a start (t, x), elapsed times 0 < τ_1 < … < τ_k and standard normal noise,
return the states X_{t+τ_j} along one path and the *normalised weights* ω_j (d,) such that, for any φ,

    σ(t, x)ᵀ ∇_x E[φ(X_{t+τ_j})] = E[φ(X_{t+τ_j}) · ω_j] / √τ_j          (z = σᵀ∇u, the convention of scasml).

The weight is returned times √τ so that it stays of order one as τ → 0 (for constant coefficients ω = N, the
standard normal of the step). The estimators multiply it by their own time weights.

Concrete dynamics (all final):
    ``ConstantCoefficients``  X_s = x + μτ + σW_τ (scalar, diagonal or full σ): exact.
    ``GeometricBrownianMotion``  dX_i = μ_i X_i ds + σ_i X_i dW_i, optionally correlated W: exact (log-normal).
    ``OrnsteinUhlenbeck``  dX = (a + BX) ds + σ dW: exact Gaussian transitions (matrix exponential).
    ``ItoDiffusion``  user callables μ(t, x), σ(t, x): Euler–Maruyama with ``steps`` steps per segment (weak order
        1) and the discrete tangent process J = ∂X/∂x for the weight (1/τ)·σ(t, x)ᵀ Σ_j (σ⁻¹(X_j) J_j)ᵀ ΔW_j.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._checks import as_count, is_count
from ._linalg import cholesky, cholesky_solve, solve

Scalar = Float[Array, ""]
Vector = Float[Array, " d"]


def _float_array(value: Any, label: str, dtype=None) -> Array:
    try:
        arr = jnp.asarray(value) if dtype is None else jnp.asarray(value, dtype)
    except Exception as err:
        raise TypeError(f"{label} must be array-like, got {type(value).__name__}") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float) if dtype is None else dtype)
    return arr


def _check_dim(dim) -> int:
    """``dim`` as a Python int (NumPy integers accepted); ValueError unless it is a positive integer."""
    dim = as_count(dim)
    if not is_count(dim):
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return dim


def _check_finite(label: str, value: Array) -> None:
    if not isinstance(value, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(value))):  # no XLA op
        raise ValueError(f"{label} must be finite, got {value}")


def _check_compact(label: str, value: Array, dim: int) -> None:
    if jnp.shape(value) not in ((), (dim,), (dim, dim)):
        raise ValueError(f"{label} must be a scalar, a vector of shape ({dim},) or a matrix of shape ({dim}, {dim}); "
                         f"got shape {jnp.shape(value)}")


def _vector(value: Any, label: str, dim: int, dtype=None) -> Array:
    """A scalar (broadcast) or a (d,) vector."""
    arr = _float_array(value, label, dtype)
    if arr.ndim == 0:
        arr = jnp.broadcast_to(arr, (dim,))
    if arr.shape != (dim,):
        raise ValueError(f"{label} must have shape ({dim},) or be a scalar; got shape {arr.shape}")
    _check_finite(label, arr)
    return arr


# ---- σ in compact form: () for σ·I, (d,) for diag(σ), (d, d) for a full matrix --------------------------------
def apply_sigma(sigma: Array, v: Vector) -> Vector:
    """σ v."""
    return sigma @ v if sigma.ndim == 2 else sigma * v


def apply_sigma_transpose(sigma: Array, v: Vector) -> Vector:
    """σᵀ v."""
    return sigma.T @ v if sigma.ndim == 2 else sigma * v


def solve_sigma_transpose(sigma: Array, v: Vector) -> Vector:
    """σ⁻ᵀ v = (σᵀ)⁻¹ v (not finite where σ is singular)."""
    return solve(sigma.T, v) if sigma.ndim == 2 else v / sigma


def diffusion_directions(sigma: Array, dim: int) -> Float[Array, "d d"]:
    """Rows σe_j for σ a scalar, a diagonal ``(d,)`` or a full ``(d, d)`` matrix."""
    if sigma.ndim == 2:
        return sigma.T
    if sigma.ndim == 1:
        return jnp.diag(sigma)
    return jnp.eye(dim, dtype=sigma.dtype) * sigma


def _increments(elapsed: Float[Array, " k"]) -> Float[Array, " k"]:
    return jnp.diff(elapsed, prepend=jnp.zeros((1,), elapsed.dtype))


def _brownian(elapsed: Float[Array, " k"], normals: Float[Array, "k d"]) -> Float[Array, "k d"]:
    """W at the elapsed times from one standard normal row per increment; for k = 1 exactly √τ·N."""
    if elapsed.shape[0] == 1:
        return jnp.sqrt(elapsed)[:, None] * normals
    return jnp.cumsum(jnp.sqrt(_increments(elapsed))[:, None] * normals, axis=0)


def _normalised(brownian: Float[Array, "k d"], normals: Float[Array, "k d"], elapsed) -> Float[Array, "k d"]:
    """W_τ/√τ: the weight of dynamics whose z-weight is ΔW/τ (for k = 1 exactly the normal row)."""
    if elapsed.shape[0] == 1:
        return normals
    return brownian / jnp.sqrt(elapsed)[:, None]


def _phi1(z: Array) -> Array:
    """(e^z − 1)/z, equal to 1 at z = 0 (stable near 0)."""
    small = jnp.abs(z) < 1e-4
    safe = jnp.where(small, jnp.ones_like(z), z)
    return jnp.where(small, 1 + z / 2 + z**2 / 6, jnp.expm1(safe) / safe)


def _positive_elapsed(elapsed):
    """Elapsed times floored at √tiny (1e-19 in float32): a sampled time t + U²Δ with U = 0 exactly (about once in
    10⁷ float32 draws of ``jax.random.uniform``) has τ = 0, where a transition's covariance vanishes and the
    weight is 0/0. The floor changes no other time."""
    return jnp.maximum(elapsed, jnp.sqrt(jnp.finfo(elapsed.dtype).tiny))


class AbstractDynamics(eqx.Module):
    """dX_s = μ(s, X_s) ds + σ(s, X_s) dW_s in R^d.

    ``path(t, x, elapsed, noise)`` returns the states X_{t+τ_j} (k, d) along one path and normalised
    Elworthy–Bismut–Li weights ω_j (k, d) with σ(t, x)ᵀ∇_x E[φ(X_{t+τ_j})] = E[φ(X_{t+τ_j})·ω_j]/√τ_j (for constant
    coefficients ω = N, the step's standard normal).

    ``drift(t, x)`` is μ (d,); ``diffusion(t, x)`` is σ in compact form: shape () for σ·I, (d,) for diag(σ) or
    (d, d). ``noise_rows`` standard normal rows of length d drive each segment of a path. ``weak_order`` is None
    for exact transitions, else the weak order of the scheme (its discretisation bias is O(steps^−order)).
    """

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def drift(self, t: Scalar, x: Vector) -> Vector:
        """μ(t, x), shape (d,)."""

    @abc.abstractmethod
    def diffusion(self, t: Scalar, x: Vector) -> Array:
        """σ(t, x) in compact form: shape (), (d,) or (d, d)."""

    @abc.abstractmethod
    def path(self, t: Scalar, x: Vector, elapsed: Float[Array, " k"],
             noise: Float[Array, "k rows d"]) -> tuple[Float[Array, "k d"], Float[Array, "k d"]]:
        """(X at t + elapsed_j along one path, normalised weights ω_j), for increasing elapsed > 0 and
        ``noise`` of shape (k, noise_rows, d)."""

    @abc.abstractmethod
    def parameters(self) -> dict:
        """JSON-serialisable description (recorded in checkpoints and run directories)."""

    @property
    @abc.abstractmethod
    def dtype(self):
        ...

    @property
    def noise_rows(self) -> int:
        """Standard normal rows (of length d) per path segment."""
        return 1

    @property
    def weak_order(self) -> float | None:
        """None: exact transitions; else the weak order of the discretisation."""
        return None

    @property
    def constant(self) -> bool:
        """True when μ and σ do not depend on (t, x)."""
        return False

    @property
    def brownian_transitions(self) -> bool:
        """True when ``sample(t, x, τ, n)`` is X_{t+τ} driven by W_τ = √τ·n alone, with ω = n: then the point of a
        path at an earlier time s follows from the Brownian bridge of W, and the z-weight of its step to t + τ is
        (W_τ − W_{s−t})/(t + τ − s) (``MultilevelPicard(next_correction=K)`` needs this)."""
        return False

    def sample(self, t: Scalar, x: Vector, elapsed: Scalar, noise: Float[Array, "rows d"]) -> tuple[Vector, Vector]:
        """(X_{t+τ}, ω) for one elapsed time τ > 0 (``path`` with k = 1)."""
        points, weights = self.path(t, x, jnp.reshape(elapsed, (1,)), noise[None])
        return points[0], weights[0]

    def sigma_transpose(self, t: Scalar, x: Vector, v: Vector) -> Vector:
        """σ(t, x)ᵀ v (turns ∇u into z)."""
        return apply_sigma_transpose(self.diffusion(t, x), v)

    def diffuse(self, t: Scalar, x: Vector, v: Vector) -> Vector:
        """σ(t, x) v."""
        return apply_sigma(self.diffusion(t, x), v)

    def diffusion_directions(self, t: Scalar, x: Vector) -> Float[Array, "d d"]:
        """Rows σ(t, x)e_j, so that Tr(σσᵀH) = Σ_j (σe_j)ᵀ H (σe_j)."""
        return diffusion_directions(self.diffusion(t, x), self.dim)


class ConstantCoefficients(AbstractDynamics):
    """X_s = x + μ(s − t) + σ(W_s − W_t): constant drift μ (scalar or (d,)) and diffusion σ (scalar, (d,) or
    (d, d)). Exact; ω = W_τ/√τ (for one time, the normal row itself)."""

    dim: int = eqx.field(static=True)
    mu: Float[Array, " d"]
    sigma: Array

    def __init__(self, dim: int, drift: Any = 0.0, diffusion: Any = 1.0, dtype=None):
        self.dim = dim = _check_dim(dim)
        self.mu = _vector(drift, "drift μ", dim, dtype)
        self.sigma = _float_array(diffusion, "diffusion σ", self.mu.dtype)
        _check_compact("diffusion σ", self.sigma, dim)
        _check_finite("diffusion σ", self.sigma)

    def drift(self, t, x):
        return self.mu.astype(x.dtype)

    def diffusion(self, t, x):
        return self.sigma.astype(x.dtype)

    def path(self, t, x, elapsed, noise):
        normals = noise[:, 0]
        w = _brownian(elapsed, normals)
        points = x[None] + self.mu[None] * elapsed[:, None] + jax.vmap(lambda v: apply_sigma(self.sigma, v))(w)
        return points, _normalised(w, normals, elapsed)

    @property
    def dtype(self):
        return self.mu.dtype

    @property
    def constant(self):
        return True

    @property
    def brownian_transitions(self):
        return True

    def parameters(self):
        return {"kind": "constant", "drift": np.asarray(self.mu).tolist(), "diffusion": np.asarray(self.sigma).tolist()}


class GeometricBrownianMotion(AbstractDynamics):
    """dX_i = μ_i X_i ds + σ_i X_i dW_i with corr(dW_i, dW_j) = ρ_ij (``correlation``; default independent).

    σ(x) = diag(σ·x)·L with LLᵀ = ρ, so z = σ(x)ᵀ∇u = Lᵀ diag(σ·x)∇u. Simulated exactly:
    X_i(s) = x_i·exp((μ_i − σ_i²/2)τ + σ_i(L B_τ)_i) for a standard Brownian motion B, and the weight is
    ω = B_τ/√τ, as for constant coefficients (Gaussian integration by parts in log coordinates; no σ⁻¹).
    """

    dim: int = eqx.field(static=True)
    mu: Float[Array, " d"]
    volatility: Float[Array, " d"]
    cholesky: Array | None

    def __init__(self, dim: int, drift: Any = 0.0, volatility: Any = 1.0, correlation: Any = None, dtype=None):
        self.dim = dim = _check_dim(dim)
        self.mu = _vector(drift, "GBM drift μ", dim, dtype)
        self.volatility = _vector(volatility, "GBM volatility σ", dim, self.mu.dtype)
        if correlation is None:
            self.cholesky = None
            return
        rho = np.asarray(correlation, dtype=np.float64)
        if rho.shape != (dim, dim):
            raise ValueError(f"GBM correlation must be a ({dim}, {dim}) matrix, got shape {rho.shape}")
        if not np.all(np.isfinite(rho)) or not np.allclose(rho, rho.T, atol=1e-10) or not np.allclose(
                np.diag(rho), 1.0, atol=1e-10):
            raise ValueError("GBM correlation must be a finite symmetric matrix with unit diagonal")
        try:
            factor = np.linalg.cholesky(rho)
        except np.linalg.LinAlgError:
            raise ValueError("GBM correlation must be positive definite (its Cholesky factorisation failed)") from None
        self.cholesky = jnp.asarray(factor, self.mu.dtype)

    def drift(self, t, x):
        return self.mu.astype(x.dtype) * x

    def diffusion(self, t, x):
        scale = (self.volatility * x).astype(x.dtype)
        return scale if self.cholesky is None else scale[:, None] * self.cholesky.astype(x.dtype)

    def path(self, t, x, elapsed, noise):
        normals = noise[:, 0]
        b = _brownian(elapsed, normals)
        w = b if self.cholesky is None else b @ self.cholesky.T
        log_growth = (self.mu - 0.5 * self.volatility**2)[None] * elapsed[:, None] + self.volatility[None] * w
        return x[None] * jnp.exp(log_growth), _normalised(b, normals, elapsed)

    @property
    def dtype(self):
        return self.mu.dtype

    @property
    def brownian_transitions(self):
        return True

    def parameters(self):
        return {"kind": "gbm", "drift": np.asarray(self.mu).tolist(),
                "volatility": np.asarray(self.volatility).tolist(),
                "correlation": None if self.cholesky is None else np.asarray(self.cholesky @ self.cholesky.T).tolist()}


class OrnsteinUhlenbeck(AbstractDynamics):
    """dX = (a + BX) ds + σ dW with constant a (scalar or (d,)), B (scalar, (d,) diagonal or (d, d)) and a
    non-singular σ (scalar, (d,) or (d, d)). Exact Gaussian transitions:

        X_{t+τ} ~ N(m_τ, Σ_τ),   m_τ = e^{Bτ}x + ∫_0^τ e^{Br}a dr,   Σ_τ = ∫_0^τ e^{Br}σσᵀe^{Bᵀr} dr,

    and, by Gaussian integration by parts, σᵀ∇_x E[φ(X_τ)] = E[φ(X_τ)·σᵀe^{Bᵀτ}Σ_τ⁻¹(X_τ − m_τ)]. With B and σ
    both diagonal everything is per coordinate (closed form, O(d)). Otherwise B must be diagonalizable,
    B = V diag(λ) V⁻¹ (computed once, in float64, at construction; refused when V is ill-conditioned): then
    e^{Bτ} = V e^{λτ} V⁻¹ and Σ_τ = V (C ∘ Φ_τ) V^H with C = V⁻¹σσᵀV^{−H}, Φ_τ,ij = (e^{(λ_i+λ̄_j)τ} − 1)/(λ_i+λ̄_j),
    so that each transition costs a few (d, d) products and one Cholesky factorisation (O(d³) per sample).
    """

    dim: int = eqx.field(static=True)
    offset: Float[Array, " d"]
    matrix: Array
    sigma: Array
    eigenvalues: Array | None  # (d,) complex, for a full B or σ; None when both are diagonal
    eigenvectors: Array | None  # V (d, d) complex
    inverse_eigenvectors: Array | None  # V⁻¹ (d, d) complex
    noise_in_eigenbasis: Array | None  # C = V⁻¹σσᵀV^{−H} (d, d) complex

    MAX_CONDITION = 1e6  # of the eigenvector matrix V: beyond it e^{Bτ} and Σ_τ lose too many digits

    def __init__(self, dim: int, offset: Any = 0.0, matrix: Any = -1.0, diffusion: Any = 1.0, dtype=None):
        self.dim = dim = _check_dim(dim)
        self.offset = _vector(offset, "OU offset a", dim, dtype)
        self.matrix = _float_array(matrix, "OU matrix B", self.offset.dtype)
        self.sigma = _float_array(diffusion, "OU diffusion σ", self.offset.dtype)
        for label, value in (("OU matrix B", self.matrix), ("OU diffusion σ", self.sigma)):
            _check_compact(label, value, dim)
            _check_finite(label, value)
        sigma = np.asarray(self.sigma, np.float64)
        singular = (np.linalg.matrix_rank(sigma) < dim) if sigma.ndim == 2 else bool(np.any(sigma == 0))
        if singular:
            raise ValueError("OU diffusion σ must be non-singular: the gradient weight uses the inverse of the "
                             "transition covariance")
        if self.matrix.ndim < 2 and self.sigma.ndim < 2:
            self.eigenvalues = self.eigenvectors = self.inverse_eigenvectors = self.noise_in_eigenbasis = None
            return
        as_matrix = lambda m: m if m.ndim == 2 else np.diag(np.broadcast_to(m, (dim,)))  # compact form → (d, d)
        b, s = as_matrix(np.asarray(self.matrix, np.float64)), as_matrix(sigma)
        lam, vec = np.linalg.eig(b)
        condition = np.linalg.cond(vec)
        if not np.isfinite(condition) or condition > self.MAX_CONDITION:
            raise ValueError(f"OU matrix B must be diagonalizable with well-conditioned eigenvectors (condition "
                             f"number {condition:.3g} > {self.MAX_CONDITION:g}); a defective B is not supported")
        inv = np.linalg.inv(vec)
        complex_dtype = jnp.result_type(self.offset.dtype, jnp.complex64)
        self.eigenvalues = jnp.asarray(lam, complex_dtype)
        self.eigenvectors = jnp.asarray(vec, complex_dtype)
        self.inverse_eigenvectors = jnp.asarray(inv, complex_dtype)
        self.noise_in_eigenbasis = jnp.asarray(inv @ s @ s.T @ inv.conj().T, complex_dtype)

    @property
    def _diagonal(self) -> bool:
        return self.eigenvalues is None

    def drift(self, t, x):
        return (self.offset + apply_sigma(self.matrix, x)).astype(x.dtype)

    def diffusion(self, t, x):
        return self.sigma.astype(x.dtype)

    def _transition(self, tau):
        """(e^{Bτ}, ∫_0^τ e^{Br}a dr, Σ_τ): per coordinate, each (d,), when B and σ are diagonal; else (d, d),
        (d,), (d, d) from the eigendecomposition of B (pure products, no matrix exponential in the program)."""
        if self._diagonal:
            b = jnp.broadcast_to(self.matrix, (self.dim,))
            sigma = jnp.broadcast_to(self.sigma, (self.dim,))
            return jnp.exp(b * tau), tau * _phi1(b * tau) * self.offset, sigma**2 * tau * _phi1(2 * b * tau)
        lam, vec, inv = self.eigenvalues, self.eigenvectors, self.inverse_eigenvectors
        tau = tau.astype(lam.dtype)
        exp_b = jnp.real((vec * jnp.exp(lam * tau)[None]) @ inv)
        shift = jnp.real(vec @ (tau * _phi1(lam * tau) * (inv @ self.offset.astype(lam.dtype))))
        pair = lam[:, None] + jnp.conj(lam)[None, :]
        cov = jnp.real(vec @ (self.noise_in_eigenbasis * tau * _phi1(pair * tau)) @ jnp.conj(vec).T)
        return exp_b, shift, 0.5 * (cov + cov.T)

    def path(self, t, x, elapsed, noise):
        normals = noise[:, 0]
        elapsed = _positive_elapsed(elapsed)  # τ = 0: a zero covariance, whose weight is 0/0
        steps = _increments(elapsed)
        if self._diagonal:
            def step(state, h, n):
                e, shift, var = self._transition(h)
                return e * state + shift + jnp.sqrt(var) * n

            def weight(tau, point):
                e, shift, var = self._transition(tau)
                sigma = jnp.broadcast_to(self.sigma, (self.dim,))
                return jnp.sqrt(tau) * sigma * e * (point - e * x - shift) / var
        else:
            def step(state, h, n):
                exp_b, shift, cov = self._transition(h)
                return exp_b @ state + shift + cholesky(cov) @ n

            def weight(tau, point):
                exp_b, shift, cov = self._transition(tau)
                solved = cholesky_solve(cholesky(cov), point - exp_b @ x - shift)
                return jnp.sqrt(tau) * apply_sigma_transpose(self.sigma, exp_b.T @ solved)

        points, state = [], x
        for j in range(elapsed.shape[0]):  # k is static and small (a path's segments); unrolled, no loop primitive
            state = step(state, steps[j], normals[j])
            points.append(state)
        points = jnp.stack(points)
        return points, jax.vmap(weight)(elapsed, points)

    @property
    def dtype(self):
        return self.offset.dtype

    def parameters(self):
        return {"kind": "ornstein_uhlenbeck", "offset": np.asarray(self.offset).tolist(),
                "matrix": np.asarray(self.matrix).tolist(), "diffusion": np.asarray(self.sigma).tolist()}


class ItoDiffusion(AbstractDynamics):
    """A general Itô diffusion from callables ``drift(t, x) -> (d,)`` and ``diffusion(t, x) -> σ`` (shape (),
    (d,) or (d, d); σ must be invertible where the paths go), simulated by Euler–Maruyama with ``steps`` equal
    steps per path segment:

        X_{j+1} = X_j + μ(s_j, X_j)h + σ(s_j, X_j)√h N_j,

    with the Elworthy–Bismut–Li weight of the discrete scheme, (1/τ)·σ(t, x)ᵀ Σ_j J_jᵀσ(s_j, X_j)⁻ᵀ√h N_j, where
    J_j = ∂X_j/∂x is the scheme's tangent (first-variation) process (computed by one reverse-mode pass, not as a
    d × d matrix). Weak order 1: values and gradients carry a bias O(1/steps); compare ``steps`` and 2·``steps``
    to see it. A singular σ on a path makes that estimate non-finite (flagged by ``solve``/``calibrate``).
    """

    dim: int = eqx.field(static=True)
    drift_fn: Callable = eqx.field(static=True)
    diffusion_fn: Callable = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    float_dtype: Any = eqx.field(static=True)
    label: str = eqx.field(static=True)

    def __init__(self, dim: int, drift: Callable, diffusion: Callable, steps: int = 16, dtype=None,
                 name: str = "ito"):
        dim = _check_dim(dim)
        steps = as_count(steps)
        if not is_count(steps):
            raise ValueError(f"ItoDiffusion steps must be a positive integer, got {steps!r}")
        for label, fn in (("drift", drift), ("diffusion", diffusion)):
            if not callable(fn):
                raise TypeError(f"ItoDiffusion {label} must be a callable (t, x) -> array, got {type(fn).__name__}")
        self.dim, self.steps, self.label = dim, steps, str(name)
        self.float_dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
        self.drift_fn, self.diffusion_fn = drift, diffusion
        t0, x0 = jax.ShapeDtypeStruct((), self.float_dtype), jax.ShapeDtypeStruct((dim,), self.float_dtype)
        for label, fn, shapes in (("drift", drift, ((dim,),)), ("diffusion", diffusion, ((), (dim,), (dim, dim)))):
            try:
                out = jax.eval_shape(fn, t0, x0)
            except Exception as err:
                raise ValueError(f"ItoDiffusion {label}(t, x) cannot be evaluated under JAX tracing with t scalar and "
                                 f"x of shape ({dim},): {type(err).__name__}: {str(err).splitlines()[0]}") from err
            if getattr(out, "shape", None) not in shapes or not jnp.issubdtype(out.dtype, jnp.floating):
                raise ValueError(f"ItoDiffusion {label}(t, x) must return a floating array of shape "
                                 f"{' or '.join(map(str, shapes))}; it returned {getattr(out, 'shape', out)}")

    def drift(self, t, x):
        return self.drift_fn(t, x)

    def diffusion(self, t, x):
        return self.diffusion_fn(t, x)

    @property
    def noise_rows(self):
        return self.steps

    @property
    def weak_order(self):
        return 1.0

    @property
    def dtype(self):
        return self.float_dtype

    def path(self, t, x, elapsed, noise):
        k, dim = elapsed.shape[0], self.dim
        elapsed = _positive_elapsed(elapsed)
        h = jnp.repeat(_increments(elapsed) / self.steps, self.steps)  # (k·steps,)
        times = t + jnp.concatenate([jnp.zeros((1,), h.dtype), jnp.cumsum(h)[:-1]])
        normals = noise.reshape(k * self.steps, dim)

        def scheme(start):
            def step(state, inputs):
                s, hj, n = inputs
                dw = jnp.sqrt(hj) * n
                sigma = self.diffusion_fn(s, state)
                a = jax.lax.stop_gradient(solve_sigma_transpose(sigma, dw))  # σ(s_j, X_j)⁻ᵀΔW_j, constant for the VJP
                new = state + self.drift_fn(s, state) * hj + apply_sigma(sigma, dw)
                return new, (new, state @ a)

            _, (states, pairings) = jax.lax.scan(step, start, (times, h, normals))
            return states[self.steps - 1 :: self.steps], pairings  # X at the k requested times; X_j·a_j

        (points, pairings), pullback = jax.vjp(scheme, x)
        # Σ_{j < steps·i} J_jᵀ a_j for each requested time i: the pullback of the partial sums of X_j·a_j
        owners = jnp.arange(k * self.steps) // self.steps
        masks = (owners[None, :] <= jnp.arange(k)[:, None]).astype(pairings.dtype)  # (k, k·steps)
        sums = jax.vmap(lambda m: pullback((jnp.zeros_like(points), m))[0])(masks)  # (k, d)
        sigma0 = self.diffusion_fn(t, x)
        weights = jax.vmap(lambda s, tau: apply_sigma_transpose(sigma0, s) / jnp.sqrt(tau))(sums, elapsed)
        return points, weights

    def parameters(self):
        return {"kind": "ito", "name": self.label, "steps": self.steps}


def as_dynamics(dim: int, dynamics: AbstractDynamics | None, drift: Any, diffusion: Any,
                dtype=None) -> AbstractDynamics:
    """``dynamics`` if given (then ``drift``/``diffusion`` must be None), else ``ConstantCoefficients``."""
    if dynamics is None:
        return ConstantCoefficients(dim, 0.0 if drift is None else drift, 1.0 if diffusion is None else diffusion,
                                    dtype)
    if not isinstance(dynamics, AbstractDynamics):
        raise TypeError(f"dynamics must be an AbstractDynamics (e.g. scasml.GeometricBrownianMotion), got "
                        f"{type(dynamics).__name__}")
    if drift is not None or diffusion is not None:
        raise ValueError("give either dynamics= or constant drift=/diffusion=, not both")
    if dynamics.dim != dim:
        raise ValueError(f"dynamics has dim={dynamics.dim}, the PDE dim={dim}")
    return dynamics


__all__ = [
    "AbstractDynamics",
    "ConstantCoefficients",
    "GeometricBrownianMotion",
    "ItoDiffusion",
    "OrnsteinUhlenbeck",
]
