"""Gaussian-process (kernel collocation) surrogate for semilinear parabolic PDEs.

What is implemented (and what is not). The surrogate is a kernel expansion with a constant mean,

    û(t, x) = c + Σ_j α_j k((t, x), (t_j, x_j)),      k = ψ(ρ),  ρ = (t − t')²/ℓ_t² + ‖x − x'‖²/ℓ_x²,

whose centres (t_j, x_j) are the collocation points themselves: ``interior`` points drawn by
``pde.sample_domain`` and ``terminal`` points (T, x_b) with x_b from ``pde.sample_terminal``. The constant c is
the mean of g over the terminal points (the prior mean). The weights α minimise the Tikhonov-regularised
least-squares collocation objective

    (1/N_i) Σ_i ε(t_i, x_i)²  +  (w/N_b) Σ_b (û(T, x_b) − g(x_b))²  +  λ αᵀ(K + δI)α,

where ε = ∂_t û + μ·∇û + ½Tr(σσᵀ∇²û) + f(t, x, û, σᵀ∇û) is the PDE residual, K the kernel matrix of the centres
(αᵀKα is the RKHS norm of û − c, i.e. the Gaussian-process prior), λ = ``regularization`` × the mean diagonal of
the data term and δ a small jitter. The nonlinearity is handled by damped Gauss–Newton: at the current û the generator
is linearised, f(û + v, ẑ + w) ≈ f(û, ẑ) + f_u v + f_z·w, which turns ε into an affine function of α; each
iteration solves the resulting regularised linear least-squares problem (see "Linear algebra"), starting from
û = c. Derivatives of the kernel at the collocation points are closed-form (no autodiff inside the solver). The
fitted surrogate is an ordinary JAX function, so values, gradients and residuals also come from autodiff as for
any surrogate; it additionally offers closed forms ``hessian_quadratic_sum`` (the trace term, used by
``scasml.residual`` when present) and ``residual_parts``.

This is least-squares kernel (RBF/Kansa-type) collocation with an RKHS penalty, i.e. the MAP estimate of a GP
prior given noisy residual observations, with kernel-value features only. It is *not* the full GP-PDE method of
Chen, Hosseini, Owhadi & Stuart (2021), whose representer also contains the PDE operator applied to the kernel
(derivative features, fourth kernel derivatives): that would cost O(d²) more per matrix entry.

Lengthscale rule (``lengthscale=None``): the median heuristic, ℓ_x = median pairwise distance of the spatial
collocation points ≈ √(d/6)·(box width) for a box, times ``lengthscale_factor``; ℓ_t = ℓ_x (time and space
are scaled alike). ``select_lengthscale`` instead picks the factor that minimises the residual and terminal
mismatch on fresh validation points (it never looks at an exact solution).

Linear algebra: each Gauss–Newton step solves min ‖Dα − y‖² + λαᵀ(K + δI)α, by Cholesky on the normal equations
(``solver="cholesky"``, the default in float64: fast) or by a QR factorisation of the stacked matrix
[D; √λ Lᵀ] with K + δI = LLᵀ (``solver="qr"``, the default in float32: it does not square the condition number).
Defaults: λ = 1e-8 × mean diag(DᵀD), δ = 1e-6 in float64; λ = 1e-5 ×, δ = 1e-3 in float32. The solver works in
the PDE's dtype (or ``dtype=``, to which the PDE's arrays are cast); float64 needs
``jax.config.update("jax_enable_x64", True)``, which the library never switches on itself.

Cost: O(n·m·d) to build the kernel blocks, O(m³) per Gauss–Newton step (n = m = interior + terminal). VB at
d = 20 with 2,000 points: ≈ 20 s on 2 CPU cores in float64; see experiments/gp_results.md.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_key, is_finite_real, is_integer
from ._base import AbstractSurrogate
from ._checkpoint import CheckpointError, register_architecture
from ._pinn import parameter_dtype

# ------------------------------------------------------------------------------------------------ kernels


class AbstractKernel(eqx.Module):
    """A stationary isotropic kernel k = ψ(ρ) of the squared scaled distance ρ ≥ 0.

    Subclasses give ``profile`` ψ and its first two derivatives in ρ (closed form, finite at ρ = 0), which the
    collocation solver needs for ∂_t k, ∇k and Tr(A∇²k).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def profile(self, rho: Array) -> Array:
        """ψ(ρ), differentiable to second order (also at ρ = 0)."""

    @abc.abstractmethod
    def derivatives(self, rho: Array) -> tuple[Array, Array, Array]:
        """(ψ, ψ', ψ'') at ρ."""


