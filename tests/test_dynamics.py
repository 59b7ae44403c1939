"""Statistical tests of every dynamics against exact solutions in d = 10 (fixed keys; tolerances from the
reported standard errors), the Euler scheme's weak order, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from conftest import assert_within_stderr

import scasml

D, T = 10, 1.0
BOX = scasml.Box(0.5, 1.5)
FK = scasml.FeynmanKac(paths=2000, time_samples=1)
FK_GAUSS = scasml.FeynmanKac(paths=1000, time_samples=3, time_rule="gauss_legendre")
MLP = scasml.MultilevelPicard(levels=2, base=10)
# (the quadrature variant equals full history bit for bit on these linear PDEs without a source, which only draw
# terminal paths: it is tested on the semilinear Black–Scholes–Barenblatt problem below)
ESTIMATORS = {"fk": FK, "fk-gauss": FK_GAUSS, "mlp": MLP}

MU = jnp.linspace(-0.2, 0.3, D)
VOL = jnp.linspace(0.2, 0.5, D)
CORRELATION = 0.3 * np.ones((D, D)) + 0.7 * np.eye(D)


def _square_norm_pde(dynamics, exact):
    """The linear PDE ∂_t u + Lu = 0, u(T) = ‖x‖², for ``dynamics``; ``exact(t, x)`` its solution."""
    return scasml.SemilinearPDE(dim=D, horizon=T, dynamics=dynamics, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                terminal=lambda x: x @ x, exact=exact, domain=BOX, linear=True)


def _gbm(correlation=None):
    dynamics = scasml.GeometricBrownianMotion(D, drift=MU, volatility=VOL, correlation=correlation)
    return _square_norm_pde(dynamics, lambda t, x: jnp.sum(x**2 * jnp.exp((2 * MU + VOL**2) * (T - t))))


OU_OFFSET, OU_RATE, OU_SIGMA = jnp.linspace(-0.5, 0.5, D), jnp.linspace(-1.0, 0.5, D), jnp.linspace(0.3, 0.8, D)


def _ou_diagonal_moments(t, x):
    tau = T - t
    e = jnp.exp(OU_RATE * tau)
    mean = e * x + OU_OFFSET * jnp.expm1(OU_RATE * tau) / OU_RATE
    var = OU_SIGMA**2 * jnp.expm1(2 * OU_RATE * tau) / (2 * OU_RATE)
    return mean, var


def _ou_diagonal():
    dynamics = scasml.OrnsteinUhlenbeck(D, offset=OU_OFFSET, matrix=OU_RATE, diffusion=OU_SIGMA)
    return _square_norm_pde(dynamics, lambda t, x: (lambda m, v: m @ m + jnp.sum(v))(*_ou_diagonal_moments(t, x)))


_RNG = np.random.default_rng(3)
B_FULL = -np.eye(D) + 0.2 * _RNG.standard_normal((D, D)) / np.sqrt(D)
S_FULL = 0.5 * np.eye(D) + 0.1 * _RNG.standard_normal((D, D)) / np.sqrt(D)
A_FULL = np.linspace(-0.3, 0.3, D)


def _ou_full_moments(tau: float, x: np.ndarray):
    """Mean and covariance of the full OU transition in float64 by SciPy's matrix exponential."""
    van_loan = scipy.linalg.expm(np.block([[B_FULL, S_FULL @ S_FULL.T], [np.zeros((D, D)), -B_FULL.T]]) * tau)
    exp_b = van_loan[:D, :D]
    cov = van_loan[:D, D:] @ exp_b.T
    affine = scipy.linalg.expm(np.block([[B_FULL, A_FULL[:, None]], [np.zeros((1, D + 1))]]) * tau)
    return exp_b @ x + affine[:D, D], cov, exp_b


def _ou_full():
    dynamics = scasml.OrnsteinUhlenbeck(D, offset=A_FULL, matrix=B_FULL, diffusion=S_FULL)
    return _square_norm_pde(dynamics, None)


def _ou_full_exact(t, x):
    """(u, z) of the full-OU problem at host points: u = ‖m‖² + tr Σ, z = σᵀ e^{Bᵀτ} 2m."""
    u, z = [], []
    for ti, xi in zip(np.asarray(t, np.float64), np.asarray(x, np.float64), strict=True):
        mean, cov, exp_b = _ou_full_moments(T - ti, xi)
        u.append(mean @ mean + np.trace(cov))
        z.append(S_FULL.T @ exp_b.T @ (2 * mean))
    return np.array(u), np.array(z)


