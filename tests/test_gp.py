"""The Gaussian-process (kernel collocation) surrogate: kernels, solver, closed forms, checkpoints, calibration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml import FunctionSurrogate
from scasml._derivatives import residual, residual_parts
from scasml.surrogates._gp import (
    GaussianKernel,
    GPSurrogate,
    Matern52Kernel,
    fit_gp,
    median_lengthscale,
    select_lengthscale,
    validation_loss,
)

DIM = 4


def _tol():
    return 1e-9 if jnp.dtype(jnp.result_type(float)).itemsize == 8 else 2e-4


@pytest.fixture(scope="module")
def vb():
    return scasml.equations.get("vb", dim=DIM)


@pytest.fixture(scope="module")
def fitted(vb):
    return fit_gp(vb, jax.random.key(0), interior=240, terminal=80, kernel="matern52", iterations=4)


@pytest.fixture(scope="module")
def test_points(vb):
    return vb.sample_domain(jax.random.key(11), 300)


def _rel_l2(surrogate, pde, t, x):
    u = jax.vmap(surrogate)(t, x)
    ref = jax.vmap(pde.exact)(t, x)
    return float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref))


@pytest.mark.parametrize("kernel", [GaussianKernel(), Matern52Kernel()])
def test_kernel_derivatives_match_autodiff(kernel):
    rho = jnp.asarray([0.0, 1e-3, 0.3, 1.0, 4.0, 9.0])
    psi, d1, d2 = kernel.derivatives(rho)
    np.testing.assert_allclose(psi, kernel.profile(rho), rtol=1e-6)
    np.testing.assert_allclose(d1, jax.vmap(jax.grad(kernel.profile))(rho), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d2, jax.vmap(jax.grad(jax.grad(kernel.profile)))(rho), rtol=1e-5, atol=1e-7)
    assert float(psi[0]) == pytest.approx(1.0)
    assert float(d1[0]) < 0 < float(d2[0])  # a positive-definite profile decreases and is convex at 0


def test_gauss_newton_collocation_residual_and_accuracy(vb, fitted, test_points):
    gp, log = fitted
    assert isinstance(gp, GPSurrogate) and gp.n_centres == 320 and gp.dim == DIM
    # residual_rms[0] is at û = c (zero for VB); [1] after the first (linear) step; the nonlinear steps reduce it
    assert log.residual_rms[-1] < 0.5 * log.residual_rms[1]
    assert log.terminal_rms[-1] < 1e-2
    # damped Gauss–Newton: every accepted step decreases the regularised objective
    assert log.damping[0] == 1.0 and np.all(log.objective[:, 1] <= log.objective[:, 0])
    assert np.all((log.damping > 0) | (np.arange(len(log.damping)) == len(log.damping) - 1))
    # the solver's closed-form collocation residual is the autodiff residual of the fitted surrogate
    t_c, x_c = gp.centres_t[:240], gp.centres_x[:240]
    eps = jax.jit(jax.vmap(lambda t, x: residual(vb, gp, t, x)))(t_c, x_c)
    assert float(jnp.sqrt(jnp.mean(eps**2))) == pytest.approx(log.residual_rms[-1], rel=1e-3, abs=50 * _tol())
    # and it solves VB: exact u = logistic(t + Σx); a constant (the prior mean alone) is far worse
    err = _rel_l2(gp, vb, *test_points)
    assert err < 0.06
    const = _rel_l2(lambda t, x: gp.mean + 0 * t, vb, *test_points)
    assert err < 0.3 * const


def test_closed_form_residual_parts_match_autodiff(vb, fitted, test_points):
    gp, _ = fitted
    t, x = test_points[0][:16], test_points[1][:16]
    auto = jax.jit(jax.vmap(lambda ti, xi: residual_parts(vb, FunctionSurrogate(gp), ti, xi)))(t, x)  # autodiff
    closed = jax.jit(jax.vmap(lambda ti, xi: gp.residual_parts(vb, ti, xi)))(t, x)
    for a, b in ((auto.value, closed.value), (auto.gradient, closed.gradient), (auto.residual, closed.residual)):
        np.testing.assert_allclose(b, a, rtol=20 * _tol(), atol=20 * _tol())
    scale = jnp.arange(1, DIM + 1, dtype=vb.dtype)[:, None]
    directions = vb.dynamics.diffusion_directions(0.0, jnp.zeros(DIM, vb.dtype)) * scale
    fwd = lambda ti, xi: jnp.sum(
        jax.vmap(lambda v: jax.jvp(lambda y: jax.jvp(lambda z: gp(ti, z), (y,), (v,))[1], (xi,), (v,))[1])(directions)
    )
    np.testing.assert_allclose(
        jax.jit(jax.vmap(lambda ti, xi: gp.hessian_quadratic_sum(ti, xi, directions)))(t, x),
        jax.jit(jax.vmap(fwd))(t, x),
        rtol=20 * _tol(),
        atol=20 * _tol(),
    )


def test_matern_surrogate_is_twice_differentiable_at_its_centres(vb, fitted):
    gp, _ = fitted
    parts = jax.jit(jax.vmap(lambda t, x: residual_parts(vb, gp, t, x)))(gp.centres_t[:5], gp.centres_x[:5])
    assert bool(jnp.all(jnp.isfinite(parts.residual))) and bool(jnp.all(jnp.isfinite(parts.gradient)))


@pytest.mark.slow
def test_gaussian_kernel_also_solves_vb(vb, test_points):
    gp, log = fit_gp(vb, jax.random.key(1), interior=120, terminal=40, kernel="gaussian", iterations=3)
    assert log.kernel == "gaussian" and len(log.step) == 3
    assert _rel_l2(gp, vb, *test_points) < 0.1


def test_save_and_load_round_trip(tmp_path, vb, fitted, test_points):
    gp, log = fitted
    path = tmp_path / "gp.scasml"
    scasml.surrogates.save(path, gp, vb, training=log.summary())
    header = scasml.surrogates.read_header(path)
    assert header["architecture"] == {"kind": "gp", "dim": DIM, "horizon": 0.5, "kernel": "matern52", "centres": 320}
    loaded = scasml.surrogates.load(path, vb)
    assert isinstance(loaded, GPSurrogate) and isinstance(loaded.kernel, Matern52Kernel)
    t, x = test_points[0][:20], test_points[1][:20]
    np.testing.assert_array_equal(jax.vmap(loaded)(t, x), jax.vmap(gp)(t, x))
    with pytest.raises(scasml.CheckpointError, match="does not match"):
        scasml.surrogates.load(path, scasml.equations.get("vb", dim=DIM + 1))


def test_median_lengthscale_rule():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(400, 30))
    # pairwise distances of a uniform box [−½, ½]^d concentrate at √(d/6)
    assert median_lengthscale(x) == pytest.approx(np.sqrt(30 / 6), rel=0.03)


@pytest.mark.slow
def test_select_lengthscale_keeps_smallest_validation_loss(vb):
    gp, log, losses = select_lengthscale(  # same sizes and kernel as `fitted`: reuses its compiled solver
        vb, jax.random.key(2), factors=(0.25, 1.0), interior=240, terminal=80, iterations=2, validation_points=64
    )
    best = min(losses, key=losses.get)
    assert set(losses) == {0.25, 1.0}
    base = log.lengthscale[1] / best
    assert base == pytest.approx(median_lengthscale(np.asarray(gp.centres_x)), rel=1e-6)
    fkey, vkey = jax.random.split(jax.random.key(2))
    assert validation_loss(gp, vb, vkey, 64) == pytest.approx(losses[best], rel=1e-5)


def test_calibration_improves_the_gp(vb, fitted):
    gp, _ = fitted
    t, x = vb.sample_domain(jax.random.key(5), 24)
    out = scasml.calibrate(gp, vb, t, x, scasml.MultilevelPicard(1, 16), key=jax.random.key(0))
    ref = jax.vmap(vb.exact)(t, x)
    err_gp = float(jnp.linalg.norm(out.surrogate - ref))
    err_cal = float(jnp.linalg.norm(out.u - ref))
    assert bool(jnp.all(out.finite))
    assert err_cal < 0.6 * err_gp


def test_invalid_arguments(vb):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="unknown kernel"):
        fit_gp(vb, key, kernel="laplace")
    with pytest.raises(ValueError, match="interior must be a positive integer"):
        fit_gp(vb, key, interior=0)
    with pytest.raises(ValueError, match="lengthscale must be a finite number > 0"):
        fit_gp(vb, key, interior=8, terminal=4, lengthscale=-1.0)
    with pytest.raises(ValueError, match="solver must be"):
        fit_gp(vb, key, interior=8, terminal=4, solver="lu")
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="jax_enable_x64"):
            fit_gp(vb, key, interior=8, terminal=4, dtype=jnp.float64)
    with pytest.raises(ValueError, match="centres must have shapes"):
        GPSurrogate(jnp.zeros(3), jnp.zeros((3, 2)), jnp.zeros(3), jnp.zeros(()), jnp.ones(2), GaussianKernel(), 3, 1.0)


def _small_pde(terminal=lambda x: jnp.sum(x**2), nonlinearity=lambda t, x, u, z: -0.1 * u):
    return scasml.SemilinearPDE(dim=2, horizon=1.0, drift=0.0, diffusion=1.0, nonlinearity=nonlinearity,
                                terminal=terminal)


SMALL = dict(interior=40, terminal=20, iterations=2)


def test_failed_gauss_newton_solve_raises_instead_of_returning_the_prior_mean():
    # K is numerically singular at a long lengthscale: without regularization or jitter the Cholesky factorisation
    # of the normal equations fails (NaN), every damped candidate is NaN and no step would ever be accepted
    with pytest.raises(FloatingPointError, match="solve .*Cholesky.* is not finite.*raise jitter or regularization"):
        fit_gp(_small_pde(), jax.random.key(0), solver="cholesky", regularization=0.0, jitter=0.0, kernel="gaussian",
               lengthscale=50.0, **SMALL)


def test_non_finite_f_or_g_at_the_collocation_points_is_refused():
    bad_g = _small_pde(terminal=lambda x: jnp.where(x[0] > 0.3, jnp.nan, jnp.sum(x**2)))
    with pytest.raises(ValueError, match="terminal condition g is not finite .* at [0-9]+ of the 20 terminal"):
        fit_gp(bad_g, jax.random.key(0), **SMALL)
    bad_f = _small_pde(nonlinearity=lambda t, x, u, z: jnp.where(x[0] > 0.3, jnp.inf, -0.1 * u))
    with pytest.raises(ValueError, match="nonlinearity f or its derivatives .* are not finite"):
        fit_gp(bad_f, jax.random.key(0), **SMALL)


@pytest.mark.parametrize("options, message", [
    (dict(regularization=-1.0), "regularization must be a finite number ≥ 0"),
    (dict(regularization=float("nan")), "regularization must be a finite number ≥ 0"),
    (dict(jitter=-1e-3), "jitter must be a finite number ≥ 0"),
    (dict(jitter=float("inf")), "jitter must be a finite number ≥ 0"),
    (dict(terminal_weight=float("inf")), "terminal_weight must be a finite number > 0"),
    (dict(terminal_weight=0.0), "terminal_weight must be a finite number > 0"),
    (dict(lengthscale_factor=float("nan")), "lengthscale_factor must be a finite number > 0"),
    (dict(tol=float("nan")), "tol must be a finite number ≥ 0"),
    (dict(tol="small"), "tol must be a finite number ≥ 0"),
    (dict(lengthscale=(1.0, 2.0, 3.0)), r"lengthscale must be one number or a pair"),
    (dict(lengthscale=(1.0, float("inf"))), "lengthscale must be a finite number > 0"),
])
def test_fit_gp_refuses_nonsense_settings(options, message):
    with pytest.raises(ValueError, match=message):
        fit_gp(_small_pde(), jax.random.key(0), **{**SMALL, **options})


@pytest.mark.parametrize("options, message", [
    (dict(factors=()), "at least one lengthscale factor"),
    (dict(factors=(1.0, -0.5)), "every factor must be a finite number > 0"),
    (dict(validation_points=0), "validation_points must be a positive integer"),
    (dict(lengthscale=0.3), "chooses the lengthscale itself: do not pass lengthscale"),
])
def test_select_lengthscale_refuses_nonsense_settings(options, message):
    with pytest.raises(ValueError, match=message):
        select_lengthscale(_small_pde(), jax.random.key(0), **{**SMALL, **options})


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32, "complex64"])
def test_fit_gp_refuses_dtypes_other_than_float32_and_float64(dtype):
    with pytest.raises(ValueError, match="fit_gp: dtype must be float32 or float64"):
        fit_gp(_small_pde(), jax.random.key(0), dtype=dtype, **SMALL)


def test_integer_points_give_floating_values():
    gp, _ = fit_gp(_small_pde(terminal=lambda x: 3.7 + jnp.sum(x**2)), jax.random.key(0), **SMALL)
    ints, floats = jnp.array([1, 0]), jnp.array([1.0, 0.0])
    assert gp(0.5, ints).dtype == gp.dtype
    np.testing.assert_allclose(gp(0.5, ints), gp(0.5, floats), rtol=1e-6)
    np.testing.assert_allclose(gp.hessian_quadratic_sum(0.5, ints, jnp.eye(2)),
                               gp.hessian_quadratic_sum(0.5, floats, jnp.eye(2)), rtol=1e-5)


def test_custom_kernel_is_refused_by_save_instead_of_loading_as_its_parent(tmp_path):
    class Wide(GaussianKernel):  # inherits the name "gaussian"
        def profile(self, rho):
            return jnp.exp(-0.1 * rho)

        def derivatives(self, rho):
            psi = jnp.exp(-0.1 * rho)
            return psi, -0.1 * psi, 0.01 * psi

    pde = _small_pde()
    gp, _ = fit_gp(pde, jax.random.key(0), kernel=Wide(), **SMALL)
    with pytest.raises(TypeError, match=r"kernel Wide \(name 'gaussian'\) cannot be saved.*built-in kernels"):
        scasml.surrogates.save(tmp_path / "wide.scasml", gp, pde)
    assert not (tmp_path / "wide.scasml").exists()