class GaussianKernel(AbstractKernel):
    """Squared exponential k = exp(−ρ/2) (infinitely smooth)."""

    name: ClassVar[str] = "gaussian"

    def profile(self, rho):
        return jnp.exp(-0.5 * rho)

    def derivatives(self, rho):
        psi = jnp.exp(-0.5 * rho)
        return psi, -0.5 * psi, 0.25 * psi


_S5 = math.sqrt(5.0)


def _root(rho):
    return jnp.sqrt(jnp.maximum(rho, 0.0))


@jax.custom_jvp
def _matern52(rho):
    r = _root(rho)
    return (1.0 + _S5 * r + (5.0 / 3.0) * rho) * jnp.exp(-_S5 * r)


@jax.custom_jvp
def _matern52_d1(rho):
    r = _root(rho)
    return -(5.0 / 6.0) * (1.0 + _S5 * r) * jnp.exp(-_S5 * r)


def _matern52_d2(rho):
    # third derivatives of û are never needed; the sqrt's derivative at ρ = 0 is avoided by the custom rules.
    return (25.0 / 12.0) * jnp.exp(-_S5 * _root(rho))


@_matern52.defjvp
def _matern52_jvp(primals, tangents):
    (rho,), (drho,) = primals, tangents
    return _matern52(rho), _matern52_d1(rho) * drho


@_matern52_d1.defjvp
def _matern52_d1_jvp(primals, tangents):
    (rho,), (drho,) = primals, tangents
    return _matern52_d1(rho), _matern52_d2(rho) * drho


class Matern52Kernel(AbstractKernel):
    """Matérn ν = 5/2: k = (1 + √5 r + 5r²/3) e^(−√5 r), r = √ρ (twice differentiable, as a residual needs)."""

    name: ClassVar[str] = "matern52"

    def profile(self, rho):
        return _matern52(rho)

    def derivatives(self, rho):
        return _matern52(rho), _matern52_d1(rho), _matern52_d2(rho)


KERNELS: dict[str, type[AbstractKernel]] = {"gaussian": GaussianKernel, "matern52": Matern52Kernel}


def _as_kernel(kernel) -> AbstractKernel:
    if isinstance(kernel, AbstractKernel):
        return kernel
    if isinstance(kernel, str) and kernel.lower() in KERNELS:
        return KERNELS[kernel.lower()]()
    raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(KERNELS)} or pass an AbstractKernel")


# ------------------------------------------------------------------------------------------------ surrogate