def _exact_u_z(pde, t, x):
    if pde.exact_fn is None:
        return _ou_full_exact(t, x)
    u = jax.vmap(pde.exact)(t, x)
    grad = jax.vmap(jax.grad(pde.exact, argnums=1))(t, x)
    return u, jax.vmap(pde.dynamics.sigma_transpose)(t, x, grad)


_RNG_FORM = np.random.default_rng(5)
_W = _RNG_FORM.standard_normal((D, D)) / np.sqrt(D)
_COV = _W @ _W.T + 0.5 * np.eye(D)
RHO_GENERIC = _COV / np.sqrt(np.outer(np.diag(_COV), np.diag(_COV)))  # off-diagonal −0.47 … 0.40
_M = _RNG_FORM.standard_normal((D, D)) / np.sqrt(D)
A_FORM = (_M + _M.T) / 2  # an indefinite symmetric matrix
S_CONST = 0.5 * _RNG_FORM.standard_normal((D, D)) / np.sqrt(D) + 0.3 * np.eye(D)
DRIFT_CONST = np.linspace(-0.2, 0.3, D)


def _quadratic_form_pde(dynamics, exact):
    """∂_t u + Lu = 0, u(T) = xᵀAx (A = ``A_FORM``): unlike ‖x‖², u depends on the whole second-order term."""
    return scasml.SemilinearPDE(dim=D, horizon=T, dynamics=dynamics, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                terminal=lambda x: x @ A_FORM @ x, exact=exact, domain=BOX, linear=True)


def _gbm_quadratic_form_exact(t, x):
    """E[X_i X_j] = x_i x_j exp((μ_i + μ_j + ρ_ij σ_i σ_j)τ) under correlated GBM: u = xᵀ(A ⊙ E_τ)x (residual
    4e-16 in float64; without the ρ_ij σ_i σ_j term 0.14)."""
    growth = jnp.exp((MU[:, None] + MU[None, :] + RHO_GENERIC * jnp.outer(VOL, VOL)) * (T - t))
    return x @ (A_FORM * growth) @ x


def _gbm_quadratic_form():
    dynamics = scasml.GeometricBrownianMotion(D, drift=MU, volatility=VOL, correlation=RHO_GENERIC)
    return _quadratic_form_pde(dynamics, _gbm_quadratic_form_exact)


def _constant_full_sigma_exact(t, x):
    """Constant drift b and full σ: X_T ~ N(x + bτ, τσσᵀ), u = mᵀAm + τ tr(σσᵀA), m = x + bτ (residual 1e-16 in
    float64; with σᵀσ in place of σσᵀ 0.44)."""
    m = x + DRIFT_CONST * (T - t)
    return m @ A_FORM @ m + (T - t) * np.trace(S_CONST @ S_CONST.T @ A_FORM)


def _constant_full_sigma():
    dynamics = scasml.ConstantCoefficients(D, drift=DRIFT_CONST, diffusion=S_CONST)
    return _quadratic_form_pde(dynamics, _constant_full_sigma_exact)


PROBLEMS = {"gbm": _gbm, "gbm-correlated": lambda: _gbm(CORRELATION), "ou-diagonal": _ou_diagonal,
            "ou-full": _ou_full, "gbm-correlated-form": _gbm_quadratic_form,
            "constant-full-sigma-form": _constant_full_sigma}


# full OU: O(d³) per sample, so one estimator checks it. The quadratic forms (their u depends on every ρ_ij, and on
# σσᵀ rather than σᵀσ; z = σᵀ∇u by the library's σ, equal to Lᵀdiag(σx)∇u, L = chol ρ, and Sᵀ∇u to 2e-16 in float64)
# with the power to tell: without the ρ_ijσ_iσ_j term in u, Feynman–Kac's mean z would be 1.5 (bound 0.45; Picard's
# M² = 100 paths cannot tell, 0.31 against 0.35, hence Feynman–Kac); with σᵀσ for σσᵀ, Picard's −2.2 (bound 0.46).
FORMS = {"gbm-correlated-form": ("fk", "mlp"), "constant-full-sigma-form": ("mlp",)}
CASES = [(p, e) for p in sorted(PROBLEMS) for e in sorted(ESTIMATORS)
         if (p != "ou-full" or e == "fk") and e in FORMS.get(p, ESTIMATORS)]


