"""metrics.json and the figures from hand-made results: one estimand per number, non-finite estimates left out
and counted, strict JSON; config checks that keep runs from failing late or mixing results."""

from __future__ import annotations

import copy
import json
import math

import jax
import numpy as np
import pytest

from scasml._io import atomic_write_json
from scasml.experiments import config_from_dict, read_points
from scasml.experiments._compute import repetition_key, training_keys
from scasml.experiments._metrics import MethodResult, Results, compute_metrics, z_scores
from scasml.experiments._plots import band_figure, errors_figure, improvement_figure, scatter_figure
from scasml.experiments._points import PointsFileError
from scasml.experiments._runner import training_sweep_methods
from scasml.experiments._schema import ConfigError
from scasml.experiments._statistics import ratio_interval, t_quantile

BASE = {"equation": {"name": "vb", "dim": 4}, "training": {"steps": 10}, "evaluation": {"points": 16},
        "methods": {"surrogate": {"kind": "surrogate"}, "mlp": {"kind": "mlp", "levels": 2, "base": 4},
                    "scasml": {"kind": "scasml", "levels": 2, "base": 4}}}


def _config(**evaluation):
    raw = copy.deepcopy(BASE)
    raw["evaluation"].update(evaluation)
    return config_from_dict(raw, check_files=False)


def _result(prediction, stderr=None, finite=None, dof=np.inf):
    """A method's stored arrays; without ``stderr`` the surrogate alone (no error bar, finite where u is)."""
    prediction = np.asarray(prediction, float)
    if finite is None:
        finite = np.isfinite(prediction) & (True if stderr is None else np.isfinite(np.asarray(stderr, float)))
    stderr = np.full(prediction.size, np.nan) if stderr is None else np.asarray(stderr, float)
    half = t_quantile(0.975, dof) * stderr if math.isfinite(dof) else 1.959963984540054 * stderr
    return MethodResult({"prediction": prediction, "stderr": stderr, "lower": prediction - half,
                         "upper": prediction + half, "dof": np.full(prediction.size, float(dof)), "finite": finite},
                        {"surrogate_values": 1}, 1.0, 1.0)


def _points(n, r):
    rng = np.random.default_rng(r)
    return {"t": rng.uniform(0, 0.5, n), "x": rng.normal(size=(n, 4)), "exact": np.ones(n),
            "exact_stderr": np.zeros(n)}


def _results(config, per_method):
    reps = config.evaluation.repetitions
    return Results(points=[_points(config.evaluation.points, r) for r in range(reps)], methods=per_method,
                   sweeps=[], training_seconds=None, training_curve=None)


def test_ratio_interval_is_centred_on_the_ratio_of_means():
    num, den = np.array([1.0, 0.12, 0.12, 0.12]), np.array([10.0, 0.1, 0.1, 0.1])
    out = ratio_interval(num, den)
    assert out["ratio"] == pytest.approx(num.mean() / den.mean())
    assert out["low"] < out["ratio"] < out["high"]
    assert out["high"] - out["ratio"] == pytest.approx(out["ratio"] - out["low"])
    assert ratio_interval([1.0], [2.0]) == {"n": 1, "ratio": 0.5, "low": None, "high": None}


def test_the_improvement_lies_in_its_own_interval_and_its_figure_renders():
    """Six repetitions, one with a much larger surrogate error: the ratio of the mean errors (the headline) and
    the mean of per-repetition ratios differ, and the interval must be that of the headline."""
    config = _config(repetitions=6)
    n = config.evaluation.points
    surrogate = [_result(np.full(n, 1.0 + (10.0 if r == 0 else 0.1))) for r in range(6)]
    methods = [_result(np.full(n, 1.0 + (1.0 if r == 0 else 0.12)), np.full(n, 0.05)) for r in range(6)]
    results = _results(config, {"surrogate": surrogate, "mlp": methods, "scasml": methods})
    metrics = compute_metrics(config, results, config.make_pde())
    comparison = next(c for c in metrics["comparisons"] if c["method"] == "scasml" and c["baseline"] == "surrogate")
    low, high = comparison["improvement_percent_ci95"]
    assert low < comparison["improvement_percent"] < high
    assert comparison["improvement_percent"] == pytest.approx(100 * (1 - (0.12 * 5 + 1) / (0.1 * 5 + 10)))
    improvement_figure(config, config.make_pde(), results, metrics)


def test_points_without_a_result_are_left_out_counted_and_compared_on_common_points():
    config = _config(repetitions=2)
    n = config.evaluation.points
    surrogate = [_result(np.full(n, 1.1)) for _ in range(2)]
    stderr = np.full(n, 0.05)
    broken_stderr = stderr.copy()
    broken_stderr[:4] = np.inf  # a finite value with a non-finite error bar is no result (calibrate's flag)
    prediction = np.full(n, 1.01)
    prediction[:4] = 5.0
    scasml_runs = [_result(prediction, broken_stderr), _result(np.full(n, 1.01), stderr)]
    nothing = [_result(np.full(n, np.nan), stderr), _result(np.full(n, np.nan), stderr)]
    results = _results(config, {"surrogate": surrogate, "mlp": nothing, "scasml": scasml_runs})
    metrics = compute_metrics(config, results, config.make_pde())
    scasml = metrics["methods"]["scasml"]
    assert scasml["nonfinite"] == 4
    assert scasml["per_repetition"][0]["relative_l2"] == pytest.approx(0.01)  # the 4 flagged points left out
    assert scasml["mean_stderr"] == pytest.approx(0.05)
    assert metrics["methods"]["mlp"]["relative_l2"] is None and metrics["methods"]["mlp"]["interval_coverage"] is None
    comparison = next(c for c in metrics["comparisons"] if c["method"] == "scasml" and c["baseline"] == "surrogate")
    assert comparison["points_compared"] == 2 * n - 4 and comparison["points_left_out"] == 4
    assert comparison["improvement_percent"] == pytest.approx(90.0)
    assert z_scores(scasml_runs[0], results.points[0]).size == n - 4
    for figure in (errors_figure, scatter_figure, improvement_figure):
        figure(config, config.make_pde(), results, metrics)  # a method with no finite result draws, says "—"