class GPSurrogate(AbstractSurrogate):
    """û(t, x) = c + Σ_j α_j ψ((t − t_j)²/ℓ_t² + ‖x − x_j‖²/ℓ_x²). Build it with ``fit_gp``.

    Evaluation is done in the dtype of the stored weights (float64 when fitted in float64) and returned in the
    dtype of ``x`` (the weights' dtype for integer ``x``), so a float64 fit can be used with a float32 PDE and vice
    versa.
    """

    centres_t: Float[Array, " m"]
    centres_x: Float[Array, "m d"]
    weights: Float[Array, " m"]
    mean: Float[Array, ""]
    lengthscale: Float[Array, " 2"]  # (ℓ_t, ℓ_x)
    kernel: AbstractKernel
    dim: int = eqx.field(static=True)
    horizon: float = eqx.field(static=True)

    def __check_init__(self):
        m = self.weights.shape[0]
        if self.centres_t.shape != (m,) or self.centres_x.shape != (m, self.dim):
            raise ValueError(
                f"GPSurrogate: centres must have shapes ({m},) and ({m}, {self.dim}); "
                f"got {self.centres_t.shape} and {self.centres_x.shape}"
            )

    @property
    def dtype(self):
        return self.weights.dtype

    @property
    def n_centres(self) -> int:
        return self.weights.shape[0]

    def _out_dtype(self, x):
        """x's dtype when floating; the weights' dtype for integer x (which would truncate û)."""
        dtype = jnp.result_type(x)
        return dtype if jnp.issubdtype(dtype, jnp.floating) else self.dtype

    def __call__(self, t, x):
        out_dtype = self._out_dtype(x)
        t = jnp.asarray(t).astype(self.dtype)
        x = jnp.asarray(x).astype(self.dtype)
        lt, lx = self.lengthscale[0], self.lengthscale[1]
        rho = ((t - self.centres_t) / lt) ** 2 + jnp.sum(((x[None, :] - self.centres_x) / lx) ** 2, axis=-1)
        return (self.mean + self.weights @ self.kernel.profile(rho)).astype(out_dtype)

    def hessian_quadratic_sum(self, t, x, directions):
        """Σ_k v_kᵀ ∇²_x û(t, x) v_k over the rows v_k of ``directions``, in closed form:
        Σ_j α_j [4ψ''(ρ_j) ‖V(x − x_j)‖²/ℓ_x⁴ + 2ψ'(ρ_j) ‖V‖²_F/ℓ_x²]  (one (m, d)×(d, k) product, no autodiff).
        ``scasml`` uses it for the trace term of the residual when present."""
        out_dtype = self._out_dtype(x)
        t = jnp.asarray(t).astype(self.dtype)
        x = jnp.asarray(x).astype(self.dtype)
        directions = jnp.asarray(directions).astype(self.dtype)
        lx = self.lengthscale[1]
        dx = x[None, :] - self.centres_x
        rho = ((t - self.centres_t) / self.lengthscale[0]) ** 2 + jnp.sum((dx / lx) ** 2, axis=-1)
        _, d1, d2 = self.kernel.derivatives(rho)
        quad = jnp.sum((dx @ directions.T) ** 2, axis=-1)
        total = self.weights @ (4.0 * d2 * quad / lx**4 + 2.0 * d1 * jnp.sum(directions**2) / lx**2)
        return total.astype(out_dtype)

    def residual_parts(self, pde, t, x):
        """û, ∇û and the residual ε at one point in closed form, O(m·d) (autodiff with the exact trace costs
        O(m·d²)). Same numbers as ``scasml._derivatives.residual_parts(pde, self, t, x)`` up to rounding."""
        from .._derivatives import ResidualParts

        out_dtype = self._out_dtype(x)
        t = jnp.asarray(t).astype(self.dtype)
        x = jnp.asarray(x).astype(self.dtype)
        lt, lx = self.lengthscale[0], self.lengthscale[1]
        dt, dx = t - self.centres_t, x[None, :] - self.centres_x
        rho = (dt / lt) ** 2 + jnp.sum((dx / lx) ** 2, axis=-1)
        psi, d1, d2 = self.kernel.derivatives(rho)
        directions = pde.dynamics.diffusion_directions(t.astype(out_dtype), x.astype(out_dtype)).astype(self.dtype)
        quad = jnp.sum((dx @ directions.T) ** 2, axis=-1)
        trace = self.weights @ (4.0 * d2 * quad / lx**4 + 2.0 * d1 * jnp.sum(directions**2) / lx**2)
        value = self.mean + self.weights @ psi
        time_derivative = self.weights @ (2.0 * d1 * dt / lt**2)
        grad = ((2.0 / lx**2) * (self.weights * d1)) @ dx
        value, grad = value.astype(out_dtype), grad.astype(out_dtype)
        t_out, x_out = t.astype(out_dtype), x.astype(out_dtype)
        drift = pde.dynamics.drift(t_out, x_out).astype(out_dtype)
        eps = (time_derivative + 0.5 * trace).astype(out_dtype) + drift @ grad
        eps = eps + pde.nonlinearity(t_out, x_out, value, pde.dynamics.sigma_transpose(t_out, x_out, grad))
        return ResidualParts(value, grad, eps)

    def architecture(self) -> dict:
        """What a checkpoint records; refused (TypeError) for a kernel that ``load`` would not rebuild by name."""
        if KERNELS.get(self.kernel.name) is not type(self.kernel):
            raise TypeError(
                f"a GPSurrogate with kernel {type(self.kernel).__name__} (name {self.kernel.name!r}) cannot be saved: "
                f"a checkpoint records the kernel by name and rebuilds only the built-in kernels {sorted(KERNELS)}, "
                "so it would load as another kernel; fit with a built-in kernel to save the surrogate"
            )
        return {
            "kind": "gp",
            "dim": self.dim,
            "horizon": self.horizon,
            "kernel": self.kernel.name,
            "centres": self.n_centres,
        }