@pytest.mark.parametrize(("problem", "name"), CASES)
def test_linear_u_and_z_within_stderr(problem, name):
    pde = PROBLEMS[problem]()
    t, x = pde.sample_domain(jax.random.key(0), 150)
    est = scasml.solve(pde, t, x, ESTIMATORS[name], key=jax.random.key(1))
    u, z = _exact_u_z(pde, t, x)
    assert bool(jnp.all(est.stderr > 0)) and bool(jnp.all(est.z_stderr > 0))
    assert_within_stderr(est.u, u, est.stderr, dof=est.dof)
    assert_within_stderr(est.z, z, est.z_stderr, dof=est.z_dof)


@pytest.mark.parametrize("problem", sorted(FORMS))
def test_quadratic_form_solutions_solve_their_pde(problem):
    """The exact u of the quadratic-form problems has zero residual: float32 rounding gives ≤ 3e-7 at |u| ≤ 6 (bound
    1e-5, ≈ 15 ulps of u); the formulas without the ρ_ijσ_iσ_j term or with σᵀσ give 0.14 and 0.44."""
    pde = PROBLEMS[problem]()
    t, x = pde.sample_domain(jax.random.key(2), 50)
    np.testing.assert_allclose(jax.vmap(lambda ti, xi: scasml.residual(pde, pde.exact, ti, xi))(t, x), 0, atol=1e-5)


@pytest.mark.parametrize("estimator", [scasml.MultilevelPicard(levels=3, base=8),
                                       scasml.MultilevelPicard(levels=2, base=10, variant="quadrature")],
                         ids=["full-history", "quadrature"])
def test_black_scholes_barenblatt_semilinear(estimator):
    """Black–Scholes–Barenblatt (Raissi 2018) in d = 10: GBM without drift, f = −r(u − Σ_i x_i∂_iu) written with
    z = σ(x)ᵀ∇u = σ x ⊙ ∇u as −r(u − Σ_i z_i/σ); u = exp((r + σ²)(T − t))‖x‖². Quadrature at n = 2: its Picard
    truncation is estimated at 0.03 × the RMS standard error (``.truncation``), negligible."""
    r, vol = 0.05, 0.4
    dynamics = scasml.GeometricBrownianMotion(D, drift=0.0, volatility=vol)
    pde = scasml.SemilinearPDE(dim=D, horizon=T, dynamics=dynamics, domain=BOX, terminal=lambda x: x @ x,
                               nonlinearity=lambda t, x, u, z: -r * (u - jnp.sum(z) / vol),
                               exact=lambda t, x: jnp.exp((r + vol**2) * (T - t)) * (x @ x))
    t, x = pde.sample_domain(jax.random.key(2), 150)
    np.testing.assert_allclose(jax.vmap(lambda ti, xi: scasml.residual(pde, pde.exact, ti, xi))(t, x), 0, atol=2e-4)
    est = scasml.solve(pde, t, x, estimator, key=jax.random.key(3))
    u, z = _exact_u_z(pde, t, x)
    assert_within_stderr(est.u, u, est.stderr, dof=est.dof)
    assert_within_stderr(est.z, z, est.z_stderr, dof=est.z_dof)


def test_gradient_quadratic_control_with_ou_dynamics():
    """HJB f = −½‖z‖² with diagonal OU dynamics and g = c‖x‖²: by Cole–Hopf,
    u = Σ_i ½log(1 + 2cv_i) + c m_i²/(1 + 2cv_i) with (m, v) the transition's mean and variance."""
    c = 0.5
    dynamics = scasml.OrnsteinUhlenbeck(D, offset=OU_OFFSET, matrix=OU_RATE, diffusion=OU_SIGMA)

    def exact(t, x):
        m, v = _ou_diagonal_moments(t, x)
        return jnp.sum(0.5 * jnp.log1p(2 * c * v) + c * m**2 / (1 + 2 * c * v))

    pde = scasml.SemilinearPDE(dim=D, horizon=T, dynamics=dynamics, domain=scasml.Box(-1.0, 1.0),
                               terminal=lambda x: c * (x @ x), nonlinearity=lambda t, x, u, z: -0.5 * (z @ z),
                               exact=exact, gradient_quadratic=-0.5)
    t, x = pde.sample_domain(jax.random.key(4), 150)
    np.testing.assert_allclose(jax.vmap(lambda ti, xi: scasml.residual(pde, exact, ti, xi))(t, x), 0, atol=2e-5)
    est = scasml.solve(pde, t, x, scasml.MultilevelPicard(levels=2, base=10), key=jax.random.key(5))
    u, z = _exact_u_z(pde, t, x)
    assert_within_stderr(est.u, u, est.stderr, dof=est.dof)
    assert_within_stderr(est.z, z, est.z_stderr, dof=est.z_dof)


