"""Statistical tests of the estimators against exact solutions (tolerances from reported standard errors)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_within_stderr, stderr_statistics

import scasml
from scasml import equations
from scasml.equations._base import AbstractBenchmarkPDE
from scasml.equations.hjb import AbstractHJB
from scasml.estimators import gauss_legendre

ESTIMATORS = {
    "fk-random": scasml.FeynmanKac(paths=1000, time_samples=2),
    "fk-gauss": scasml.FeynmanKac(paths=1000, time_samples=4, time_rule="gauss_legendre"),
    "mlp-full": scasml.MultilevelPicard(levels=2, base=10),
    "mlp-quad": scasml.MultilevelPicard(levels=2, base=10, variant="quadrature"),
}


def _points(pde, n, seed=0):
    return pde.sample_domain(jax.random.key(seed), n)


def _perturbed_lcd(dim=10):
    """A linear PDE with a non-zero source: the defect of LCD for a perturbed surrogate (exact defect known)."""
    lcd = equations.get("lcd", dim=dim)
    surrogate = scasml.FunctionSurrogate(lambda t, x: lcd.exact(t, x) + 0.3 * jnp.sin(2 * jnp.sum(x) + t))
    return scasml.law_of_defect(lcd, surrogate)


PROBLEMS = {
    "heat": lambda: equations.get("heat", dim=10),
    "lcd": lambda: equations.get("lcd", dim=10),
    "lcd-defect": _perturbed_lcd,
}


# On a linear PDE without a source the quadrature variant only draws the terminal paths, exactly as full history
# does (bit-identical estimates): it is tested where its Gauss–Legendre time nodes are used, on lcd-defect here and
# on nonlinear PDEs (VB below, Black–Scholes–Barenblatt in test_dynamics).
CASES = [(p, e) for p in sorted(PROBLEMS) for e in sorted(ESTIMATORS) if e != "mlp-quad" or p == "lcd-defect"]


@pytest.mark.parametrize(("problem", "name"), CASES)
def test_unbiased_within_stderr(problem, name):
    """u within its standard errors at 200 points; the helper also checks the RMS of the standardised errors
    against 1 (Student-t at the reported degrees of freedom)."""
    pde = PROBLEMS[problem]()
    t, x = _points(pde, 200)
    est = scasml.solve(pde, t, x, ESTIMATORS[name], key=jax.random.key(1))
    exact = jax.vmap(pde.exact)(t, x)
    assert bool(jnp.all(est.stderr > 0))
    assert_within_stderr(est.u, exact, est.stderr, dof=est.dof)


@pytest.mark.parametrize(("problem", "name"), [(p, e) for p in ("heat", "lcd-defect") for e in sorted(ESTIMATORS)
                                               if e != "mlp-quad" or p == "lcd-defect"])
def test_gradient_matches_autodiff(problem, name):
    pde = PROBLEMS[problem]()
    t, x = _points(pde, 200, seed=3)
    est = scasml.solve(pde, t, x, ESTIMATORS[name], key=jax.random.key(2))
    grad = jax.vmap(jax.grad(pde.exact, argnums=1))(t, x)
    z_exact = jax.vmap(pde.dynamics.sigma_transpose)(t, x, grad)
    assert_within_stderr(est.z, z_exact, est.z_stderr, dof=est.z_dof)


@pytest.mark.parametrize("name", ["fk-random", "mlp-full", "mlp-quad"])
def test_reported_stderr_matches_spread_over_keys(name):
    """The empirical spread of u and of z over K = 20 independent keys agrees with the reported standard errors
    (RMS over 50 points, and over z's components) within 4 SDs of the ratio's sampling distribution."""
    keys, pde = 20, _perturbed_lcd()
    t, x = _points(pde, 50, seed=4)
    runs = [scasml.solve(pde, t, x, ESTIMATORS[name], key=jax.random.key(100 + i)) for i in range(keys)]
    for field, error_bar in (("u", "stderr"), ("z", "z_stderr")):
        values = np.stack([np.asarray(getattr(r, field), np.float64).reshape(len(t), -1) for r in runs])
        variance = np.mean([np.asarray(getattr(r, error_bar), np.float64).reshape(len(t), -1) ** 2 for r in runs], 0)
        ratio = np.sqrt(np.sum(values.var(axis=0, ddof=1)) / np.sum(variance))
        # Var s² = 2σ⁴/(K − 1) per entry (normal estimates; their excess kurtosis over keys measures −0.2 … 0.1); a
        # point's z components are dependent, so each point's Σ_j s_j² gets the fully correlated bound 2(Σ_j σ_j²)²
        # /(K − 1): SD of the ratio of RMS's = √(Σ_i (Σ_j σ_ij²)²) / (√(2(K − 1))·Σ σ²) (≈ 1/√(2(K − 1)·50) for equal
        # σ; 0.031 for u and 0.026 for z here), 4 SDs (the noise of the reported RMS, over 1000 values, is ≈ 0.002)
        sd = np.sqrt(np.sum(variance.sum(axis=1) ** 2)) / (np.sqrt(2 * (keys - 1)) * variance.sum())
        assert abs(ratio - 1) <= 4 * sd, (field, ratio, sd)


def test_feynman_kac_rate():
    """RMS error ∝ paths^(−1/2): fitted log-log slope in [−0.6, −0.4]."""
    pde = _perturbed_lcd()
    t, x = _points(pde, 100, seed=5)
    exact = np.asarray(jax.vmap(pde.exact)(t, x))
    paths = np.array([100, 1000, 10000])
    rms = []
    for p in paths:
        est = scasml.solve(pde, t, x, scasml.FeynmanKac(paths=int(p)), key=jax.random.key(7))
        rms.append(np.sqrt(np.mean((np.asarray(est.u) - exact) ** 2)))
    slope = np.polyfit(np.log(paths), np.log(rms), 1)[0]
    assert -0.6 <= slope <= -0.4, (slope, rms)


def _vb_rms(levels, base, points=400):
    pde = equations.get("vb", dim=10)
    t, x = _points(pde, points, seed=6)
    est = scasml.solve(pde, t, x, scasml.MultilevelPicard(levels, base), key=jax.random.key(8))
    return float(jnp.sqrt(jnp.mean((est.u - jax.vmap(pde.exact)(t, x)) ** 2)))


@pytest.mark.slow
def test_picard_error_decreases_with_base_and_levels():
    by_base = [_vb_rms(2, m) for m in (4, 6, 8, 10)]
    print("VB d=10, n=2, RMS error for M = 4, 6, 8, 10:", by_base)
    assert all(a > b for a, b in zip(by_base, by_base[1:], strict=False)), by_base
    by_level = [_vb_rms(n, 6) for n in (1, 2, 3)]
    print("VB d=10, M=6, RMS error for n = 1, 2, 3:", by_level)
    assert all(a > b for a, b in zip(by_level, by_level[1:], strict=False)), by_level


@pytest.mark.parametrize("variant", ["full_history", "quadrature"])
def test_picard_on_nonlinear_vb_is_unbiased_within_stderr(variant):
    """u and z of MultilevelPicard(2, 8) on VB in d = 10, both variants: the Picard truncation at n = 2 is ≈ 0.06 ×
    the RMS standard error for quadrature (``.truncation``), negligible against the tolerances."""
    pde = equations.get("vb", dim=10)
    t, x = _points(pde, 200, seed=9)
    est = scasml.solve(pde, t, x, scasml.MultilevelPicard(2, 8, variant=variant), key=jax.random.key(3))
    grad = jax.vmap(jax.grad(pde.exact, argnums=1))(t, x)
    assert_within_stderr(est.u, jax.vmap(pde.exact)(t, x), est.stderr, dof=est.dof)
    assert_within_stderr(est.z, jax.vmap(pde.dynamics.sigma_transpose)(t, x, grad), est.z_stderr, dof=est.z_dof)


@pytest.mark.parametrize("variant", ["full_history", "quadrature"])
def test_picard_gradient_errors_are_student_t_at_z_dof(variant):
    """z of MultilevelPicard(2, 8) on VB in d = 10 at 1,200 points: the standardised errors have the spread of
    Student-t at the reported ``z_dof`` (median ≈ 32–40 here: a level of 8 samples carries much of z's variance),
    not of a normal (mean z² ≈ 1.1, which the normal check rejects at this many points), with no more points beyond
    4 standard errors than t allows, and no common bias of the raw errors (their mean over points against its
    standard error from their spread: the mean of z-scores is not a bias test here, a studentised skewed mean
    correlates with its own standard error)."""
    pde = equations.get("vb", dim=10)
    t, x = _points(pde, 1200, seed=9)
    est = scasml.solve(pde, t, x, scasml.MultilevelPicard(2, 8, variant=variant), key=jax.random.key(3))
    grad = jax.vmap(jax.grad(pde.exact, argnums=1))(t, x)
    exact = np.asarray(jax.vmap(pde.dynamics.sigma_transpose)(t, x, grad))
    dof = np.asarray(est.z_dof)
    assert dof.shape == exact.shape and np.all(dof >= 1) and np.all(np.isfinite(dof))
    s = stderr_statistics(est.z, exact, est.z_stderr, dof=dof)
    assert abs(s["mean_z2"] - s["mean_z2_expected"]) <= s["mean_z2_bound"], s
    assert s["points_outside"] <= s["points_outside_allowed"], s
    assert s["mean_z2_expected"] > 1.02, s  # the t correction is material here
    error = (np.asarray(est.z, np.float64) - exact).mean(axis=1)
    assert abs(error.mean()) <= 4 * error.std(ddof=1) / np.sqrt(error.size)


@pytest.mark.parametrize("nodes", [1, 2, 3, 5, 8])
def test_gauss_legendre_rule(nodes):
    x, w = gauss_legendre(nodes)
    assert np.all(np.isfinite(x)) and np.all((x > 0) & (x < 1))
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-14)
    for k in range(2 * nodes):  # exact for polynomials of degree ≤ 2n − 1
        np.testing.assert_allclose(np.sum(w * x**k), 1 / (k + 1), rtol=1e-12)


def test_evaluation_counts():
    vb = equations.get("vb", dim=4)
    assert scasml.MultilevelPicard(2, 10).evaluations(vb) == {"terminal": 211, "source": 200, "increment": 10}
    # linear PDEs skip the l ≥ 1 terms (they vanish identically)
    lcd = equations.get("lcd", dim=4)
    assert scasml.MultilevelPicard(2, 10).evaluations(lcd) == {"terminal": 101, "source": 100, "increment": 0}
    assert scasml.FeynmanKac(paths=50, time_samples=3).evaluations(lcd)["source"] == 150


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: scasml.MultilevelPicard(levels=0), "levels must be a positive integer"),
        (lambda: scasml.MultilevelPicard(base=1), "base must be ≥ 2"),
        (lambda: scasml.MultilevelPicard(base=-3), "base must be a positive integer"),
        (lambda: scasml.MultilevelPicard(variant="fast"), "variant must be one of"),
        (lambda: scasml.MultilevelPicard(clip=-1.0), "clip must be None or a positive finite number"),
        (lambda: scasml.MultilevelPicard(clip=True), "clip must be None or a positive finite number"),
        (lambda: scasml.MultilevelPicard(clip=float("inf")), "clip must be None or a positive finite number"),
        (lambda: scasml.MultilevelPicard(2, 2, variant="quadrature"), "quadrature variant needs base ≥ 3"),
        (lambda: scasml.MultilevelPicard(2, 5, variant="quadrature", inner_base=2),
         "quadrature variant needs inner_base ≥ 3"),
        (lambda: scasml.MultilevelPicard(debias=1), "debias must be True or False"),
        (lambda: scasml.FeynmanKac(paths=0), "paths must be a positive integer"),
        (lambda: scasml.FeynmanKac(time_rule="simpson"), "time_rule must be one of"),
    ],
)
def test_invalid_estimators(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_feynman_kac_refuses_nonlinear_pde():
    pde = equations.get("vb", dim=3)
    with pytest.raises(ValueError, match="FeynmanKac solves linear PDEs only"):
        scasml.solve(pde, 0.1, jnp.zeros(3), scasml.FeynmanKac(), key=jax.random.key(0))


def test_clipping_bounds_every_output():
    """clip = 0.1 binds (unclipped: |u| 0.14–0.79, |z| up to 0.26 here): some u and some z sit at the bound, none
    beyond; the nested estimates are clipped too, so z differs from the unclipped estimate clipped at the end (same
    key, same noise) also where it is inside the bound."""
    pde = equations.get("vb", dim=5)
    t, x = _points(pde, 30)
    clip = np.float32(0.1)
    est = scasml.solve(pde, t, x, scasml.MultilevelPicard(2, 4, clip=0.1), key=jax.random.key(0))
    free = scasml.solve(pde, t, x, scasml.MultilevelPicard(2, 4, debias=False), key=jax.random.key(0))  # as clip
    u, z = np.abs(np.asarray(est.u)), np.abs(np.asarray(est.z))
    assert u.max() <= clip and z.max() <= clip
    assert np.any(u == clip) and np.any(z == clip) and np.any(z < clip)
    inside = z < clip
    output_only = np.clip(np.asarray(free.z), -clip, clip)
    assert np.any(np.asarray(est.z)[inside] != output_only[inside])


class _QuadraticHJB(AbstractHJB):
    """f = −‖z‖²/2, σ = √2, g = c‖x‖²: u(t, x) = (d/2)·log(1 + 4cτ) + c‖x‖²/(1 + 4cτ), τ = T − t (Cole–Hopf)."""

    c: float
    name = "quadratic-hjb"

    def __init__(self, dim, c=0.5, dtype=None):
        super().__init__(dim, 1.0, 0.0, 2**0.5, scasml.Ball(1.0), dtype)
        self.c = c

    def terminal(self, x):
        return self.c * (x @ x)

    def exact(self, t, x):
        k = 1 + 4 * self.c * (self.horizon - t)
        return 0.5 * self.dim * jnp.log(k) + self.c * (x @ x) / k


def test_quadratic_hjb_exact_solution(x64):
    pde = _QuadraticHJB(6, dtype=jnp.float64)
    t, x = _points(pde, 50, seed=2)
    assert float(jnp.max(jnp.abs(jax.vmap(lambda ti, xi: scasml.residual(pde, pde.exact, ti, xi))(t, x)))) < 1e-10
    np.testing.assert_allclose(jax.vmap(pde.exact)(jnp.full_like(t, 1.0), x), jax.vmap(pde.terminal)(x), atol=1e-12)


def test_debiasing_removes_the_quadratic_gradient_bias():
    """f = a‖z‖² at a noisy Ẑ is biased by a·tr Var(Ẑ) (here ≈ −30 in u, 15 standard errors); with the
    variance correction the mean error over 100 independent points is within 4 of its standard errors."""
    pde = _QuadraticHJB(10)
    assert pde.gradient_quadratic == -0.5
    t, x = _points(pde, 100, seed=4)
    exact = jax.vmap(pde.exact)(t, x)

    def mean_error_in_stderrs(debias):
        est = scasml.solve(pde, t, x, scasml.MultilevelPicard(2, 6, debias=debias), key=jax.random.key(1))
        error = np.asarray(est.u - exact, np.float64)
        return error.mean() / (np.sqrt(np.sum(np.asarray(est.stderr, np.float64) ** 2)) / len(error)), est

    biased, _ = mean_error_in_stderrs(False)
    fixed, est = mean_error_in_stderrs(True)
    assert biased < -4.0, biased  # the bias the correction exists for is really there
    assert abs(fixed) < 4.0, fixed
    assert_within_stderr(est.u, exact, est.stderr, dof=est.dof)


class _CoupledHeat(AbstractBenchmarkPDE):
    """f = c·(u − w)·Σz with w = e^{−a²d(T − t)/2}·cos(a·Σx + ½) (a heat solution, σ = 1) and g = w(T): u = w,
    and every Picard iterate from u_1 on is exact (f(V_0 = 0) = 0 and u_1 = w), so multilevel Picard at n = 2 has
    no truncation; what is left is the bias of f at the noisy nested (û, ẑ): c·Σ_j Cov(û, ẑ_j)."""

    c: float = eqx.field(static=True)
    a: float = eqx.field(static=True)

    def __init__(self, dim, c=1.0, a=0.3):
        super().__init__(dim, 1.0, 0.0, 1.0, scasml.Box(-0.5, 0.5))
        self.c, self.a = c, a

    def exact(self, t, x):
        return jnp.exp(-0.5 * self.a**2 * self.dim * (self.horizon - t)) * jnp.cos(self.a * jnp.sum(x) + 0.5)

    def terminal(self, x):
        return self.exact(self.horizon, x)

    def nonlinearity(self, t, x, u, z):
        return self.c * (u - self.exact(t, x)) * jnp.sum(z)

    @property
    def couples_value_and_gradient(self):
        return True


COUPLED_ESTIMATORS = {  # MultilevelPicard arguments
    "n2": {"levels": 2, "base": 4},
    "n3": {"levels": 3, "base": 4},  # the level-2 increment corrects f(V_old) = f(V_1) too
    "antithetic": {"levels": 2, "base": 4, "antithetic": True},  # covariances over pairs
    "qmc": {"levels": 2, "base": 4, "qmc_sets": 4},  # over shifted nets
    "quadrature": {"levels": 2, "base": 5, "variant": "quadrature"},
}


@pytest.mark.parametrize("name", sorted(COUPLED_ESTIMATORS))
def test_debiasing_removes_the_value_gradient_coupling_bias(name):
    """f = c·(u − w)·Σz at noisy nested (û, ẑ) is biased by c·Σ_j Cov(û, ẑ_j): the mean error over 1,000 points
    is 5.2 (n = 2, M = 4), 6.6 (pairs), 5.9 (nets), 7.3 (quadrature, M = 5) and 1.7 (n = 3) of its standard errors
    without the correction and −1.1, −0.4, −0.7, −0.1, −0.6 with it (at n = 3 with the sign of f(V_old)'s
    correction flipped: 8.1); the errors have the spread the reported standard errors say."""
    arguments = COUPLED_ESTIMATORS[name]
    pde = _CoupledHeat(10)
    t, x = _points(pde, 1000, seed=4)
    exact = np.asarray(jax.vmap(pde.exact)(t, x))

    def mean_error_in_standard_errors(debias):
        est = scasml.solve(pde, t, x, scasml.MultilevelPicard(**arguments, debias=debias), key=jax.random.key(1))
        error = np.asarray(est.u, np.float64) - exact
        return error.mean() / (error.std(ddof=1) / np.sqrt(error.size)), est

    fixed, est = mean_error_in_standard_errors(True)
    assert abs(fixed) < 4.0, fixed
    # the error bars' scale and tails (the bias test is the raw mean above: with 2 pairs per block the mean z-score
    # is 0.17 where the raw mean error is −0.4 standard errors, a studentised skewed mean; conftest's caveats)
    s = stderr_statistics(est.u, exact, est.stderr, dof=est.dof)
    assert abs(s["mean_z2"] - s["mean_z2_expected"]) <= s["mean_z2_bound"], s
    assert s["points_outside"] <= s["points_outside_allowed"], s
    if arguments["levels"] == 2:
        biased, _ = mean_error_in_standard_errors(False)
        assert biased > 4.0, biased  # the bias the correction exists for is really there


def test_pdes_declare_the_value_gradient_coupling():
    """VB declares it, its defect PDE inherits it, DR does not; a ``SemilinearPDE`` takes it as an argument and is
    then estimated exactly as the class that declares it."""
    assert equations.get("vb", dim=3).couples_value_and_gradient
    surrogate = scasml.FunctionSurrogate(lambda t, x: 0.0 * t)
    assert scasml.law_of_defect(equations.get("vb", dim=3), surrogate).couples_value_and_gradient
    assert not equations.get("dr", dim=3).couples_value_and_gradient
    coupled = _CoupledHeat(4)
    build = lambda flag: scasml.SemilinearPDE(
        dim=4, horizon=1.0, drift=0.0, diffusion=1.0, domain=scasml.Box(-0.5, 0.5), nonlinearity=coupled.nonlinearity,
        terminal=coupled.terminal, couples_value_and_gradient=flag)
    built = build(True)
    assert built.couples_value_and_gradient and not built.curved_in_value
    t, x = _points(coupled, 16, seed=1)
    one, two, plain = (scasml.solve(p, t, x, scasml.MultilevelPicard(2, 4), key=jax.random.key(0))
                       for p in (coupled, built, build(False)))
    np.testing.assert_array_equal(one.u, two.u)
    assert not np.array_equal(plain.u, two.u)
    curved = scasml.SemilinearPDE(dim=2, horizon=1.0, nonlinearity=lambda t, x, u, z: u**2, terminal=lambda x: x @ x,
                                  curved_in_value=True)
    assert curved.curved_in_value and not curved.couples_value_and_gradient
    assert "curved_in_value=True" in repr(curved)
    with pytest.raises(TypeError, match="couples_value_and_gradient must be True or False"):
        scasml.SemilinearPDE(dim=2, horizon=1.0, nonlinearity=coupled.nonlinearity, terminal=lambda x: x @ x,
                             couples_value_and_gradient=1)


def _prng_sites(jaxpr) -> int:
    """Random-number primitives in a jaxpr, nested jaxprs included."""
    names = ("random_bits", "threefry2x32", "random_split", "random_fold_in")
    total = 0
    for eqn in jaxpr.eqns:
        total += any(name in eqn.primitive.name for name in names)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _prng_sites(inner)
    return total


def test_multilevel_picard_draws_its_noise_in_a_fixed_number_of_prng_calls():
    """Each PRNG call site compiles to its own large XLA kernel, so the noise of a whole recursion is drawn at once:
    one draw of random bits, whatever the levels (there were 43 call sites at n = 2 when drawn level by level)."""
    pde = scasml.equations.get("vb", dim=5)
    t, x = jnp.asarray(0.1), jnp.zeros(5)
    for variant in ("full_history", "quadrature"):
        sites = []
        for levels in (1, 2, 3):
            est = scasml.MultilevelPicard(levels, 4, variant=variant)
            jaxpr = jax.make_jaxpr(lambda k, t, x, est=est: est.estimate(pde, k, t, x))(jax.random.key(0), t, x)
            sites.append(_prng_sites(jaxpr.jaxpr))
        assert sites == [1, 1, 1], (variant, sites)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_noise_is_standard_normal_and_uniform(dtype):
    """The estimators' noise, converted from one draw of random bits: mean, variance and both 2.5 % tails of
    the normals and the mean of the uniforms within 4 standard errors; uniforms strictly inside (0, 1)."""
    from scasml.estimators._picard import _draw_noise, open_unit_interval

    with jax.enable_x64(dtype == "float64"):
        noise, extra = _draw_noise(jax.random.key(0), (40_000, 20_000, 7), 10, jnp.dtype(dtype))
        assert extra.shape == (0,)
        z, u = np.asarray(noise.normals, np.float64).ravel(), np.asarray(noise.uniforms, np.float64)
        assert noise.normals.dtype == jnp.dtype(dtype) and noise.normals.shape == (40_000, 10)
        assert noise.keys.shape == (7,) and len({tuple(np.asarray(jax.random.key_data(k))) for k in noise.keys}) == 7
        n = z.size
        assert abs(z.mean()) < 4 / np.sqrt(n)
        assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
        for tail in (np.mean(z < -1.959964), np.mean(z > 1.959964)):
            assert abs(tail - 0.025) < 4 * np.sqrt(0.025 * 0.975 / n)
        assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
        extremes = open_unit_interval(jnp.asarray([0, 0xFFFFFFFF] * 2, jnp.uint32), jnp.dtype(dtype))
        assert 0 < float(extremes.min()) and float(extremes.max()) < 1 and np.all(np.isfinite(np.asarray(z)))


def test_sample_times_that_round_to_the_horizon_stay_finite(monkeypatch):
    """s = t + ΔU² rounds to T in float32 for U a few ulps below 1 (t = 0.38115108, T = 0.5, U = 1 − 2⁻²⁴): the
    inner estimates there must use T − s = Δ(1 − U)(1 + U) > 0, not the rounded T − s = 0 (a 0/0 in z)."""
    from scasml.estimators import _picard

    draw = _picard._draw_noise

    def largest_uniforms(key, size, dim, dtype, extra=0):
        noise, words = draw(key, size, dim, dtype, extra)
        return _picard._Noise(noise.normals, jnp.full_like(noise.uniforms, 1 - 2.0**-24), noise.keys), words

    monkeypatch.setattr(_picard, "_draw_noise", largest_uniforms)
    pde = scasml.equations.get("vb", dim=5)
    t = jnp.asarray(0.38115108, jnp.float32)
    assert float(t + (pde.horizon - t) * (1 - 2.0**-24) ** 2) == pde.horizon  # the rounding really happens
    est = scasml.MultilevelPicard(2, 4).estimate(pde, jax.random.key(0), t, 0.1 * jnp.ones(5))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in (est.u, est.z, est.u_stderr, est.z_stderr))
