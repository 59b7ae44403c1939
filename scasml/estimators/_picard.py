"""Multilevel Picard (MLP) estimators of (u, z) for semilinear PDEs with gradient-dependent nonlinearities."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import as_count, is_count, is_integer
from ._base import (
    AbstractEstimator,
    Component,
    IncrementRequest,
    PointEstimate,
    SourceRequest,
    TerminalRequest,
    clip_pair,
    combine,
    evaluate_requests,
    gauss_legendre,
    group_means,
    inverse_gamma,
    pair_means,
    path_samples,
    random_time_component,
    random_times,
    terminal_summands,
)
from ._qmc import (
    MAX_SOBOL_DIMENSIONS,
    normal_quantile,
    open_unit_interval,
    shift_word_count,
    shifted_sobol_normals,
    shifted_sobol_uniforms,
)

_VARIANTS = ("full_history", "quadrature")


class MultilevelPicard(AbstractEstimator):
    """Multilevel Picard iteration V_n = (u, z) (E–Hutzenthaler–Jentzen–Kruse; Hutzenthaler–Kruse for z):

        V_n(t, x) = (g(x), 0) + mean_{M^n paths} (g(X_T) − g(x))·(1, ΔW_T/(T − t))
                  + Σ_{l=0}^{n−1} mean over samples (s, X_s) of
                        [f(s, X_s, V_l) − 1{l≥1} f(s, X_s, V_{l−1})]·(1, ΔW_s/(s − t)) / p(s)

    with V_0 = 0 and V_l, V_{l−1} independent recursive estimates at the same sample point.
    ``variant="full_history"``: M^(n−l) random times per level (density ∝ (s − t)^(−1/2)).
    ``variant="quadrature"``: Gauss–Legendre nodes q_l = round(Γ⁻¹(M^((n−l)/2))) with round(M^((n−l)/2)) paths each.
    ``clip`` (optional; a biased heuristic from the paper) clips u and every z component to [−clip, clip] at
    every level.
    ``debias`` (default True; used when the PDE declares ``gradient_quadratic`` = a, i.e. f = a‖z‖² + terms
    affine in z, and ``clip`` is None): f evaluated at a recursive estimate Ẑ is biased by a·tr Var(Ẑ), which
    grows like d/M (HJB in 100 d: the dominant error); each f(V_l) is corrected by −a·Σ_j se(Ẑ_j)², with the
    unbiased variance estimate of Ẑ from its own samples (the U-statistic for ‖E Ẑ‖²). Where the PDE declares
    ``curved_in_value`` (f curved in u, e.g. DR's (u − u*)²), each f(V_l) is likewise corrected by
    −½·∂²f/∂u²(V_l)·se(Û)² (autodiff; exact for f quadratic in u), and where it declares
    ``couples_value_and_gradient`` (∂²f/∂u∂z ≠ 0, e.g. VB's s·u·Σz) by −Σ_j ∂²f/∂u∂z_j(V_l)·Cov(Û, Ẑ_j), the
    covariance of the estimate's u and z from its own samples (exact for f bilinear in (u, z)).

    Variance reduction (all unbiased, off by default; ``antithetic=True, qmc_sets=8, qmc_points=32,
    min_top_samples=20`` at n = 2, M = 10 gives the same error for 0.38–0.68 of the evaluations on the shipped
    PINNs, intervals narrower per evaluation, 95 % coverage 93–95 %; its smaller standard error leaves the Picard
    truncation below a larger share of the error; see experiments/RESULTS.md, "Variance reduction"):
    ``antithetic`` (default False): every path sample comes in a pair (N, −N) sharing its time, and a summand is the
    pair's mean (standard errors over pairs). The Elworthy–Bismut–Li weight is odd in N, so a pair's z-summand is
    the central difference (h(X⁺) − h(X⁻))·ω/2 and its u-summand loses the odd part of h; unbiased for any
    dynamics. Odd sample counts (an odd base) are rounded up to even ones (one more sample), and counts below 4 to 4
    (two pairs: a nested estimate's variance, which ``debias`` subtracts, needs two units). A block of the
    reported estimate with fewer than ``MIN_PAIRED_TOP`` = 20 samples keeps independent ones: its standard error
    would otherwise rest on too few pairs (intervals too narrow too often).
    ``terminal_factor`` (default 1): K·M^l terminal paths for every V_l. Terminal values are the cheapest
    evaluations (for the defect PDE a surrogate value, against a residual's Laplacian sweep) and, on the shipped
    PINNs, carry most of the variance (experiments/RESULTS.md, "Variance reduction").
    ``min_top_samples`` (default 1): every block of the reported estimate V_n (its terminal paths and each level)
    draws at least this many samples; the inner V_l are unchanged. At n = 2 the last level has only M samples,
    and where the other blocks' variance is reduced they dominate an error bar whose variance estimate then rests
    on M − 1 degrees of freedom of a heavy-tailed summand (95 % intervals then cover 92 % on BSB-100).
    ``qmc_sets`` R (default 0: off; else ≥ 2): the terminal paths of the reported estimate and, for full history,
    its level-0 samples (time uniform and path) are randomised quasi-Monte Carlo: R independent random digital
    shifts of one Sobol' net each, of a power of two points (the count rounded up to R such nets), Gaussians by
    the inverse normal CDF; unbiased, standard error over the R shifted nets. These blocks hold most of the
    shipped PINNs' variance, and their integrands are smooth in the noise.
    ``qmc_points`` P (default 1; with ``qmc_sets``, a power of two): each net has at least P points (the blocks
    grow to R·P samples). The standard error over R nets rests on R − 1 degrees of freedom, and a net's gain grows
    with its size: R = 8 nets of P = 32 points keep both (the interval's t quantile at ν ≥ 7, and the gain of
    4 × 32-point nets), where R = 4 nets of 32 give intervals at ν ≈ 3 and R = 16 nets of 8 lose the gain.
    ``inner_base`` b (default None: ``base``): the nested estimates V_l inside the reported estimate use base b. A
    level's variance is ≈ A/m + B/(m·b) for m samples at cost ≈ m·(2b + 1) (n = 2; A: the spread of the summand
    over sample points, B: that of one nested sample); where A dominates, more samples of cheaper nested
    estimates (with ``min_top_samples``, e.g. 40 samples of V_1 of base 3 instead of 10 of base 10) are both
    more accurate and an error bar on more degrees of freedom. The Picard truncation u_n − u is unchanged.

    The standard error is that of V_n about its mean, the Picard iterate u_n: the truncation u_n − u is not in it
    (on the VB test set-up at n = 2 about a quarter of a reduced standard error, where 95 % intervals cover
    93 %; it does not shrink with M, and n = 3 removes it). Each estimate carries its last two Picard corrections
    (``PointEstimate.u_corrections``), from which ``solve``/``calibrate`` estimate the truncation over the batch
    (``.truncation`` of their results) and warn where it is a sizeable share of the standard error.
    ``next_correction`` K (default 0: off; full history, n ≥ 2): the reported estimate adds the linearised next
    Picard correction Δ_{n+1} ≈ E ∫_t^T ds ∂f(s, X_s)·(Δ_n, σᵀ∇Δ_n)(s, X_s), which removes most of the truncation
    u − u_n that no sample size does (VB-20 with a close surrogate: 1.4e-3, 0.45 of the standard error at M = 10).
    It is estimated from the last level's own samples: Δ_n(s, X_s) is that level's integrand along the rest of the
    path, so each sample (r, X_r) of the last level adds its increment linearised, Y = ∂f(r, X_r)·(V_{n−1} −
    V_{n−2}) (the nested estimates' noise enters linearly: on LQG-100 the correction's added variance falls by
    about half against the increment itself), times h, the mean over K points s of the Brownian bridge from (t, x)
    to (r, X_r) of ∂f(s, X_s)·(1, (W_r − W_s)/(r − s)) (∂f at the PDE's increment inputs, i.e. at (û, σᵀ∇û) for
    the defect PDE; r − s drawn ∝ (r − s)^(−1/2); the points in antithetic pairs, and from K = 4 on stratified so
    that a constant ∂f is integrated over the bridge exactly: on BSB-100 the correction adds 27 % to the standard
    error² at K = 4, 51 % at K = 2). K evaluations of the increment inputs per sample; its noise is part of the
    standard error; only u is corrected (z keeps the level's own summands). For the law of defect
    only (``calibrate``; ``solve`` on a PDE itself would linearise f at u = 0, far from the solution) and dynamics
    with ``brownian_transitions``; a bias of second order in the corrections remains (linearisation at û, and the
    Picard corrections after the next).
    For a linear PDE the l ≥ 1 terms vanish and are skipped (the estimator reduces to Feynman–Kac).
    Cost per query point: see ``evaluations``; for full history ≈ 2·M^n terminal and source evaluations at n = 2.
    The error decreases like M^(−n/2) up to logarithmic factors (full history).
    """

    levels: int = eqx.field(static=True, default=2, converter=as_count)
    base: int = eqx.field(static=True, default=10, converter=as_count)
    variant: str = eqx.field(static=True, default="full_history")
    clip: float | None = eqx.field(static=True, default=None)
    debias: bool = eqx.field(static=True, default=True)
    antithetic: bool = eqx.field(static=True, default=False)
    terminal_factor: int = eqx.field(static=True, default=1, converter=as_count)
    min_top_samples: int = eqx.field(static=True, default=1, converter=as_count)
    qmc_sets: int = eqx.field(static=True, default=0, converter=as_count)
    inner_base: int | None = eqx.field(static=True, default=None, converter=as_count)
    qmc_points: int = eqx.field(static=True, default=1, converter=as_count)
    next_correction: int = eqx.field(static=True, default=0, converter=as_count)

    def __check_init__(self):
        for label, value in (("levels", self.levels), ("base", self.base)):
            if not is_count(value):
                raise ValueError(f"MultilevelPicard {label} must be a positive integer, got {value!r}")
        if self.base < 2:
            raise ValueError(f"MultilevelPicard base must be ≥ 2 (to estimate a standard error), got {self.base}")
        if self.variant not in _VARIANTS:
            raise ValueError(f"MultilevelPicard variant must be one of {_VARIANTS}, got {self.variant!r}")
        for label, value in (("base", self.base), ("inner_base", self.inner_base)):
            if self.variant == "quadrature" and is_count(value) and value < 3:
                raise ValueError(
                    f"the quadrature variant needs {label} ≥ 3: with 2 each time node gets round(√2) = 1 path, so no "
                    "standard error can be estimated (use ≥ 3 or variant='full_history')"
                )
        if self.clip is not None and not (
            isinstance(self.clip, (int, float)) and not isinstance(self.clip, bool) and 0 < self.clip < math.inf
        ):
            raise ValueError(f"MultilevelPicard clip must be None or a positive finite number, got {self.clip!r}")
        if not isinstance(self.debias, bool):
            raise ValueError(f"MultilevelPicard debias must be True or False, got {self.debias!r}")
        if not is_count(self.terminal_factor):
            raise ValueError(f"MultilevelPicard terminal_factor must be a positive integer, got "
                             f"{self.terminal_factor!r}")
        if not isinstance(self.antithetic, bool):
            raise ValueError(f"MultilevelPicard antithetic must be True or False, got {self.antithetic!r}")
        if not (is_integer(self.qmc_sets) and (self.qmc_sets == 0 or self.qmc_sets >= 2)):
            raise ValueError(f"MultilevelPicard qmc_sets must be 0 (off) or an integer ≥ 2 (a standard error needs "
                             f"two independent randomisations), got {self.qmc_sets!r}")
        if not (is_count(self.qmc_points) and self.qmc_points & (self.qmc_points - 1) == 0):
            raise ValueError(f"MultilevelPicard qmc_points must be a power of two (a Sobol' net is balanced at 2^k "
                             f"points), got {self.qmc_points!r}")
        if self.qmc_points > 1 and not self.qmc_sets:
            raise ValueError("MultilevelPicard qmc_points applies to quasi-Monte Carlo nets: set qmc_sets ≥ 2 too")
        if self.inner_base is not None and not (is_count(self.inner_base) and self.inner_base >= 2):
            raise ValueError(f"MultilevelPicard inner_base must be None (the base) or an integer ≥ 2, got "
                             f"{self.inner_base!r}")
        if not is_count(self.min_top_samples):
            raise ValueError(f"MultilevelPicard min_top_samples must be a positive integer, got "
                             f"{self.min_top_samples!r}")
        if not (is_integer(self.next_correction) and self.next_correction >= 0):
            raise ValueError(f"MultilevelPicard next_correction must be 0 (off) or a positive integer (bridge points "
                             f"per sample of the last level), got {self.next_correction!r}")
        if self.next_correction and (self.variant != "full_history" or self.levels < 2):
            raise ValueError("MultilevelPicard next_correction needs variant='full_history' and levels ≥ 2 (it is "
                             f"built on the last level's samples), got variant={self.variant!r}, levels={self.levels}")

    # ---- the plan: the recursion, built once ---------------------------------------------------------------
    def plan(self, pde) -> Plan:
        """The recursion of V_levels for ``pde`` as a ``Plan`` (shared sub-plans: a DAG of ``levels`` nodes)."""
        return _build_plan(self.levels, self.base, self.variant, bool(pde.is_linear), self.terminal_factor,
                           self.antithetic, self.min_top_samples, self.qmc_sets, self.inner_base,
                           self.qmc_points)

    def evaluations(self, pde) -> dict[str, int]:
        plan = self.plan(pde)
        cost = plan.cost
        return {"terminal": cost.terminal, "source": cost.source,
                "increment": cost.increment + self._bridge_points(plan)}

    def check(self, pde) -> None:
        """``next_correction`` linearises f at (0, 0): only about a surrogate (the law of defect), and only for
        dynamics whose bridge it can draw."""
        if not self.next_correction or pde.is_linear:
            return
        if not pde.is_defect:
            raise ValueError("MultilevelPicard next_correction linearises the generator at the surrogate, so it "
                             "applies to the law of defect (scasml.calibrate), not to a PDE solved on its own "
                             f"({pde.name}): use levels={self.levels + 1} there")
        if not pde.dynamics.brownian_transitions:
            raise ValueError(f"MultilevelPicard next_correction needs dynamics driven by Brownian increments alone "
                             f"(brownian_transitions), not {type(pde.dynamics).__name__}: use levels="
                             f"{self.levels + 1}")

    def _bridge_points(self, plan: Plan) -> int:
        """Increment inputs evaluated for ``next_correction`` per point (0 when off or for a linear PDE)."""
        last = plan.levels[-1]
        return self.next_correction * last.count if last.new is not None else 0

    # ---- the estimator ----------------------------------------------------------------------------------
    def estimate_before_horizon(self, pde, key, t, x) -> PointEstimate:
        plan = self.plan(pde)
        bridged = self._bridge_points(plan) > 0
        if bridged:
            self.check(pde)  # also when called directly, not through solve/calibrate
            key, bridge_key = jax.random.split(key)
        noise, quasi = self._draw(pde, plan, key, x.dtype)
        delta = pde.horizon - t
        samples = _samples(pde, plan, noise, t, x, delta, self.antithetic, quasi=quasi)
        if bridged:
            samples["bridge"] = _bridge_samples(pde, t, x, delta, samples["levels"][-1], self.next_correction,
                                                bridge_key)
        evaluated = evaluate_requests(pde, samples)
        components = self._components(pde, plan, evaluated, delta, top=True)
        correction = components.pop() if bridged else None  # the next correction's part of the last block
        est = combine(evaluated["g_x"], jnp.zeros_like(x), components)
        u, z = clip_pair(est.u, est.z, self.clip)
        return PointEstimate(u, z, est.u_stderr, est.z_stderr, est.u_dof, est.z_dof,
                             picard_corrections(evaluated["g_x"], components, correction))

    def _draw(self, pde, plan: Plan, key, dtype) -> tuple[_Noise, _QuasiNoise | None]:
        """The noise of one V_n evaluation and, with ``qmc_sets``, its quasi-Monte Carlo nets: terminal paths and
        (full history) level-0 samples (time uniform + path), their shifts from the same draw of bits."""
        rows, sets, first = pde.dynamics.noise_rows, plan.nets, plan.levels[0]
        dims = rows * pde.dim
        level_points = first.samples // first.nets if first.nets else 0
        terminal_words = shift_word_count(sets, plan.paths // sets, dims, dtype) if sets else 0
        level_words = shift_word_count(first.nets, level_points, dims + 1, dtype) if first.nets else 0
        noise, words = _draw_noise(key, plan.cost.noise(rows), pde.dim, dtype, terminal_words + level_words)
        if not sets:
            return noise, None
        terminal = shifted_sobol_normals(words[:terminal_words], sets, plan.paths // sets, dims, dtype)
        level_uniform = level_normals = None
        if first.nets:
            unit = shifted_sobol_uniforms(words[terminal_words:], first.nets, level_points, dims + 1, dtype)
            level_uniform = unit[:, 0]
            level_normals = normal_quantile(unit[:, 1:]).reshape((-1, rows, pde.dim))
        return noise, _QuasiNoise(terminal.reshape((plan.paths, rows, pde.dim)), level_uniform, level_normals)

    # The estimate is computed in three passes over the plan, so that every equation (surrogate) evaluation of
    # the whole recursion happens in one batch per kind (one copy of, e.g., the Laplacian code in the compiled
    # program): ``_samples`` draws all sample points from the noise alone (they depend on no evaluation);
    # ``evaluate_requests`` evaluates the terminal values, sources and increment inputs at all of them;
    # ``_components`` forms the Picard sums.

    def _components(self, pde, plan: Plan, samples: dict, delta, top: bool = False) -> list[Component]:
        """The independent parts of V_n(t, x) − g(x) from evaluated ``_samples`` (requests replaced by their
        values): the terminal paths, then one per level l = 0 … n − 1; ``delta`` = T − t. With ``next_correction``
        (``samples["bridge"]``, top only) the last level's block includes the next correction, whose part alone
        follows as one more component (not an independent part: for ``picard_corrections`` only)."""
        def pair(component, count):
            return pair_means(component) if _paired(self.antithetic, count, top) else component

        terminal = terminal_summands(samples["ends"], samples["g_x"], samples["weights"], delta)
        if plan.nets:  # the units are the shifted nets
            components = [group_means(terminal, plan.paths // plan.nets)]
        else:
            components = [pair(terminal, plan.paths)]
        for level, entry in zip(plan.levels, samples["levels"], strict=True):
            bridged = top and "bridge" in samples and level is plan.levels[-1]
            if level.new is None:
                values = entry["source"]
            else:
                def increment(new_samples, old_samples, inputs, s, point, remaining, level=level, bridged=bridged):
                    new = self._value(pde, level.new, new_samples, point, remaining)
                    old = None if level.old is None else self._value(pde, level.old, old_samples, point, remaining)
                    value = self._increment(pde, s, point, new, old, inputs)
                    if not bridged:
                        return value
                    return value, _linear_increment(pde, s, point, new, old, inputs)

                new_samples, old_samples = entry["children"]
                values = jax.vmap(jax.vmap(increment))(new_samples, old_samples, entry["inputs"], entry["s"],
                                                       entry["points"], entry["remaining"])
                if bridged:
                    values, linear_values = values
            if plan.random_times:
                component = random_time_component(values[0], entry["weights"][0], entry["uniform"], delta)
            else:
                component = _quadrature_component(delta, entry["elapsed"], entry["weights"], values)
            correction = None
            if bridged:
                h = _bridge_factor(pde, samples["bridge"])
                linear = random_time_component(linear_values[0], entry["weights"][0], entry["uniform"], delta)
                correction = Component(linear.u * h[None], jnp.zeros_like(component.z))
                component = Component(component.u + correction.u, component.z)
            if level.nets:  # shifted nets, as the terminal paths
                components.append(group_means(component, level.samples // level.nets))
            else:
                components.append(pair(component, level.samples))
            if correction is not None:
                components.append(pair(correction, level.samples))
        return components

    def _value(self, pde, plan: Plan, samples: dict, x, delta) -> _Nested:
        """V_n at (t, x) from its evaluated samples (``delta`` = T − t), clipped when ``clip`` is set, with what
        ``debias`` needs of it."""
        components = self._components(pde, plan, samples, delta)
        est = combine(samples["g_x"], jnp.zeros_like(x), components)
        u, z = clip_pair(est.u, est.z, self.clip)
        covariance = sum(comp.value_gradient_covariance() for comp in components) \
            if pde.couples_value_and_gradient else None  # only what the debias uses is computed
        return _Nested(u, z, est.u_stderr, est.z_stderr, covariance)

    def _increment(self, pde, s, point, new: _Nested, old: _Nested | None, inputs):
        """f(V_new) − f(V_old), debiased (``debias``, no ``clip``): for a generator a‖z‖² + (affine in z) minus
        a·(Σse_z²_new − Σse_z²_old); for one curved in u minus ½·(∂²f/∂u²(V_new)·se_u²_new − the same of V_old);
        for one coupling u and z minus (Σ_j ∂²f/∂u∂z_j(V_new)·Cov(û, ẑ_j)_new − the same of V_old)."""
        old_pair = None if old is None else (old.u, old.z)
        inc = pde.nonlinearity_increment(s, point, (new.u, new.z), old_pair, inputs)
        if not self.debias or self.clip is not None:
            return inc
        a = pde.gradient_quadratic
        if a is not None:
            old_variance = 0.0 if old is None else jnp.sum(old.z_stderr**2)
            inc = inc - a * (jnp.sum(new.z_stderr**2) - old_variance)
        if pde.curved_in_value:
            inc = inc - 0.5 * _value_curvature_bias(pde, s, point, new, old, inputs)
        if pde.couples_value_and_gradient:
            inc = inc - _coupling_bias(pde, s, point, new, old, inputs)
        return inc


#: The variance-reduction options of ``default_estimator`` (experiments/RESULTS.md, "Variance reduction").
REDUCED_OPTIONS = {"antithetic": True, "qmc_sets": 8, "qmc_points": 32, "min_top_samples": 40, "next_correction": 4}


def next_correction_applies(pde) -> bool:
    """Whether ``MultilevelPicard(next_correction=K)`` applies to ``pde``: a law of defect (f is linearised at the
    surrogate) under dynamics with ``brownian_transitions`` (its bridge)."""
    return bool(pde.is_defect and pde.dynamics.brownian_transitions)


def default_estimator(pde) -> MultilevelPicard:
    """The estimator ``scasml.solve`` and ``scasml.calibrate`` use when given none, for ``pde``, the PDE it solves
    (for ``calibrate``: the law of defect, ``law_of_defect(pde, surrogate)``).

    MultilevelPicard(2, 10) with ``REDUCED_OPTIONS`` (antithetic pairs, 8 randomised quasi-Monte Carlo nets of
    32 points, at least 40 samples in every block of the reported estimate, the linearised next Picard correction
    with 4 bridge points; 1,553 evaluations per point at n = 2 against 421) wherever they keep the 95 % intervals
    honest: for a linear PDE (no Picard truncation) and for the law of defect under dynamics with
    ``brownian_transitions`` (constant coefficients, geometric Brownian motion), where the correction removes the
    n = 2 truncation that their smaller standard error would expose. On the shipped PINNs: the relative L2 error
    0.33–0.49× plain's, err² × evaluations 0.41–0.90 and err² × seconds 0.35–0.90 of plain, intervals covering
    94.2–95.8 % (experiments/RESULTS.md). Elsewhere (``solve`` on a semilinear PDE itself, whose increments start
    from u = 0; Ornstein–Uhlenbeck or Itô dynamics) plain MultilevelPicard(2, 10), and so where the nets would need
    more dimensions (noise rows × d + 1) than the Sobol' generator has (``MAX_SOBOL_DIMENSIONS`` = 21,201).
    """
    nets_fit = pde.dynamics.noise_rows * pde.dim + 1 <= MAX_SOBOL_DIMENSIONS
    if nets_fit and (pde.is_linear or next_correction_applies(pde)):
        return MultilevelPicard(2, 10, **REDUCED_OPTIONS)
    return MultilevelPicard(2, 10)


class _Nested(NamedTuple):
    """A nested estimate V_l at a sample point as the increments use it: (u, z), their standard errors and the
    estimated covariance (d,) of û with each ẑ_j (None unless the PDE couples u and z)."""

    u: jax.Array
    z: jax.Array
    u_stderr: jax.Array
    z_stderr: jax.Array
    covariance: jax.Array | None


def _value_curvature_bias(pde, s, point, new: _Nested, old: _Nested | None, inputs):
    """∂²f/∂u²(V_new)·se_u²_new − ∂²f/∂u²(V_old)·se_u²_old: twice the bias that the estimates' noise gives
    f(V_new) − f(V_old) (autodiff of the increment in each u; V_0 = 0 is exact)."""
    def increment(u_new, u_old):
        old_pair = None if old is None else (u_old, old.z)
        return pde.nonlinearity_increment(s, point, (u_new, new.z), old_pair, inputs)

    u_old = jnp.zeros_like(new.u) if old is None else old.u
    bias = jax.grad(jax.grad(increment, 0), 0)(new.u, u_old) * new.u_stderr**2
    if old is not None:  # the increment is −f(V_old) in u_old
        bias = bias + jax.grad(jax.grad(increment, 1), 1)(new.u, u_old) * old.u_stderr**2
    return bias


def _coupling_bias(pde, s, point, new: _Nested, old: _Nested | None, inputs):
    """Σ_j ∂²f/∂u∂z_j(V_new)·Cov_new(û, ẑ_j) − the same of V_old: the bias that the estimates' correlated noise
    gives f(V_new) − f(V_old) (autodiff of the increment: ∂/∂u of its z-gradient along the covariance)."""
    def increment(u_new, z_new, u_old, z_old):
        old_pair = None if old is None else (u_old, z_old)
        return pde.nonlinearity_increment(s, point, (u_new, z_new), old_pair, inputs)

    u_old, z_old = (jnp.zeros_like(new.u), jnp.zeros_like(new.z)) if old is None else (old.u, old.z)
    args = (new.u, new.z, u_old, z_old)

    def along(u_arg, z_arg, covariance):
        slope = lambda *a: jnp.vdot(jax.grad(increment, z_arg)(*a), covariance)
        return jax.grad(slope, u_arg)(*args)

    bias = along(0, 1, new.covariance)
    if old is not None:  # the increment is −f(V_old) in (u_old, z_old)
        bias = bias + along(2, 3, old.covariance)
    return bias


def _slope(pde, s, point, inputs, tangent_u, tangent_z):
    """∂f(s, X_s)·(tangent_u, tangent_z): forward mode of the increment f(s, X_s, ·) − f(s, X_s, 0, 0) at (0, 0)."""
    zero = (jnp.zeros_like(tangent_u), jnp.zeros_like(tangent_z))
    increment = lambda pair: pde.nonlinearity_increment(s, point, pair, None, inputs)
    return jax.jvp(increment, (zero,), ((tangent_u, tangent_z),))[1]


def _linear_increment(pde, s, point, new: _Nested, old: _Nested | None, inputs):
    """∂f(s, X_s)·(V_new − V_old), the increment f(V_new) − f(V_old) linearised at (0, 0): the next correction's
    summand. Without f's curvature it carries none of the nested estimates' noise squared (which, e.g. through
    a‖Ẑ‖² in 100 dimensions, dominates the increment's spread on LQG)."""
    if old is None:
        return _slope(pde, s, point, inputs, new.u, new.z)
    return _slope(pde, s, point, inputs, new.u - old.u, new.z - old.z)


def picard_corrections(g_x, components: list[Component], correction: Component | None = None):
    """(Δ_{n−1}, Δ_n, var Δ_n) (3,) at one point: Δ_n = u_n − u_{n−1}, the mean of the last level's block, with
    its estimated variance, and Δ_{n−1} (u_1 = g(x) + the terminal and level-0 blocks at n = 2, the level n − 2
    block above); zeros for n = 1 and for linear PDEs (no corrections: V_n is Feynman–Kac). With the next
    correction's part of the last block (``next_correction``): (Δ_n, Δ_{n+1}, var Δ_{n+1}), Δ_n the rest of it."""
    if len(components) < 3:
        return jnp.zeros(3, g_x.dtype)
    parts = [comp.mean_and_variance() for comp in components]  # (mean, variance of the mean) of (u, z)
    means = [mean[0] for mean, _ in parts]
    if correction is not None:
        mean, variance = correction.mean_and_variance()
        return jnp.stack([means[-1] - mean[0], mean[0], variance[0]])
    before = g_x + means[0] + means[1] if len(components) == 3 else means[-2]
    return jnp.stack([before, means[-1], parts[-1][1][0]])


def _bridge_samples(pde, t, x, delta, entry: dict, points: int, key) -> dict:
    """``points`` K points of the Brownian bridge from (t, x) to each sample (r, X_r) of the last level ``entry``
    (full history: r − t = ΔU², X_r driven by W_{r−t} = √(r − t)·ω): s = t + (r − t)(1 − V²) with V uniform
    (r − s = (r − t)V², density ∝ (r − s)^(−1/2) on (t, r)), W_{s−t} from the bridge, and the tangent
    (2(r − t)V, 2√(r − t)·(V·ω − √(1 − V²)·N)) = 2(r − t)V·(1, (W_{r−t} − W_{s−t})/(r − s)) along which ∂f is
    taken (no division: finite as V → 0). The points come in pairs (V, N), (V, −N), and from K = 3 on the pairs'
    V in pairs (V, 1 − V): where ∂f is constant along the bridge (BSB), N cancels in each pair, what is left is
    linear in V, and the mean over each four points is exactly the mean over the bridge. Returns the increment-input
    requests at (s, X_s) (m, K) and tangents."""
    span = delta * entry["uniform"] ** 2  # r − t (m,)
    omega = entry["weights"][0]  # (m, d): ω = the sample's standard normal row
    m, d = omega.shape
    k_v, k_n = jax.random.split(key)
    half = (points + 1) // 2  # antithetic pairs (V, N), (V, −N); an odd K drops the last −N
    v = jax.random.uniform(k_v, (m, (half + 1) // 2), x.dtype)  # V = 0 is harmless (s = r), and so is V = 1 (s = t)
    v = jnp.concatenate([v, 1 - v], axis=1)[:, :half]  # the pairs' V in antithetic pairs (V, 1 − V) from K = 3 on
    v = jnp.tile(v, (1, 2))[:, :points]
    normals = jax.random.normal(k_n, (m, half, d), x.dtype)
    normals = jnp.concatenate([normals, -normals], axis=1)[:, :points]
    keep = jnp.sqrt((1 - v) * (1 + v))  # √(1 − V²)
    elapsed = span[:, None] * keep**2  # s − t
    bridge_normals = keep[..., None] * omega[:, None] + v[..., None] * normals  # W_{s−t}/√(s − t)
    bridge_points, _ = path_samples(pde, t, x, elapsed, bridge_normals[..., None, :])
    tangent_u = 2 * span[:, None] * v
    tangent_z = 2 * jnp.sqrt(span)[:, None, None] * (v[..., None] * omega[:, None] - keep[..., None] * normals)
    return {"inputs": IncrementRequest(t + elapsed, bridge_points), "s": t + elapsed, "points": bridge_points,
            "tangent": (tangent_u, tangent_z)}


def _bridge_factor(pde, bridge: dict):
    """h (m,) of ``next_correction``: the mean over the bridge points of ∂f(s, X_s) along the tangents (forward
    mode of the increment f(s, X_s, ·) − f(s, X_s, 0, 0) at (0, 0))."""
    slope = functools.partial(_slope, pde)
    slopes = jax.vmap(jax.vmap(slope))(bridge["s"], bridge["points"], bridge["inputs"], *bridge["tangent"])
    return jnp.mean(slopes, axis=1)


# ---- the plan ------------------------------------------------------------------------------------------------
class Cost(NamedTuple):
    """Per-point counts of one V_n evaluation, its whole recursion included: evaluations of g, of sources
    f(·, 0, 0) (for the defect PDE: residuals) and of increment inputs (û, σᵀ∇û), and the random numbers drawn:
    path samples (each ``noise_rows`` normal rows), uniforms and source keys."""

    terminal: int
    source: int
    increment: int
    paths: int
    uniforms: int
    keys: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(a + b for a, b in zip(self, other, strict=True)))

    def times(self, k: int) -> Cost:
        return Cost(*(k * a for a in self))

    def noise(self, rows: int) -> tuple[int, int, int]:
        """(normal rows of length d, uniforms, keys) for dynamics with ``rows`` rows per path sample."""
        return self.paths * rows, self.uniforms, self.keys


class LevelPlan(NamedTuple):
    """Level l of V_n: ``blocks`` × ``samples`` points (s, X_s) with, for l ≥ 1, the plans of the independent V_l
    (``new``) and V_{l−1} (``old``; None for V_0 = 0) evaluated at each; ``new`` is None at level 0 (sources).
    ``nets`` R > 0: the samples (time uniform + path) are R shifted quasi-Monte Carlo nets, the units of the
    standard error."""

    level: int
    blocks: int
    samples: int
    new: Plan | None
    old: Plan | None
    nets: int = 0

    @property
    def count(self) -> int:
        return self.blocks * self.samples


class Plan(NamedTuple):
    """V_n: ``paths`` terminal paths and its levels; ``random_times``: full history (times ∝ (s − t)^(−1/2)),
    else Gauss–Legendre nodes (``blocks`` of a level = its nodes). ``cost`` covers the whole recursion. ``nets``
    R > 0: the terminal paths are R shifted quasi-Monte Carlo nets (their units for the standard error)."""

    n: int
    paths: int
    random_times: bool
    levels: tuple[LevelPlan, ...]
    cost: Cost
    nets: int = 0


@functools.cache
def _build_plan(n: int, base: int, variant: str, linear: bool, terminal_factor: int = 1,
                antithetic: bool = False, floor: int = 1, qmc_sets: int = 0,
                inner_base: int | None = None, qmc_points: int = 1) -> Plan:
    """The plan of V_n: M^n terminal paths; levels 0 … n − 1 (only level 0 for a linear PDE, whose increments
    vanish) with (1, M^(n−l)) random times (full history) or (q_l nodes, round(M^((n−l)/2)) paths) (quadrature,
    q_l = round(Γ⁻¹(M^((n−l)/2)))); ``terminal_factor`` × M^n terminal paths; ``antithetic``: every count rounded
    up to an even number (pairs), at least 4; ``floor``: at least this many samples in each of this V_n's own
    blocks (not in the nested plans); ``qmc_sets`` R > 0: this V_n's terminal paths and (full history) level-0
    samples are R shifted nets each (``_whole_nets``, not pairs) of at least ``qmc_points`` points; ``inner_base``:
    the nested plans' base."""
    random_times = variant == "full_history"
    levels = []
    even = (lambda k: max(k + k % 2, 4)) if antithetic else (lambda k: k)  # ≥ 2 pairs: a variance for debias
    paths = max(terminal_factor * base**n, floor)
    paths = _whole_nets(paths, qmc_sets, qmc_points) if qmc_sets else even(paths)
    cost = Cost(paths + 1, 0, 0, paths, 0, 0)
    child_base = inner_base or base
    for level in range(1 if linear else n):
        nets = qmc_sets if random_times and level == 0 else 0
        if nets:
            blocks, samples = 1, _whole_nets(max(base**n, floor), nets, qmc_points)
        elif random_times:
            blocks, samples = 1, even(max(base ** (n - level), floor))
        else:
            scale = base ** ((n - level) / 2)
            blocks, samples = max(1, round(inverse_gamma(scale))), even(max(1, round(scale), floor))
        new = _build_plan(level, child_base, variant, linear, terminal_factor, antithetic) if level else None
        old = (_build_plan(level - 1, child_base, variant, linear, terminal_factor, antithetic) if level > 1
               else None)
        entry = LevelPlan(level, blocks, samples, new, old, nets)
        k = entry.count
        own = Cost(0, 0 if level else k, k if level else 0, k, k if random_times else 0, 0 if level else k)
        children = [child.cost.times(k) for child in (new, old) if child is not None]
        cost = sum(children, cost + own)
        levels.append(entry)
    return Plan(n, paths, random_times, tuple(levels), cost, qmc_sets)


def _whole_nets(count: int, sets: int, points: int = 1) -> int:
    """``count`` rounded up to ``sets`` nets of a power of two points each (a Sobol' net's balance holds at 2^k), at
    least ``points`` (a power of two) each."""
    return sets * max(points, 1 << (-(-count // sets) - 1).bit_length())


class _QuasiNoise(NamedTuple):
    """Randomised quasi-Monte Carlo noise of a reported estimate: ``terminal`` (paths, rows, d) and, for full
    history, its level-0 samples' ``level_uniform`` (m,) and ``level_normals`` (m, rows, d) (else None)."""

    terminal: jax.Array
    level_uniform: jax.Array | None
    level_normals: jax.Array | None


# Antithetic pairs in a block of the reported (top-level) estimate only from this many samples on: its standard error
# rests on the sample variance of the block's units, and 5 pairs (the level-1 block at M = 10) give one so noisy that
# 95 % intervals covered 88 % of points (VB, d = 10); 10 independent samples there keep coverage at 94 %.
MIN_PAIRED_TOP = 20


def _paired(antithetic: bool, count: int, top: bool) -> bool:
    """Whether a block of ``count`` samples comes in antithetic pairs (``top``: a block of the reported estimate)."""
    return antithetic and (not top or count >= MIN_PAIRED_TOP)


def _samples(pde, plan: Plan, noise: _Noise, t, x, delta, antithetic: bool = False, top: bool = True,
             quasi=None) -> dict:
    """All sample points of ``plan`` at (t, x), as evaluation requests. Consumes ``noise`` (of
    ``plan.cost.noise(rows)``) in a fixed order: terminal paths, then per level its samples and, for l ≥ 1, its
    samples' (V_l, V_{l−1}) noise. ``delta`` = T − t, passed down rather than recomputed from s: T − s would
    round to 0 in float32 for samples a few ulps before T (and then divide by zero), while Δ(1 − U)(1 + U)
    stays positive for every U < 1. ``quasi``: a ``_QuasiNoise`` to use for the terminal paths and level-0 samples
    instead of the stream's (randomised quasi-Monte Carlo; the stream's slices are still consumed, so the rest is
    unchanged)."""
    stream = _NoiseStream(noise, pde.dynamics.noise_rows)
    paired = quasi is None and _paired(antithetic, plan.paths, top)
    terminal_noise = stream.paths(plan.paths, paired)
    terminal_noise = terminal_noise if quasi is None else quasi.terminal
    ends, weights = path_samples(pde, t, x, jnp.full((plan.paths,), delta), terminal_noise)
    out = {"g_x": TerminalRequest(x), "ends": TerminalRequest(ends), "weights": weights, "levels": []}
    for level in plan.levels:
        shape = (level.blocks, level.samples)
        paired = _paired(antithetic, level.samples, top)
        paths = stream.paths(level.count, paired).reshape(shape + stream.row_shape)
        if plan.random_times:
            uniform = stream.uniforms(level.samples, paired)
            if level.nets:
                uniform, paths = quasi.level_uniform, quasi.level_normals[None]
            s, points, weights = random_times(pde, t, x, delta, paths[0], uniform)
            entry = {"uniform": uniform, "s": s[None], "points": points[None], "weights": weights[None],
                     "remaining": (delta * (1 - uniform) * (1 + uniform))[None]}
        else:
            nodes, _ = gauss_legendre(level.blocks)
            elapsed = jnp.broadcast_to((delta * jnp.asarray(nodes, x.dtype))[:, None], shape)
            points, weights = path_samples(pde, t, x, elapsed, paths)
            entry = {"elapsed": elapsed, "s": t + elapsed, "points": points, "weights": weights,
                     "remaining": jnp.broadcast_to((delta * jnp.asarray(1 - nodes, x.dtype))[:, None], shape)}
        if level.new is None:
            entry["source"] = SourceRequest(stream.keys(level.count).reshape(shape), entry["s"], entry["points"])
        else:
            new_size = level.new.cost.noise(stream.rows)
            child_size = tuple(a + b for a, b in zip(new_size, _noise_of(level.old, stream.rows), strict=True))
            children = stream.children(level.count, child_size)
            children = jax.tree.map(lambda a, shape=shape: a.reshape(shape + a.shape[1:]), children)

            def child(noise, s, point, remaining, level=level, new_size=new_size):
                new_noise, old_noise = noise.split(new_size)
                old = None if level.old is None else _samples(pde, level.old, old_noise, s, point, remaining,
                                                               antithetic, top=False)
                return _samples(pde, level.new, new_noise, s, point, remaining, antithetic, top=False), old

            entry["children"] = jax.vmap(jax.vmap(child))(children, entry["s"], entry["points"], entry["remaining"])
            entry["inputs"] = IncrementRequest(entry["s"], entry["points"])
        out["levels"].append(entry)
    return out


def _noise_of(plan: Plan | None, rows: int) -> tuple[int, int, int]:
    return (0, 0, 0) if plan is None else plan.cost.noise(rows)


def _quadrature_component(delta, elapsed, weights, values) -> Component:
    """Gauss–Legendre nodes in time: ``elapsed`` s − t (nodes, m), path weights ω (nodes, m, d), ``values``
    (nodes, m)."""
    _, quadrature = gauss_legendre(elapsed.shape[0])
    quadrature = delta * jnp.asarray(quadrature, values.dtype)[:, None]  # (q, 1)
    u = quadrature * values
    z = (quadrature / jnp.sqrt(elapsed))[..., None] * values[..., None] * weights
    return Component(u, z)


class _Noise(eqx.Module):
    """Random numbers for one V_n evaluation (layout: ``_samples``). Drawn once per query point,
    in one draw of random bits whatever n and M: every PRNG call site compiles to its own large kernel, so one
    site keeps XLA's compilation short."""

    normals: jax.Array  # (rows, d)
    uniforms: jax.Array  # (k,), in (0, 1)
    keys: jax.Array  # (s,) PRNG keys, one per source evaluation (used by random sources, e.g. Hutchinson)

    def split(self, size: tuple[int, int, int]) -> tuple[_Noise, _Noise]:
        rows, uniforms, keys = size
        first = _Noise(self.normals[:rows], self.uniforms[:uniforms], self.keys[:keys])
        return first, _Noise(self.normals[rows:], self.uniforms[uniforms:], self.keys[keys:])


def _draw_noise(key, size: tuple[int, int, int], dim: int, dtype, extra: int = 0) -> tuple[_Noise, jax.Array]:
    """``size`` = (normal rows of length ``dim``, uniforms, keys), all from disjoint words of one bits draw, and
    ``extra`` more uint32 words of it (returned second; the shifts of quasi-Monte Carlo nets)."""
    rows, uniforms, keys = size
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    key_shape = jax.random.key_data(key).shape if typed else (2,)  # raw keys: two uint32 words
    floats = rows * dim + uniforms
    per_float = jnp.dtype(dtype).itemsize // 4
    used = floats * per_float + keys * math.prod(key_shape)
    words = jax.random.bits(key, (used + extra,), jnp.uint32)
    extra_words, words = words[used:], words[:used]
    unit = open_unit_interval(words[: floats * per_float], dtype)
    normals = normal_quantile(unit[: rows * dim])
    key_data = words[floats * per_float :].reshape((keys,) + key_shape)
    source_keys = jax.random.wrap_key_data(key_data, impl=jax.random.key_impl(key)) if typed else key_data
    return _Noise(normals.reshape(rows, dim), unit[rows * dim :], source_keys), extra_words



class _NoiseStream:
    """Hands out consecutive slices of a ``_Noise`` (static offsets, at trace time); a path sample takes ``rows``
    normal rows. ``paired`` slices: samples 2k and 2k + 1 get the noises N and −N and share their uniform (the
    second half of the slice goes unused, so that the layout is the same either way)."""

    def __init__(self, noise: _Noise, rows: int):
        self.noise, self.offsets, self.rows = noise, [0, 0, 0], rows
        self.row_shape = (rows, noise.normals.shape[-1])

    def _take(self, field: int, count: int):
        start = self.offsets[field]
        self.offsets[field] += count
        return (self.noise.normals, self.noise.uniforms, self.noise.keys)[field][start : start + count]

    def paths(self, count, paired: bool = False):
        """Noise of ``count`` path samples, (count, rows, d)."""
        noise = self._take(0, count * self.rows).reshape((count,) + self.row_shape)
        if not paired:
            return noise
        half = noise[: count // 2]
        return jnp.stack([half, -half], axis=1).reshape(noise.shape)

    def uniforms(self, count, paired: bool = False):
        uniform = self._take(1, count)
        return jnp.repeat(uniform[: count // 2], 2) if paired else uniform

    def keys(self, count):
        return self._take(2, count)

    def children(self, count: int, size: tuple[int, int, int]) -> _Noise:
        """``count`` consecutive child noises of ``size`` each, stacked on a leading axis."""
        rows, uniforms, keys = (self._take(field, count * size[field]) for field in range(3))
        return _Noise(rows.reshape(count, size[0], -1), uniforms.reshape(count, size[1]), keys.reshape(count, size[2]))