def test_calibrate_under_gbm_corrects_a_perturbed_surrogate():
    pde = _gbm()
    surrogate = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.2 * jnp.sin(jnp.sum(x) + t))
    t, x = pde.sample_domain(jax.random.key(6), 150)
    out = scasml.calibrate(surrogate, pde, t, x, MLP, key=jax.random.key(7))
    assert_within_stderr(out.u, jax.vmap(pde.exact)(t, x), out.stderr, dof=out.dof)


def test_pinn_residual_sweep_matches_autodiff_under_state_dependent_dynamics(x64):
    pinn = scasml.PINN(D, T, jax.random.key(0), width=16, depth=2, dtype=jnp.float64)
    pde = _gbm(CORRELATION)
    t, x = jnp.asarray(0.3), jnp.linspace(0.6, 1.4, D)
    fast = scasml.residual(pde, pinn, t, x)
    autodiff = scasml._derivatives.residual_parts(pde, pinn, t, x).residual
    np.testing.assert_allclose(fast, autodiff, rtol=1e-10)


def test_euler_scheme_on_gbm_converges_with_weak_order_one():
    """``ItoDiffusion`` with GBM coefficients: the error of u against the exact GBM value falls like steps^−1
    (the discretisation bias is ~20 standard errors even at the finest step, so the fit sees the bias)."""
    mu, vol = 0.5, 0.3
    gbm = scasml.GeometricBrownianMotion(D, drift=mu, volatility=vol)
    x0 = jnp.ones((50, D))
    exact = D * np.exp((2 * mu + vol**2) * T)
    errors, stderrs = [], []
    for steps in (4, 8, 16, 32):
        ito = scasml.ItoDiffusion(D, drift=lambda t, x: gbm.drift(t, x), diffusion=lambda t, x: gbm.diffusion(t, x),
                                  steps=steps)
        pde = _square_norm_pde(ito, None)
        est = scasml.solve(pde, jnp.zeros(50), x0, scasml.FeynmanKac(paths=4000), key=jax.random.key(steps))
        errors.append(abs(float(jnp.mean(est.u)) - exact))
        stderrs.append(float(jnp.sqrt(jnp.mean(est.stderr**2) / 50)))
    assert errors[-1] > 10 * stderrs[-1], (errors, stderrs)
    order = -np.polyfit(np.log([4, 8, 16, 32]), np.log(errors), 1)[0]
    assert 0.8 <= order <= 1.2, (order, errors)


def test_euler_scheme_is_exact_for_constant_coefficients():
    """With constant μ and a full σ, Euler–Maruyama is exact: u and z within their standard errors."""
    sigma = np.asarray(S_FULL)
    const = scasml.ConstantCoefficients(D, drift=0.1, diffusion=sigma)
    ito = scasml.ItoDiffusion(D, drift=lambda t, x: jnp.full((D,), 0.1, x.dtype),
                              diffusion=lambda t, x: jnp.asarray(sigma, x.dtype), steps=3)
    exact = lambda t, x: (lambda m: m @ m + (T - t) * np.sum(sigma**2))(x + 0.1 * (T - t))
    pde = _square_norm_pde(ito, exact)
    t, x = pde.sample_domain(jax.random.key(8), 150)
    for estimator in (FK, FK_GAUSS, MLP):
        est = scasml.solve(pde, t, x, estimator, key=jax.random.key(9))
        u = jax.vmap(exact)(t, x)
        z = jax.vmap(lambda ti, xi: const.sigma_transpose(ti, xi, jax.grad(exact, argnums=1)(ti, xi)))(t, x)
        assert_within_stderr(est.u, u, est.stderr, dof=est.dof)
        assert_within_stderr(est.z, z, est.z_stderr, dof=est.z_dof)