def _build_gp(arch: dict, pde, dtype) -> GPSurrogate:
    if dtype is None:
        raise CheckpointError("a GP checkpoint must store all arrays in one floating dtype")
    if jnp.dtype(dtype).itemsize == 8 and not jax.config.jax_enable_x64:
        raise CheckpointError(
            "this GP surrogate was saved in float64: enable it before loading with "
            'jax.config.update("jax_enable_x64", True)'
        )
    m, d = int(arch["centres"]), int(arch["dim"])
    z = lambda *shape: jnp.zeros(shape, dtype)
    return GPSurrogate(z(m), z(m, d), z(m), z(), z(2), _as_kernel(arch["kernel"]), d, float(arch["horizon"]))


register_architecture("gp", _build_gp)


# ------------------------------------------------------------------------------------------------ solver


@dataclasses.dataclass(frozen=True)
class GPFitLog:
    """Diagnostics of ``fit_gp``: RMS collocation residual and terminal mismatch before each Gauss–Newton step
    (and after the last), relative step sizes, accepted damping factors τ (0: no decrease found, the iteration
    stopped), the lengthscales, the relative λ and the wall time (compilation included)."""

    residual_rms: np.ndarray
    terminal_rms: np.ndarray
    step: np.ndarray
    damping: np.ndarray
    objective: np.ndarray  # (iterations, 2): the regularised objective before and after each step (same λ)
    lengthscale: tuple[float, float]
    regularization: float
    interior: int
    terminal: int
    kernel: str
    dtype: str
    seconds: float

    def summary(self) -> dict:
        return {
            "kernel": self.kernel,
            "interior": self.interior,
            "terminal": self.terminal,
            "lengthscale": [round(v, 6) for v in self.lengthscale],
            "iterations": int(len(self.step)),
            "final_residual_rms": float(self.residual_rms[-1]),
            "final_terminal_rms": float(self.terminal_rms[-1]),
            "dtype": self.dtype,
            "seconds": round(self.seconds, 3),
        }