def test_one_repetition_without_intervals_does_not_hide_the_others():
    config = _config(repetitions=2)
    n = config.evaluation.points
    runs = [_result(np.full(n, np.nan), np.full(n, 0.05)), _result(np.full(n, 1.01), np.full(n, 0.05))]
    results = _results(config, {"surrogate": [_result(np.full(n, 1.1))] * 2, "mlp": runs, "scasml": runs})
    metrics = compute_metrics(config, results, config.make_pde())
    assert metrics["methods"]["scasml"]["interval_coverage"] == 1.0


def test_json_outputs_are_strict(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": math.inf, "b": [1.0, math.nan], "c": {"d": -math.inf, "e": 2}})
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}


def test_the_band_figure_draws_the_reported_intervals():
    """Student-t intervals on 3 degrees of freedom: the figure's count of covered points is the coverage of
    those intervals, not of ±1.96 standard errors."""
    config = _config(repetitions=1)
    n = config.evaluation.points
    stderr = np.full(n, 0.01)
    prediction = 1.0 + stderr * np.linspace(-3.0, 3.0, n)  # |z| from 0 to 3: 1.96 and t₃ = 3.18 disagree
    runs = [_result(prediction, stderr, dof=3.0)]
    results = _results(config, {"surrogate": [_result(np.full(n, 1.1))], "mlp": runs, "scasml": runs})
    figure = band_figure(config, config.make_pde(), results, points=n)
    title = figure.axes[1].get_title()
    assert f"at {n} of {n} points" in title


def test_reserved_and_colliding_method_names():
    raw = copy.deepcopy(BASE)
    raw["methods"]["exact"] = raw["methods"].pop("mlp")
    with pytest.raises(ConfigError, match="'exact' names the reference"):
        config_from_dict(raw, check_files=False)
    raw = copy.deepcopy(BASE)
    raw["methods"] = {"surrogate": {"kind": "scasml", "levels": 2, "base": 4}}
    raw["sweep"] = {"training_steps": [5]}
    names = [m.name for m in training_sweep_methods(config_from_dict(raw, check_files=False))]
    assert len(set(names)) == len(names) == 2


@pytest.mark.parametrize("sweep, methods, match", [
    ({"base": [2]}, {"q": {"kind": "mlp", "variant": "quadrature", "base": 4}}, r"sweep.base = 2: .*base ≥ 3"),
    ({"levels": [12]}, {"m": {"kind": "mlp", "levels": 2, "base": 4}}, r"sweep.levels = 12: .*beyond any budget"),
    ({"base": [20]}, {"m": {"kind": "mlp", "levels": 2, "base": 4, "budget": 200}}, r"sweep.base = 20: .*pilot"),
])
def test_swept_variants_are_checked_before_any_compute(sweep, methods, match):
    raw = {**copy.deepcopy(BASE), "methods": methods, "sweep": sweep}
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw, check_files=False)


@pytest.mark.parametrize("section", ["training", "evaluation"])
def test_seeds_beyond_32_bits_are_refused(section):
    raw = copy.deepcopy(BASE)
    raw[section]["seed"] = 2**32 + 5  # jax.random.key would give seed 5's numbers
    with pytest.raises(ConfigError, match="seed"):
        config_from_dict(raw, check_files=False)


def test_max_replicas_without_a_target_is_refused():
    raw = copy.deepcopy(BASE)
    raw["methods"]["mlp"]["max_replicas"] = 8
    with pytest.raises(ConfigError, match="max_replicas"):
        config_from_dict(raw, check_files=False)


def test_training_draws_no_key_of_the_evaluation():
    """Equal training and evaluation seeds (the default): no training key is a repetition key or one derived
    from a repetition key by the runner's first fold_ins (test points, reference, methods)."""
    config = _config(repetitions=3)
    init, train = training_keys(config.training.seed)
    evaluation = set()
    for r in range(3):
        k = repetition_key(config, r)
        evaluation |= {tuple(np.asarray(jax.random.key_data(k)).tolist())}
        evaluation |= {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(k, j))).tolist()) for j in range(5)}
    training = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in (init, train)}
    training |= {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(train, i))).tolist()) for i in range(5)}
    assert not training & evaluation


@pytest.mark.parametrize("t, x", [(np.zeros(3, bool), np.zeros((3, 4))), (np.zeros(3), np.zeros((3, 4), complex)),
                                  (np.array(["0.1", "0.2", "0.3"]), np.zeros((3, 4)))])
def test_npz_points_must_be_real_numbers(tmp_path, t, x):
    np.savez(tmp_path / "p.npz", t=t, x=x)
    with pytest.raises(PointsFileError, match="real"):
        read_points(tmp_path / "p.npz", 4, 0.5)