def test_paths_records_and_parameters():
    for pde in (_gbm(CORRELATION), _ou_diagonal()):
        params = pde.parameters()
        assert params["dynamics"]["kind"] in ("gbm", "ornstein_uhlenbeck")
    assert "dynamics" not in scasml.equations.get("vb", dim=5).parameters()  # constant: as before


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: scasml.OrnsteinUhlenbeck(D, diffusion=jnp.zeros(D).at[0].set(1.0)), "non-singular"),
        (lambda: scasml.OrnsteinUhlenbeck(D, matrix=jnp.ones((3, 3))), "OU matrix B must be"),
        (lambda: scasml.GeometricBrownianMotion(D, volatility=jnp.ones(3)), r"volatility σ must have shape \(10,\)"),
        (lambda: scasml.GeometricBrownianMotion(D, volatility=np.inf), "volatility σ must be finite"),
        (lambda: scasml.GeometricBrownianMotion(D, correlation=np.eye(D) * 2), "unit diagonal"),
        (lambda: scasml.GeometricBrownianMotion(D, correlation=np.ones((D, D))), "positive definite"),
        (lambda: scasml.ItoDiffusion(D, lambda t, x: x, lambda t, x: 1.0 + 0 * t, steps=0), "steps must be"),
        (lambda: scasml.ItoDiffusion(D, lambda t, x: x[:3], lambda t, x: 1.0 + 0 * t), "drift"),
        (lambda: scasml.ItoDiffusion(D, lambda t, x: x, lambda t, x: jnp.ones((D, 2))), "diffusion"),
        (lambda: scasml.ItoDiffusion(D, "mu", lambda t, x: 1.0 + 0 * t), "callable"),
        (lambda: scasml.SemilinearPDE(dim=D, horizon=1.0, dynamics=scasml.ConstantCoefficients(D), drift=1.0,
                                      nonlinearity=lambda t, x, u, z: u, terminal=lambda x: x[0]), "not both"),
        (lambda: scasml.SemilinearPDE(dim=D, horizon=1.0, dynamics=scasml.ConstantCoefficients(3),
                                      nonlinearity=lambda t, x, u, z: u, terminal=lambda x: x[0]), "dim=3"),
    ],
)
def test_bad_dynamics_get_clear_errors(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_singular_diffusion_on_a_path_is_flagged_not_silent():
    """σ(t, x) = diag(x) is singular at x = 0: the Euler weight divides by it and the estimate is flagged."""
    ito = scasml.ItoDiffusion(D, drift=lambda t, x: 0 * x, diffusion=lambda t, x: x, steps=2)
    pde = _square_norm_pde(ito, None)
    with pytest.warns(RuntimeWarning, match="not finite at 2 point"):
        est = scasml.solve(pde, jnp.zeros(2), jnp.zeros((2, D)), FK, key=jax.random.key(0))
    assert not bool(jnp.any(est.finite))


@pytest.mark.parametrize("dynamics", [
    scasml.ConstantCoefficients(3), scasml.GeometricBrownianMotion(3, 0.1, 0.2), scasml.OrnsteinUhlenbeck(3),
    scasml.OrnsteinUhlenbeck(3, 0.0, -jnp.eye(3) + 0.1, 1.0),
    scasml.ItoDiffusion(3, lambda t, x: -x, lambda t, x: 1.0 + 0.1 * jnp.tanh(x), steps=2)])
def test_a_zero_elapsed_time_gives_a_finite_path_and_weight(dynamics):
    """Feynman–Kac draws its times as t + U²Δ with ``jax.random.uniform``, which returns U = 0 about once in 10⁷
    float32 draws: every dynamics must then stay finite (Ornstein–Uhlenbeck's zero covariance gave 0/0)."""
    noise = jnp.ones((dynamics.noise_rows, 3))
    point, weight = dynamics.sample(jnp.asarray(0.0), jnp.ones(3), jnp.asarray(0.0), noise)
    assert bool(jnp.all(jnp.isfinite(point)) and jnp.all(jnp.isfinite(weight))), (point, weight)