def median_lengthscale(x: Array, max_points: int = 1000) -> float:
    """Median pairwise Euclidean distance of (up to ``max_points`` of) the rows of x: the median heuristic."""
    x = np.asarray(x, dtype=np.float64)[:max_points]
    sq = np.sum(x**2, axis=1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(x.shape[0], k=1)
    return float(np.sqrt(np.median(dist2[iu])))


def _finite(owner: str, label: str, value, positive: bool = False) -> float:
    """``value`` as a float, refused (ValueError) unless it is a finite real number ≥ 0 (> 0 when ``positive``)."""
    number = float(value) if is_finite_real(value) else None
    if number is None or number < 0 or (positive and number == 0):
        raise ValueError(f"{owner}: {label} must be a finite number {'> 0' if positive else '≥ 0'}, got {value!r}")
    return number


def _cast_pde(pde, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, pde)


class _Blocks(eqx.Module):
    """Kernel quantities between all collocation rows and all centres (fixed across Gauss–Newton steps)."""

    value: Array  # K_ij = ψ(ρ_ij)                                  (n, m)
    linear: Array  # ∂_t k + μ·∇k + ½ Tr(σσᵀ∇²k) at row i, centre j  (n, m)
    slope: Array  # 2ψ'(ρ_ij)/ℓ_x², so that ∇_x k = slope · (x_i − x_j)  (n, m)


def _blocks(pde, kernel, rows_t, rows_x, cen_t, cen_x, lt, lx, batch_size=64) -> _Blocks:
    def row(ti, xi):
        directions = pde.dynamics.diffusion_directions(ti, xi)  # rows σ(t_i, x_i)e_j
        trace_a = jnp.sum(directions**2)
        dt = ti - cen_t
        dx = xi[None, :] - cen_x
        rho = (dt / lt) ** 2 + jnp.sum((dx / lx) ** 2, axis=-1)
        quad = jnp.sum((dx @ directions.T) ** 2, axis=-1)  # ‖σᵀΔx‖² = Δxᵀσσᵀ Δx
        psi, d1, d2 = kernel.derivatives(rho)
        slope = 2.0 * d1 / lx**2
        trace = 4.0 * d2 * quad / lx**4 + 2.0 * d1 * trace_a / lx**2
        linear = 2.0 * d1 * dt / lt**2 + slope * (dx @ pde.dynamics.drift(ti, xi)) + 0.5 * trace
        return psi, linear, slope

    value, linear, slope = jax.lax.map(lambda a: row(*a), (rows_t, rows_x), batch_size=batch_size)
    return _Blocks(value, linear, slope)


@eqx.filter_jit
def _prepare(pde, kernel, t_in, x_in, x_term, lt, lx, jitter, use_qr: bool):
    t_term = jnp.full((x_term.shape[0],), pde.horizon, x_term.dtype)
    cen_t = jnp.concatenate([t_in, t_term])
    cen_x = jnp.concatenate([x_in, x_term])
    interior = _blocks(pde, kernel, t_in, x_in, cen_t, cen_x, lt, lx)
    term_value = jax.lax.map(
        lambda xi: kernel.profile(((pde.horizon - cen_t) / lt) ** 2 + jnp.sum(((xi[None, :] - cen_x) / lx) ** 2, -1)),
        x_term,
        batch_size=64,
    )
    g = jax.vmap(pde.terminal)(x_term)
    # The RKHS penalty K + δI (K: the kernel matrix of the centres, which are the rows); for QR its Cholesky factor.
    kmat = jnp.concatenate([interior.value, term_value])
    penalty = 0.5 * (kmat + kmat.T) + jitter * jnp.eye(kmat.shape[0], dtype=kmat.dtype)
    if use_qr:
        penalty = jnp.linalg.cholesky(penalty)
    return cen_t, cen_x, interior, term_value, penalty, g


def _state(pde, blocks: _Blocks, t_in, x_in, cen_x, alpha, mean):
    """û, σᵀ∇û, the residual ε and the linearisation (f_u, σf_z) at the interior rows."""
    u = mean + blocks.value @ alpha
    sa = blocks.slope * alpha[None, :]
    grad = x_in * jnp.sum(sa, axis=1, keepdims=True) - sa @ cen_x
    z = jax.vmap(pde.dynamics.sigma_transpose)(t_in, x_in, grad)
    f_and_grads = jax.vmap(jax.value_and_grad(pde.nonlinearity, argnums=(2, 3)))
    f, (f_u, f_z) = f_and_grads(t_in, x_in, u, z)
    eps = blocks.linear @ alpha + f
    return u, grad, eps, f, f_u, jax.vmap(pde.dynamics.diffuse)(t_in, x_in, f_z)


_BACKTRACKS = 8


@eqx.filter_jit
def _gauss_newton_step(pde, blocks, term_value, penalty, g, t_in, x_in, cen_x, alpha, mean, reg, w_term, use_qr):
    n_in, n_term = t_in.shape[0], g.shape[0]
    u, grad, eps, f, f_u, b = _state(pde, blocks, t_in, x_in, cen_x, alpha, mean)
    term_res = mean + term_value @ alpha - g
    # Linearised residual: ε(α') ≈ J α' − r with J = L k + f_u k + (σ f_z)·∇k (rows i, centres j).
    jac = (
        blocks.linear + f_u[:, None] * blocks.value + blocks.slope * (jnp.sum(b * x_in, axis=1)[:, None] - b @ cen_x.T)
    )
    rhs = -(f - f_u * (u - mean) - jnp.sum(b * grad, axis=1))
    # Weighted least squares  ‖D α − y‖² + λ αᵀ(K + δI)α  with  D = [√w_i J; √w_t K_T].
    wi, wt = jnp.sqrt(1.0 / n_in), jnp.sqrt(w_term / n_term)
    data = jnp.concatenate([wi * jac, wt * term_value])
    target = jnp.concatenate([wi * rhs, wt * (g - mean)])
    m = penalty.shape[0]
    lam = reg * jnp.sum(data**2) / m  # relative to the mean diagonal of DᵀD
    if use_qr:  # stack [D; √λ Lᵀ] (K + δI = L Lᵀ) and solve by QR: the condition number is not squared
        system = jnp.concatenate([data, jnp.sqrt(lam) * penalty.T])
        q, r = jnp.linalg.qr(system)
        rhs_all = jnp.concatenate([target, jnp.zeros((m,), target.dtype)])
        new = jax.scipy.linalg.solve_triangular(r, q.T @ rhs_all)
    else:  # normal equations (DᵀD + λ(K + δI)) α = Dᵀy by Cholesky: ~5× faster, fine in float64
        system = data.T @ data + lam * penalty
        new = jax.scipy.linalg.cho_solve(
            jax.scipy.linalg.cho_factor(0.5 * (system + system.T), lower=True), data.T @ target
        )

    # Damping (backtracking line search): take α + τ(α_GN − α) for the largest τ ∈ {1, ½, …, 2⁻⁷} that decreases
    # the regularised nonlinear objective; τ = 0 (no step) when none does. Plain Gauss–Newton can diverge when the
    # linearisation is poor (seen on VB at d = 80 with long lengthscales).
    def objective(a):
        eps_a = _state(pde, blocks, t_in, x_in, cen_x, a, mean)[2]
        term_a = mean + term_value @ a - g
        quad = jnp.sum((penalty.T @ a) ** 2) if use_qr else a @ (penalty @ a)
        return jnp.mean(eps_a**2) + w_term * jnp.mean(term_a**2) + lam * quad

    solved = jnp.all(jnp.isfinite(new))  # a failed factorisation gives NaN: every candidate below would be NaN
    taus = 0.5 ** jnp.arange(_BACKTRACKS, dtype=alpha.dtype)
    candidates = alpha[None, :] + taus[:, None] * (new - alpha)[None, :]
    values = jax.lax.map(objective, candidates)
    current = objective(alpha)
    better = values < current
    first = jnp.argmax(better)
    accepted = jnp.any(better)
    tau = jnp.where(accepted, taus[first], 0.0)
    new = jnp.where(accepted, candidates[first], alpha)
    value = jnp.where(accepted, values[first], current)
    step = jnp.linalg.norm(new - alpha) / jnp.maximum(jnp.linalg.norm(new), jnp.finfo(new.dtype).tiny)
    norms = jnp.sqrt(jnp.mean(eps**2)), jnp.sqrt(jnp.mean(term_res**2))
    linearised = jnp.all(jnp.isfinite(data)) & jnp.all(jnp.isfinite(target))
    return new, *norms, step, tau, jnp.stack([current, value]), jnp.stack([linearised, solved])


@eqx.filter_jit
def _diagnostics(pde, blocks, term_value, g, t_in, x_in, cen_x, alpha, mean):
    eps = _state(pde, blocks, t_in, x_in, cen_x, alpha, mean)[2]
    return jnp.sqrt(jnp.mean(eps**2)), jnp.sqrt(jnp.mean((mean + term_value @ alpha - g) ** 2))


def fit_gp(
    pde,
    key: PRNGKeyArray,
    *,
    interior: int = 1500,
    terminal: int = 500,
    kernel: str | AbstractKernel = "matern52",
    lengthscale: float | tuple[float, float] | None = None,
    lengthscale_factor: float = 1.0,
    iterations: int = 6,
    tol: float = 1e-6,
    regularization: float | None = None,
    jitter: float | None = None,
    terminal_weight: float = 1.0,
    solver: str = "auto",
    dtype=None,
) -> tuple[GPSurrogate, GPFitLog]:
    """Solve ``pde`` by kernel collocation (see the module docstring) and return ``(surrogate, log)``.

    Args:
        interior, terminal: numbers of collocation points in [0, T] × domain and on {T} × domain; they are also
            the kernel centres, so the surrogate has ``interior + terminal`` weights and the linear solves cost
            O((interior + terminal)³).
        kernel: ``"matern52"`` (default; on VB it was more accurate than the Gaussian at the same ℓ),
            ``"gaussian"`` or an ``AbstractKernel``.
        lengthscale: ℓ (used for t and x) or (ℓ_t, ℓ_x); default: the median heuristic × ``lengthscale_factor``.
        iterations: Gauss–Newton iterations, each damped by backtracking so that the regularised objective
            decreases (stops earlier when the relative change of α falls below ``tol`` or no step decreases it).
        regularization: λ relative to the mean diagonal of DᵀD (default 1e-8 in float64, 1e-5 in float32);
        jitter: δ added to the kernel matrix in the penalty (default 1e-6 in float64, 1e-3 in float32).
        terminal_weight: w, the weight of the mean squared terminal mismatch against the mean squared residual.
        solver: ``"qr"`` (QR of the stacked least-squares matrix; robust, the default in float32), ``"cholesky"``
            (normal equations; about 5× faster, the default in float64) or ``"auto"``.
        dtype: solve in this dtype, float32 or float64 (the PDE's arrays are cast); float64 needs jax x64 enabled.

    Raises ``ValueError`` for nonsense settings and for f or g that are not finite at the collocation points, and
    ``FloatingPointError`` when a Gauss–Newton solve is not finite (raise ``jitter`` or ``regularization``).
    """
    start = time.perf_counter()
    key = check_key(key)
    kernel = _as_kernel(kernel)
    for label, value in (("interior", interior), ("terminal", terminal), ("iterations", iterations)):
        if not (is_integer(value) and value >= 1):
            raise ValueError(f"fit_gp: {label} must be a positive integer, got {value!r}")
    interior, terminal, iterations = int(interior), int(terminal), int(iterations)
    terminal_weight = _finite("fit_gp", "terminal_weight", terminal_weight, positive=True)
    lengthscale_factor = _finite("fit_gp", "lengthscale_factor", lengthscale_factor, positive=True)
    tol = _finite("fit_gp", "tol", tol)
    if regularization is not None:
        regularization = _finite("fit_gp", "regularization", regularization)
    if jitter is not None:
        jitter = _finite("fit_gp", "jitter", jitter)
    if solver not in ("auto", "qr", "cholesky"):
        raise ValueError(f"fit_gp: solver must be 'auto', 'qr' or 'cholesky', got {solver!r}")
    if lengthscale is not None:
        pair = tuple(lengthscale) if np.ndim(lengthscale) == 1 else (lengthscale, lengthscale)
        if len(pair) != 2:
            raise ValueError(f"fit_gp: lengthscale must be one number or a pair (ℓ_t, ℓ_x), got {lengthscale!r}")
        lt, lx = (_finite("fit_gp", "lengthscale", v, positive=True) for v in pair)
    if dtype is not None:
        pde = _cast_pde(pde, parameter_dtype(dtype, "fit_gp"))
    dtype = parameter_dtype(pde.dtype, "fit_gp (the PDE's dtype)")
    double = dtype.itemsize >= 8
    reg = (1e-8 if double else 1e-5) if regularization is None else regularization
    jit = (1e-6 if double else 1e-3) if jitter is None else jitter
    use_qr = solver == "qr" or (solver == "auto" and not double)

    ikey, tkey = jax.random.split(key)
    t_in, x_in = pde.sample_domain(ikey, interior)
    x_term = pde.sample_terminal(tkey, terminal)
    if lengthscale is None:
        lt = lx = lengthscale_factor * median_lengthscale(np.concatenate([np.asarray(x_in), np.asarray(x_term)]))
    if not (lt > 0 and lx > 0 and math.isfinite(lt) and math.isfinite(lx)):
        raise ValueError(f"fit_gp: lengthscales must be finite and positive, got (ℓ_t, ℓ_x) = ({lt}, {lx})")
    lt_a, lx_a = jnp.asarray(lt, dtype), jnp.asarray(lx, dtype)

    cen_t, cen_x, blocks, term_value, penalty, g = _prepare(
        pde, kernel, t_in, x_in, x_term, lt_a, lx_a, jnp.asarray(jit, dtype), use_qr
    )
    if not bool(jnp.all(jnp.isfinite(penalty))):
        raise FloatingPointError(
            f"fit_gp: the {dtype} Cholesky factorisation of the kernel matrix failed; increase jitter (now {jit:g}), "
            f"use float64 (jax x64) or shorten the lengthscale (now ℓ_t = {lt:.4g}, ℓ_x = {lx:.4g})"
        )
    bad_g = int(jnp.sum(~jnp.isfinite(g)))
    if bad_g:
        raise ValueError(f"fit_gp: the PDE's terminal condition g is not finite (NaN or inf) at {bad_g} of the "
                         f"{terminal} terminal collocation points; g must be finite on the whole domain")
    mean = jnp.mean(g)
    alpha = jnp.zeros(cen_t.shape, dtype)
    args = (jnp.asarray(reg, dtype), jnp.asarray(terminal_weight, dtype))
    res_hist, term_hist, steps, taus, objectives = [], [], [], [], []
    for _ in range(iterations):
        new, res, term, step, tau, obj, finite = _gauss_newton_step(
            pde, blocks, term_value, penalty, g, t_in, x_in, cen_x, alpha, mean, *args, use_qr
        )
        linearised, solved = (bool(v) for v in finite)
        if not (math.isfinite(float(obj[0])) and linearised):
            error = FloatingPointError if steps else ValueError  # at α = 0 it is a property of f
            where = "at û = the mean of g" if not steps else f"after {len(steps)} Gauss–Newton steps"
            raise error(
                f"fit_gp: the PDE's nonlinearity f or its derivatives ∂f/∂u, ∂f/∂z are not finite (NaN or inf) at "
                f"some interior collocation points {where}; f must be finite and differentiable on the domain"
            )
        if not solved:
            method = "QR" if use_qr else "Cholesky"
            raise FloatingPointError(
                f"fit_gp: the Gauss–Newton least-squares solve ({method}, {dtype}) is not finite: the regularised "
                f"system is singular or not positive definite at regularization = {reg:g}, jitter = {jit:g}; raise "
                "jitter or regularization, use float64 (jax x64) or shorten the lengthscale "
                f"(now ℓ_t = {lt:.4g}, ℓ_x = {lx:.4g})"
            )
        alpha = new
        res_hist.append(float(res))
        term_hist.append(float(term))
        steps.append(float(step))
        taus.append(float(tau))
        objectives.append([float(v) for v in obj])
        if float(step) < tol or float(tau) == 0.0:
            break
    res, term = _diagnostics(pde, blocks, term_value, g, t_in, x_in, cen_x, alpha, mean)
    res_hist.append(float(res))
    term_hist.append(float(term))
    surrogate = GPSurrogate(cen_t, cen_x, alpha, mean, jnp.stack([lt_a, lx_a]), kernel, pde.dim, float(pde.horizon))
    log = GPFitLog(
        residual_rms=np.asarray(res_hist),
        terminal_rms=np.asarray(term_hist),
        step=np.asarray(steps),
        damping=np.asarray(taus),
        objective=np.asarray(objectives).reshape(-1, 2),
        lengthscale=(float(lt), float(lx)),
        regularization=reg,
        interior=interior,
        terminal=terminal,
        kernel=kernel.name,
        dtype=str(dtype),
        seconds=time.perf_counter() - start,
    )
    return surrogate, log


def validation_loss(surrogate, pde, key: PRNGKeyArray, points: int = 256, terminal_weight: float = 1.0) -> float:
    """Mean squared residual (autodiff, exact trace) on fresh points + w × mean squared terminal mismatch."""
    from .._derivatives import residual

    if not (is_integer(points) and points >= 1):
        raise ValueError(f"validation_loss: points must be a positive integer, got {points!r}")
    terminal_weight = _finite("validation_loss", "terminal_weight", terminal_weight, positive=True)
    key = check_key(key)

    dkey, tkey = jax.random.split(key)
    t, x = pde.sample_domain(dkey, points)
    eps = jax.jit(jax.vmap(lambda ti, xi: residual(pde, surrogate, ti, xi)))(t, x)
    xt = pde.sample_terminal(tkey, points)
    horizon = jnp.asarray(pde.horizon, pde.dtype)
    mism = jax.jit(jax.vmap(lambda xi: surrogate(horizon, xi) - pde.terminal(xi)))(xt)
    return float(jnp.mean(eps**2) + terminal_weight * jnp.mean(mism**2))


def select_lengthscale(
    pde,
    key: PRNGKeyArray,
    factors=(0.5, 0.75, 1.0, 1.5, 2.0),
    validation_points: int = 256,
    **fit_kwargs,
) -> tuple[GPSurrogate, GPFitLog, dict]:
    """Fit with ℓ = factor × (median heuristic) for each factor; keep the fit with the smallest
    ``validation_loss`` on fresh points. Returns (surrogate, log, {factor: validation loss})."""
    key = check_key(key)
    factors = tuple(factors) if isinstance(factors, (tuple, list, np.ndarray)) else (factors,)
    if not factors:
        raise ValueError("select_lengthscale: factors must hold at least one lengthscale factor")
    for factor in factors:
        _finite("select_lengthscale", "every factor", factor, positive=True)
    if not (is_integer(validation_points) and validation_points >= 1):
        raise ValueError(f"select_lengthscale: validation_points must be a positive integer, got {validation_points!r}")
    fixed = sorted({"lengthscale", "lengthscale_factor"} & set(fit_kwargs))
    if fixed:
        raise ValueError(f"select_lengthscale chooses the lengthscale itself: do not pass {', '.join(fixed)}")
    fkey, vkey = jax.random.split(key)
    best, losses = None, {}
    for factor in factors:
        try:
            surrogate, log = fit_gp(pde, fkey, lengthscale_factor=factor, **fit_kwargs)
        except FloatingPointError:
            losses[factor] = math.inf
            continue
        loss = validation_loss(surrogate, pde, vkey, validation_points, fit_kwargs.get("terminal_weight", 1.0))
        losses[factor] = loss
        if math.isfinite(loss) and (best is None or loss < best[2]):
            best = (surrogate, log, loss)
    if best is None:
        raise FloatingPointError(f"select_lengthscale: every candidate failed or was non-finite: {losses}")
    return best[0], best[1], losses
