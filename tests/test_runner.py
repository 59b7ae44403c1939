"""The experiment runner: statistics, resumable runs (kill -9 and resume), caching, report re-rendering."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_training_blocks

import scasml
from scasml.experiments import (
    ConfigError,
    RunDirectory,
    RunDirectoryError,
    apply_overrides,
    config_from_dict,
    load_config,
    mean_interval,
    paired_t_test,
    render_report,
    run_experiment,
    t_quantile,
)
from scasml.experiments._compute import chunk_layout, chunk_slice, method_key
from scasml.experiments._config import Method
from scasml.experiments._metrics import error_summary
from scasml.experiments._runner import estimate_sources, widened_sources
from scasml.experiments._schema import MethodSection
from scasml.experiments._statistics import incomplete_beta, t_cdf, t_two_sided_p

# ---- statistics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706204736), (2, 4.302652730), (5, 2.570581836),
                                              (10, 2.228138852), (30, 2.042272456), (1000, 1.962339081)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-8)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-8)


def test_t_distribution_closed_forms():
    # df = 1 is Cauchy: P(T <= t) = 1/2 + atan(t)/pi; df = 2: P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_two_sided_p(2.0, 10) == pytest.approx(0.0733880348, abs=1e-9)
    assert t_two_sided_p(0.0, 7) == pytest.approx(1.0)
    assert t_two_sided_p(math.inf, 7) == 0.0


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert incomplete_beta(1.0, 1.0, x) == pytest.approx(x, abs=1e-14)
        assert incomplete_beta(3.0, 1.0, x) == pytest.approx(x**3, abs=1e-13)
        assert incomplete_beta(1.0, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-13)
    # I_x(2, 3) = sum_{j=2}^{4} C(4, j) x^j (1 - x)^(4 - j)
    assert incomplete_beta(2.0, 3.0, 0.4) == pytest.approx(6 * 0.16 * 0.36 + 4 * 0.064 * 0.6 + 0.0256, abs=1e-14)
    with pytest.raises(ValueError, match="0 ≤ x ≤ 1"):
        incomplete_beta(1.0, 1.0, 1.5)


def test_paired_t_test_by_hand():
    a = np.array([3.0, 5.0, 4.0, 6.0, 7.0])
    b = np.array([2.0, 4.5, 4.0, 4.0, 5.5])  # differences 1, 0.5, 0, 2, 1.5: mean 1, sd sqrt(0.625)
    out = paired_t_test(a, b)
    se = math.sqrt(0.625 / 5)
    assert out["n"] == 5 and out["df"] == 4
    assert out["mean_difference"] == pytest.approx(1.0)
    assert out["t"] == pytest.approx(1.0 / se)
    assert out["p_value"] == pytest.approx(t_two_sided_p(1.0 / se, 4))
    assert out["low"] == pytest.approx(1.0 - 2.776445105 * se, abs=1e-8)
    assert out["high"] == pytest.approx(1.0 + 2.776445105 * se, abs=1e-8)
    single = paired_t_test([1.0], [0.5])
    assert single["p_value"] is None and single["mean_difference"] == 0.5
    assert paired_t_test([1.0, np.nan, 2.0], [0.0, 1.0, 1.0])["n"] == 2  # non-finite pairs dropped


def test_paired_t_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(0)
    p = [paired_t_test(rng.normal(size=8), rng.normal(size=8))["p_value"] for _ in range(2000)]
    assert np.mean(np.array(p) < 0.05) == pytest.approx(0.05, abs=0.015)
    coverage = [mean_interval(rng.normal(1.0, 2.0, size=6)) for _ in range(2000)]
    assert np.mean([c["low"] <= 1.0 <= c["high"] for c in coverage]) == pytest.approx(0.95, abs=0.015)


def test_error_summary():
    out = error_summary(np.array([1.0, 2.0, np.nan]), np.array([1.0, 1.0, 1.0]))
    assert out["nonfinite"] == 1
    assert out["max_absolute"] == 1.0 and out["mean_absolute"] == 0.5
    assert out["relative_l2"] == pytest.approx(1 / math.sqrt(2))


def test_chunks_cover_points_once_with_a_single_shape():
    t, x = np.arange(10.0), np.arange(20.0).reshape(10, 2)
    size, n = chunk_layout(10, 4)
    assert (size, n) == (3, 4)
    pieces = [chunk_slice(t, x, c, size) for c in range(n)]
    assert all(len(p[0]) == size for p in pieces)
    np.testing.assert_array_equal(np.concatenate([p[0][: p[2]] for p in pieces]), t)
    assert chunk_layout(9, 4) == (3, 3)


# ---- end-to-end runs ---------------------------------------------------------------------------------------

TINY = {
    "experiment": {"name": "tiny", "description": "a seconds-long smoke run"},
    "equation": {"name": "vb", "dim": 3},
    "surrogate": {"width": 8, "depth": 1},
    "evaluation": {"points": 24, "chunks": 6, "repetitions": 2},
    "methods": {
        "surrogate": {"kind": "surrogate"},
        "mlp": {"kind": "mlp", "levels": 1, "base": 8},
        "scasml": {"kind": "scasml", "levels": 1, "base": 8},
    },
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A complete in-process run of a tiny config whose surrogate is an (untrained) saved PINN."""
    root = tmp_path_factory.mktemp("runner")
    pde = scasml.equations.get("vb", dim=3)
    scasml.save_surrogate(root / "pinn.scasml", scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1), pde)
    config = config_from_dict({**TINY, "surrogate": {**TINY["surrogate"], "checkpoint": str(root / "pinn.scasml")}})
    report = run_experiment(config, root / "run", progress=False)
    return root / "run", config, report


def test_run_produces_every_output(finished_run):
    run, _, report = finished_run
    assert "rel. L2" in report.table and report.summary.startswith("tiny (VB, d=3)")
    for name in ("config.toml", "config.json", "checkpoint.scasml", "metrics.json", "timings.json",
                 "report.md", "run.log", "results/points.csv", "results/points.npz"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    for fig in ("errors", "scatter", "improvement"):
        for ext in ("png", "pdf"):
            assert (run / "figures" / f"{fig}.{ext}").stat().st_size > 1000, f"{fig}.{ext}"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"surrogate", "mlp", "scasml"}
    for m in metrics["methods"].values():
        assert len(m["per_repetition"]) == 2 and m["relative_l2"] > 0
    assert metrics["methods"]["scasml"]["evaluations_per_point"]["residuals"] == 8
    pairs = {(c["method"], c["baseline"]) for c in metrics["comparisons"]}
    assert pairs == {("mlp", "surrogate"), ("scasml", "surrogate"), ("scasml", "mlp")}
    comparison = next(c for c in metrics["comparisons"] if c["method"] == "scasml" and c["baseline"] == "surrogate")
    assert comparison["paired_over_repetitions"]["df"] == 1
    assert comparison["paired_over_points"]["n"] == 2 * 24
    # an untrained surrogate is far off; its calibration must be much better
    assert metrics["methods"]["scasml"]["relative_l2"] < 0.5 * metrics["methods"]["surrogate"]["relative_l2"]
    assert "seconds" not in json.dumps(metrics["methods"])  # wall clock lives in timings.json
    assert set(json.loads((run / "timings.json").read_text())["methods"]) == {"surrogate", "mlp", "scasml"}
    points = np.load(run / "results" / "points.npz", allow_pickle=False)
    assert points["x"].shape == (2, 24, 3) and points["scasml_prediction"].shape == (2, 24)
    header = (run / "results" / "points.csv").read_text().splitlines()[0].split(",")
    assert {"t", "exact", "scasml_prediction", "scasml_error", "scasml_stderr", "scasml_lower"} <= set(header)
    report = (run / "report.md").read_text()
    assert "| scasml |" in report and "figures/scatter.png" in report
    assert "starting run 'tiny'" in (run / "run.log").read_text()


def test_interrupted_calibration_resumes_to_identical_metrics(finished_run, tmp_path):
    """Simulate a kill during repetition 1's SCaSML stage: later chunks lost, one finished chunk without marker."""
    run, config, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for name in ("metrics.json", "report.md", "timings.json"):
        (copy / name).unlink()
    stages = copy / "stages" / "eval" / "rep-1" / "scasml"
    raw = copy / "raw" / "eval" / "rep-1" / "scasml"
    for c in (2, 3, 4, 5):
        (stages / f"chunk-{c:03d}.json").unlink()  # chunk 2: arrays written, killed before its marker
        if c > 2:
            (raw / f"chunk-{c:03d}.npz").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (copy / "stages").rglob("*.json") if p.name != "report.json"}
    report = run_experiment(config, copy, progress=False)
    assert report.metrics == json.loads((run / "metrics.json").read_text())
    assert (copy / "metrics.json").read_text() == (run / "metrics.json").read_text()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing finished was recomputed
    assert (stages / "chunk-005.json").is_file()
    assert "scasml rep 1: resuming, 2 of 6 chunks already done" in (copy / "run.log").read_text()


def test_interrupted_training_continues_where_it_stopped(tmp_path, monkeypatch):
    """A run killed in its third training block continues from the state file of the second, and its checkpoint
    has the weights of an uninterrupted run; the state file is gone once the training stage is finished."""
    config = config_from_dict({**TINY, "training": {"steps": 30, "log_every": 10, "collocation": 16,
                                                    "terminal_points": 16}})
    uninterrupted = run_experiment(config, tmp_path / "whole", progress=False)
    count_training_blocks(monkeypatch, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "run", progress=False)
    state = tmp_path / "run" / "checkpoint.training-state.npz"
    assert state.is_file() and not (tmp_path / "run" / "checkpoint.scasml").exists()
    starts = count_training_blocks(monkeypatch)
    report = run_experiment(config, tmp_path / "run", progress=False)
    assert starts == [20] and not state.exists()
    assert "continuing from the interrupted training's state" in (tmp_path / "run" / "run.log").read_text()
    pde = scasml.equations.get("vb", dim=3)
    whole, resumed = (scasml.load_surrogate(tmp_path / name / "checkpoint.scasml", pde) for name in ("whole", "run"))
    for a, b in zip(jax.tree.leaves(eqx.filter(whole, eqx.is_array)), jax.tree.leaves(eqx.filter(resumed,
                                                                                                   eqx.is_array)),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert report.metrics == uninterrupted.metrics
    count_training_blocks(monkeypatch, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):  # killed, then resumed by another version (another fingerprint)
        run_experiment(config, tmp_path / "stale", progress=False)
    from scasml.surrogates import _training

    fingerprint = _training._training_fingerprint
    monkeypatch.setattr(_training, "_training_fingerprint", lambda *a: "another " + fingerprint(*a))
    starts = count_training_blocks(monkeypatch)
    run_experiment(config, tmp_path / "stale", progress=False)
    assert starts == [0, 10, 20] and not (tmp_path / "stale" / "checkpoint.training-state.npz").exists()
    assert "holds the state of another training" in (tmp_path / "stale" / "run.log").read_text()
    monkeypatch.setattr(_training, "_training_fingerprint", fingerprint)
    count_training_blocks(monkeypatch, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):  # killed again, then replaced: --force empties a folder holding the state
        run_experiment(config, tmp_path / "again", progress=False)
    assert (tmp_path / "again" / "checkpoint.training-state.npz").is_file()
    count_training_blocks(monkeypatch)
    other = config_from_dict({**TINY, "training": {"steps": 20, "log_every": 10, "collocation": 16,
                                                   "terminal_points": 16}})
    run_experiment(other, tmp_path / "again", force=True, progress=False)
    assert not (tmp_path / "again" / "checkpoint.training-state.npz").exists()


def test_damaged_results_are_redone_to_identical_metrics(finished_run, tmp_path):
    """A lost or truncated arrays file, or an unreadable stage marker, is a stage to redo, not a dead end."""
    run, config, _ = finished_run
    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    raw = copy / "raw" / "eval" / "rep-0" / "scasml"
    (raw / "chunk-000.npz").unlink()
    truncated = raw / "chunk-001.npz"
    truncated.write_bytes(truncated.read_bytes()[:100])
    (copy / "stages" / "eval" / "rep-1" / "mlp" / "chunk-000.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="scasml run"):
        render_report(RunDirectory.open(copy))
    with pytest.raises(RunDirectoryError, match=r"chunk-001\.npz is corrupt .* redoes stage"):
        RunDirectory.open(copy).load_arrays("eval/rep-0/scasml/chunk-001")
    report = run_experiment(config, copy, progress=False)
    assert report.metrics == json.loads((run / "metrics.json").read_text())
    assert (raw / "chunk-000.npz").is_file() and zipfile.is_zipfile(truncated)
    (copy / "metrics.json").write_text("{trunc")  # a damaged cached report is rendered again
    assert run_experiment(config, copy, progress=False).metrics == report.metrics
    assert json.loads((copy / "metrics.json").read_text()) == report.metrics
    (copy / "config.json").unlink()
    with pytest.raises(RunDirectoryError, match="config.json is missing or corrupt"):
        render_report(RunDirectory.open(copy))


def test_rerun_recomputes_nothing(finished_run):
    run, config, _ = finished_run
    markers = {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*.json")}
    report = run_experiment(load_config(run / "config.toml"), run, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*.json")} == markers
    assert report.metrics == json.loads((run / "metrics.json").read_text())
    assert "resuming run 'tiny'" in (run / "run.log").read_text()


def test_estimate_sources():
    scasml_ = MethodSection(kind="scasml")
    methods = [Method("a", scasml_), Method("b", scasml_), Method("s", dataclasses.replace(scasml_, shrinkage="sure")),
               Method("q", dataclasses.replace(scasml_, base=4, shrinkage="sure"))]
    assert estimate_sources(methods) == {"a": "a", "b": "b", "s": "a", "q": "q"}
    wide = [Method("w", dataclasses.replace(scasml_, widen=True)),
            Method("ws", dataclasses.replace(scasml_, widen=True, shrinkage="sure")),
            Method("w4", dataclasses.replace(scasml_, base=4, widen=True))]
    assert estimate_sources(methods + wide) == {"a": "a", "b": "b", "s": "a", "q": "q", "w": "a", "ws": "a", "w4": "w4"}
    assert widened_sources(methods + wide) == {"a", "w4"}


def test_shrinkage_reuses_the_twin_estimates_and_is_added_to_a_finished_run(finished_run, tmp_path):
    """A 'sure' method identical to a finished unshrunk one runs no Monte Carlo: added to a copy of a finished run
    (new config), only its shrinkage is computed; a 'sure' method without a twin runs its own estimates."""
    run, config, _ = finished_run
    raw = config.to_dict()
    raw["methods"]["sure"] = {**raw["methods"]["scasml"], "shrinkage": "sure"}
    raw["methods"]["alone"] = {"kind": "scasml", "levels": 1, "base": 6, "shrinkage": "sure"}
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shrunk_config = config_from_dict(raw)  # the finished stages, marked as a run of the new configuration
    marker = json.loads((copy / "scasml-run.json").read_text())
    (copy / "scasml-run.json").write_text(json.dumps({**marker, "config_sha256": shrunk_config.fingerprint()}))
    (copy / "config.json").write_text(shrunk_config.to_json())
    for name in ("metrics.json", "timings.json"):
        (copy / name).unlink()
    report = run_experiment(shrunk_config, copy, progress=False)
    assert not (copy / "raw" / "eval" / "rep-0" / "sure").exists()
    assert (copy / "raw" / "eval" / "rep-0" / "alone").is_dir()
    metrics = report.metrics["methods"]
    assert len(metrics["sure"]["shrinkage_threshold"]) == 2 and "shrinkage_threshold" not in metrics["scasml"]
    assert metrics["sure"]["evaluations_per_point"] == metrics["scasml"]["evaluations_per_point"]
    points = np.load(copy / "results" / "points.npz", allow_pickle=False)
    for r, c in enumerate(metrics["sure"]["shrinkage_threshold"]):
        twin = RunDirectory.open(copy)
        arrays = [twin.load_arrays(f"eval/rep-{r}/scasml/chunk-{k:03d}") for k in range(6)]
        defect, stderr = (np.concatenate([a[k] for a in arrays]) for k in ("defect", "stderr"))
        surrogate = np.concatenate([a["surrogate"] for a in arrays])
        assert c == scasml.sure_threshold(defect, stderr)
        np.testing.assert_array_equal(points["sure_prediction"][r],
                                      surrogate + scasml.shrink_defect(defect, stderr, threshold=c)[0])
        np.testing.assert_array_equal(points["sure_lower"][r], points["scasml_lower"][r])


def test_widened_intervals_reuse_the_twin_estimates_and_pool_the_truncation_over_all_chunks(tmp_path, caplog):
    """``widen = true``: no Monte Carlo of its own next to a twin; the truncation estimated over all points of the
    repetition from the stored corrections, as calibrate over them at once, though no chunk has the 32 points an
    estimate of its own needs; the twin's intervals widened around the same centres; the report says it, and the
    log warns once for estimates that leave it out and have no widened twin (a surrogate far off: output scaled
    ×20), not for a shrunk twin. Chunks stored without the corrections (an earlier scasml) are computed again by
    `scasml run` when a widened method reads them."""
    pde = scasml.equations.get("vb", dim=3)
    pinn = scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1, output_scale=20.0)
    scasml.save_surrogate(tmp_path / "pinn.scasml", pinn, pde)
    picard = {"kind": "scasml", "levels": 2, "base": 32}
    surrogate = {"width": 8, "depth": 1, "checkpoint": str(tmp_path / "pinn.scasml")}
    config = config_from_dict({**TINY, "surrogate": surrogate,
                               "evaluation": {"points": 48, "chunks": 4, "repetitions": 1},
                               "methods": {"surrogate": {"kind": "surrogate"}, "scasml": picard,
                                           "wide": {**picard, "widen": True},
                                           "sure": {**picard, "shrinkage": "sure"},
                                           "finer": {**picard, "base": 64}}})
    with caplog.at_level("WARNING", logger="scasml.experiments"):
        report = run_experiment(config, tmp_path / "run", progress=False)
    warned = [r.getMessage() for r in caplog.records if "the Picard truncation" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("method 'finer', repetition 0:"), warned
    assert "`widen = true` in the method adds it" in warned[0]
    assert not (tmp_path / "run" / "raw" / "eval" / "rep-0" / "wide").exists()
    metrics = report.metrics["methods"]
    points = RunDirectory.open(tmp_path / "run").load_arrays("points/rep-0")
    with warnings.catch_warnings():  # a truncation warning or none: what matters here is the estimate
        warnings.simplefilter("ignore", RuntimeWarning)
        whole = scasml.calibrate(pinn, pde, points["t"], points["x"], scasml.MultilevelPicard(2, 32),
                                 key=method_key(config, 0, "scasml"))
    assert whole.truncation is not None
    rms = float(np.sqrt(np.mean(np.asarray(whole.truncation) ** 2)))
    assert metrics["wide"]["picard_truncation"][0] == pytest.approx(rms, rel=1e-6)
    assert metrics["scasml"]["picard_truncation"] == metrics["wide"]["picard_truncation"]
    assert metrics["wide"]["options"]["widen"] is True and "widen" not in metrics["scasml"]["options"]
    assert "widened intervals" in metrics["wide"]["label"]
    # its error-bar statistics are those of the widened intervals: z over √(stderr² + truncation²)
    calibration = {name: metrics[name]["interval_calibration"] for name in ("scasml", "wide")}
    assert calibration["wide"]["z_rms"] < calibration["scasml"]["z_rms"]
    assert calibration["wide"]["coverage_by_nominal_level"]["0.95"] == metrics["wide"]["interval_coverage"]
    saved = np.load(tmp_path / "run" / "results" / "points.npz", allow_pickle=False)
    np.testing.assert_array_equal(saved["wide_prediction"], saved["scasml_prediction"])
    centre = lambda name: (saved[f"{name}_lower"] + saved[f"{name}_upper"]) / 2
    np.testing.assert_allclose(centre("wide"), centre("scasml"), rtol=1e-6, atol=1e-7)
    half = lambda name: saved[f"{name}_upper"] - saved[f"{name}_lower"]
    assert np.all(half("wide") >= half("scasml")) and np.sum(half("wide")) > np.sum(half("scasml"))
    np.testing.assert_allclose(half("wide"), half("scasml") * np.hypot(1, np.asarray(whole.truncation) /
                                                                         np.asarray(whole.stderr)), rtol=1e-4)
    text = (tmp_path / "run" / "report.md").read_text()
    assert "`wide`: Picard truncation" in text and "in its intervals (`widen`)" in text
    assert "`scasml`: Picard truncation" in text and "not in its intervals" in text
    # a chunk stored without the corrections (an earlier scasml): the report says what to do, a run redoes it
    run = RunDirectory.open(tmp_path / "run")
    arrays = run.load_arrays("eval/rep-0/scasml/chunk-001")
    del arrays["picard_corrections"]
    run.save_arrays("eval/rep-0/scasml/chunk-001", **arrays)
    with pytest.raises(RunDirectoryError, match="'wide' widens .* without the Picard corrections.*scasml run"):
        render_report(run)
    untouched = {c: run.arrays_path(f"eval/rep-0/scasml/chunk-{c:03d}").stat().st_mtime_ns for c in (0, 2, 3)}
    assert run_experiment(config, tmp_path / "run", progress=False).metrics == report.metrics
    assert {c: run.arrays_path(f"eval/rep-0/scasml/chunk-{c:03d}").stat().st_mtime_ns for c in (0, 2, 3)} == untouched
    assert "picard_corrections" in run.array_names("eval/rep-0/scasml/chunk-001")


@pytest.mark.parametrize(("equation", "levels", "why"), [("vb", 1, "levels = 1"), ("lcd", 2, "lcd is linear")])
def test_widen_needs_a_truncation_to_add(equation, levels, why):
    with pytest.raises(ConfigError, match=f"methods.wide.widen: .*{why}"):
        config_from_dict({"equation": {"name": equation, "dim": 3}, "surrogate": {"width": 8, "depth": 1},
                          "methods": {"wide": {"kind": "scasml", "levels": levels, "widen": True}}},
                         check_files=False)
    with pytest.raises(ConfigError, match="widen: not used here"):  # not a key of the Feynman–Kac estimator
        config_from_dict({"equation": {"name": "lcd", "dim": 3}, "methods": {
            "wide": {"kind": "scasml", "estimator": "feynman_kac", "widen": True}}}, check_files=False)
    with pytest.raises(ConfigError, match="widen: .* at least 32; evaluation.points is 24"):
        config_from_dict({"equation": {"name": "vb", "dim": 3}, "evaluation": {"points": 24},
                          "methods": {"wide": {"kind": "scasml", "widen": True}}}, check_files=False)


def test_adaptive_methods_in_a_run(tmp_path):
    """Methods with a target or a budget: replicas and met stored per point, evaluations per point scaled by the
    mean replicas."""
    pde = scasml.equations.get("vb", dim=3)  # an untrained saved PINN: no training in this test
    scasml.save_surrogate(tmp_path / "pinn.scasml", scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1),
                          pde)
    raw = {**TINY, "surrogate": {**TINY["surrogate"], "checkpoint": str(tmp_path / "pinn.scasml")},
           "evaluation": {"points": 12, "chunks": 2}, "methods": {
        "surrogate": {"kind": "surrogate"},
        "scasml": {"kind": "scasml", "levels": 2, "base": 4},
        "target": {"kind": "scasml", "levels": 2, "base": 4, "target_relative": 1e-9, "max_replicas": 3},
        "budget": {"kind": "mlp", "levels": 2, "base": 4, "budget": 2000},
    }}
    report = run_experiment(config_from_dict(raw), tmp_path / "run", progress=False)
    metrics = report.metrics["methods"]
    one = metrics["scasml"]["evaluations_per_point"]
    assert metrics["target"]["evaluations_per_point"] == {k: 3 * v for k, v in one.items()}
    run = RunDirectory.open(tmp_path / "run")
    arrays = run.load_arrays("eval/rep-0/target/chunk-000")
    assert np.all(arrays["replicas"] == 3) and not arrays["met"].any()
    spent = run.load_arrays("eval/rep-0/budget/chunk-000")["replicas"]
    assert spent.size == 12  # one stage: the budget is spread over the repetition's points, whatever the chunks
    per_replica = sum(metrics["budget"]["evaluations_per_point"].values()) / np.mean(spent)
    assert spent.sum() == int(12 * 2000 // per_replica)
    assert metrics["target"]["target_missed"] == {"points": 12, "of": 12} and metrics["target"]["replicas"]["max"] == 3
    assert "target missed at 12 of 12 points" in (tmp_path / "run" / "report.md").read_text()


def test_report_rerenders_without_recomputing(finished_run, tmp_path):
    run = finished_run[0]
    metrics = (run / "metrics.json").read_text()
    for path in [*(run / "figures").iterdir(), run / "report.md", run / "metrics.json", run / "results" / "points.csv"]:
        path.unlink()
    report = render_report(RunDirectory.open(run))
    assert (run / "metrics.json").read_text() == metrics
    assert (run / "report.md").stat().st_size > 0 and (run / "results" / "points.csv").stat().st_size > 0
    assert all((run / f).stat().st_size > 1000 for f in report.files if f.startswith("figures/"))
    assert "scasml" in report.table and "tiny" in report.summary
    with pytest.raises(RunDirectoryError, match="not a scasml run directory"):
        RunDirectory.open(tmp_path)


def test_run_directories_are_protected(finished_run, tmp_path):
    run, config, _ = finished_run
    other = config_from_dict(apply_overrides(config.to_dict(), ["evaluation.seed=1"]))
    with pytest.raises(RunDirectoryError, match="holds a run of a different configuration"):
        RunDirectory.prepare(run, other)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="is not empty and is not a scasml run directory"):
        RunDirectory.prepare(tmp_path, other, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    fresh, resumed = RunDirectory.prepare(tmp_path / "new", config)
    assert not resumed and (fresh.path / "config.toml").is_file()
    (fresh.path / "stages").mkdir()
    assert RunDirectory.prepare(tmp_path / "new", config)[1]  # same config: resume
    _, resumed = RunDirectory.prepare(tmp_path / "new", other, force=True)  # --force: start over
    assert not resumed and not (fresh.path / "stages").exists()
    with fresh.lock(), pytest.raises(RunDirectoryError, match="in use by another scasml process"), fresh.lock():
        pass
    # killed while creating the folder (the marker is written first): the next run takes it over
    half = tmp_path / "half"
    half.mkdir()
    (half / ".lock").write_text("")
    (half / ".scasml-run.json.abcd1234.tmp").write_text("partial")
    assert not RunDirectory.prepare(half, config)[1]
    assert (half / "config.toml").read_text() != "partial" and not (half / ".scasml-run.json.abcd1234.tmp").exists()
    # a folder holding only a user's config.toml is the user's, not a leftover: refused, the file kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.toml").write_text("partial")
    with pytest.raises(RunDirectoryError, match="is not empty and is not a scasml run directory"):
        RunDirectory.prepare(mine, config)
    assert (mine / "config.toml").read_text() == "partial"


def test_incomplete_run_cannot_be_reported(tmp_path):
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml")
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    with pytest.raises(RunDirectoryError, match="no test points yet"):
        render_report(run)


# ---- surrogate kinds: a user function (python:…) and a GP ----------------------------------------------

USER_MODULE = """
import jax.numpy as jnp


def surrogate(pde):
    return lambda t, x: pde.exact(t, x) * (1 + 0.05 * jnp.sin(jnp.sum(x)))


def vector(t, x):
    return x
"""

SMALL = {
    "equation": {"name": "vb", "dim": 5},
    "evaluation": {"points": 12, "chunks": 2},
    "methods": {"surrogate": {"kind": "surrogate"}, "scasml": {"kind": "scasml", "levels": 2, "base": 4}},
}


def test_user_function_surrogate_runs_end_to_end_and_resumes(tmp_path):
    module = tmp_path / "my_surrogate.py"
    module.write_text(USER_MODULE)
    kind = f"python:{module}:surrogate"
    config = config_from_dict({**SMALL, "experiment": {"name": "user"}, "surrogate": {"kind": kind}})
    report = run_experiment(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert not (run / "checkpoint.scasml").exists() and not (run / "stages" / "train.json").exists()
    record = json.loads((run / "stages" / "surrogate.json").read_text())
    assert record["function"] == "surrogate" and record["file"] == str(module)
    assert len(record["source_sha256"]) == 64
    assert f'kind = "{kind}"' in (run / "config.toml").read_text()
    assert "user function `surrogate`" in (run / "report.md").read_text()
    methods = report.metrics["methods"]
    assert 0.005 < methods["surrogate"]["relative_l2"] < 0.05  # the 5 % perturbation of the exact solution
    assert methods["scasml"]["relative_l2"] < 0.5 * methods["surrogate"]["relative_l2"]

    markers = {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*.json") if p.name != "report.json"}
    again = run_experiment(load_config(run / "config.toml"), run, progress=False)  # resume: re-imports the file
    assert {p: p.stat().st_mtime_ns for p in markers} == markers and again.metrics == report.metrics
    assert "re-imported" in (run / "run.log").read_text()
    module.write_text(USER_MODULE + "# edited\n")
    run_experiment(config, run, progress=False)
    assert "changed since this run started" in (run / "run.log").read_text()

    bad = config_from_dict({**SMALL, "surrogate": {"kind": f"python:{module}:vector"}})
    with pytest.raises(ConfigError, match=r"^surrogate\.kind: .*vector is not a usable surrogate: .*must return a "
                                          r"scalar"):
        run_experiment(bad, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()  # rejected before the run directory was created


USER_PDE_MODULE = """
import jax.numpy as jnp
import scasml


def heat(dim, scale=1.0):
    # ∂_t u + ½Δu = 0 with g = scale·‖x‖²: u = scale·(‖x‖² + d(T − t))
    return scasml.SemilinearPDE(dim=dim, horizon=1.0, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                terminal=lambda x: scale * (x @ x), linear=True, name="my_heat",
                                exact=lambda t, x: scale * (x @ x + dim * (1.0 - t)))


fixed = heat(3)
no_exact = scasml.SemilinearPDE(dim=3, horizon=1.0, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                terminal=lambda x: x @ x)
not_a_pde = 42


def broken(dim):
    raise RuntimeError("cannot build")
"""


def test_user_pde_runs_end_to_end_from_a_config_file(tmp_path):
    """equation.name = 'python:file.py:factory' (relative to the config file) gives the full report, with a
    Feynman–Kac method for this linear PDE; a PDE object works too, and every misuse is a ConfigError."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_pde.py").write_text(USER_PDE_MODULE)
    (folder / "surrogate.py").write_text(USER_MODULE)
    (folder / "run.toml").write_text(
        '[equation]\nname = "python:my_pde.py:heat"\ndim = 3\nparameters = { scale = 2.0 }\n'
        '[surrogate]\nkind = "python:surrogate.py:surrogate"\n'
        "[evaluation]\npoints = 12\nchunks = 2\n"
        '[methods.surrogate]\nkind = "surrogate"\n'
        '[methods.fk]\nkind = "scasml"\nestimator = "feynman_kac"\npaths = 200\n'
        '[methods.scasml]\nkind = "scasml"\nlevels = 2\nbase = 4\n')
    config = load_config(folder / "run.toml")
    assert config.equation.name == f"python:{folder / 'my_pde.py'}:heat" and config.equation_label == "heat"
    pde = config.make_pde()
    assert pde.name == "my_heat" and pde.dim == 3
    np.testing.assert_allclose(pde.exact(0.0, jnp.ones(3)), 2.0 * (3 + 3))
    report = run_experiment(config, tmp_path / "run", progress=False)
    methods = report.metrics["methods"]
    assert 0.005 < methods["surrogate"]["relative_l2"] < 0.05
    for name in ("fk", "scasml"):
        assert methods[name]["relative_l2"] < 0.5 * methods["surrogate"]["relative_l2"], name
    text = (tmp_path / "run" / "report.md").read_text()
    assert text.startswith("# run: heat in 3 dimensions")
    again = load_config(tmp_path / "run" / "config.toml")  # the run directory's config names the file absolutely
    assert again.equation.name == config.equation.name

    fixed = {**SMALL, "equation": {"name": f"python:{folder / 'my_pde.py'}:fixed", "dim": 3}}
    assert config_from_dict(fixed).make_pde().dim == 3
    bad = [
        ("fixed", {"dim": 4}, r"^equation\.dim: 4, but the PDE .* has dim=3"),
        ("fixed", {"parameters": {"scale": 1.0}}, r"^equation\.parameters: 'fixed' is a PDE object"),
        ("no_exact", {}, r"^equation\.name: .* has no exact solution"),
        ("not_a_pde", {}, r"^equation\.name: .*'not_a_pde' is a int, not a PDE"),
        ("broken", {}, r"^equation\.name: .*broken\(dim=3, \*\*equation\.parameters\) raised RuntimeError"),
        ("nothing", {}, r"^equation\.name: .*has no attribute 'nothing'"),
    ]
    for attribute, extra, message in bad:
        table = {"name": f"python:{folder / 'my_pde.py'}:{attribute}", "dim": 3, **extra}
        with pytest.raises(ConfigError, match=message):
            config_from_dict({**SMALL, "equation": table})
    with pytest.raises(ConfigError, match=r"^equation\.name: .*no such file"):
        config_from_dict({**SMALL, "equation": {"name": "python:missing.py:heat", "dim": 3}})
    with pytest.raises(ConfigError, match=r"^equation\.name: unknown equation 'vbb'.*python:path/to/file\.py:pde"):
        config_from_dict({**SMALL, "equation": {"name": "vbb", "dim": 3}})


def test_user_function_signature_rule():
    from scasml.experiments._user import is_factory

    assert is_factory(lambda pde: None) and is_factory(lambda pde, scale=1.0: None)
    assert not is_factory(lambda t, x: t) and not is_factory(lambda t, x, scale=1.0: t)
    assert not is_factory(lambda *args: args[0]) and is_factory(lambda pde=None: pde)
    assert not is_factory(scasml.PINN(2, 1.0, jax.random.key(0), width=2, depth=1))  # a module's __call__(t, x)


def test_gp_surrogate_run(tmp_path):
    raw = {**SMALL, "experiment": {"name": "gp"}, "equation": {"name": "vb", "dim": 3},
           "surrogate": {"kind": "gp"}, "training": {"points": 48, "terminal_points": 16, "iterations": 2}}
    raw["methods"] = {**SMALL["methods"], "scasml": {"kind": "scasml", "levels": 1, "base": 8}}
    config = config_from_dict(raw)
    report = run_experiment(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    header = scasml.surrogates.read_header(run / "checkpoint.scasml")
    assert header["architecture"]["kind"] == "gp" and header["architecture"]["centres"] == 64
    assert header["training"]["points"] == 48 and header["training"]["iterations"] <= 2
    assert json.loads((run / "stages" / "train.json").read_text())["final_residual_rms"] >= 0
    assert "GP (kernel collocation), matern52 kernel" in (run / "report.md").read_text()
    assert not (run / "training.csv").exists()
    methods = report.metrics["methods"]
    assert methods["scasml"]["relative_l2"] < methods["surrogate"]["relative_l2"] < 0.3
    markers = {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*.json") if p.name != "report.json"}
    run_experiment(load_config(run / "config.toml"), run, progress=False)  # resume: the checkpoint is reused
    assert {p: p.stat().st_mtime_ns for p in markers} == markers


# ---- kill -9 of a real `scasml run` (subprocesses sharing one compilation cache) -------------------------

TRAINED = """
[experiment]
name = "tiny-trained"

[equation]
name = "vb"
dim = 3

[surrogate]
width = 8
depth = 1

[training]
steps = 40
log_every = 10
collocation = 32
terminal_points = 16
learning_rate = 1e-2
final_learning_rate = 1e-3

[evaluation]
points = 96
chunks = 6
repetitions = 2

[methods.surrogate]
kind = "surrogate"

[methods.scasml]
kind = "scasml"
levels = 1
base = 16

[sweep]
base = [4, 8]
training_steps = [20, 40]
"""

# Runs the CLI with every SCaSML chunk slowed down by argv[1] seconds, so that a kill lands mid-calibration.
DRIVER = """
import sys, time
from scasml.experiments import _runner
original = _runner.evaluate_method
def slow(method, *args, **kwargs):
    out = original(method, *args, **kwargs)
    if method.kind == "scasml":
        time.sleep(float(sys.argv[1]))
    return out
_runner.evaluate_method = slow
from scasml.cli import main
sys.exit(main(sys.argv[2:]))
"""


def scasml_cli(workspace, *args, delay: float = 0.0, wait: bool = True):
    env = {**os.environ, "SCASML_COMPILE_CACHE": str(workspace / "xla-cache")}
    cmd = [sys.executable, str(workspace / "driver.py"), str(delay), *args]
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"scasml {' '.join(args)} failed:\n{err}"
    return out, err


@pytest.mark.slow
def test_kill_9_during_calibration_resumes_to_identical_metrics(tmp_path):
    (tmp_path / "tiny.toml").write_text(TRAINED)
    (tmp_path / "driver.py").write_text(DRIVER)
    out, _ = scasml_cli(tmp_path, "run", "tiny.toml", "--out", "uninterrupted", "--quiet")
    assert "tiny-trained (VB, d=3)" in out
    reference = tmp_path / "uninterrupted"
    for fig in ("errors", "scatter", "improvement", "training", "scaling", "convergence"):
        assert (reference / "figures" / f"{fig}.png").stat().st_size > 1000, fig

    run = tmp_path / "killed"
    proc = scasml_cli(tmp_path, "run", "tiny.toml", "--out", "killed", "--quiet", delay=0.5, wait=False)
    first_chunk = run / "stages" / "eval" / "rep-0" / "scasml" / "chunk-000.json"
    deadline = time.monotonic() + 300
    while not first_chunk.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached the calibration"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    finished = sorted((run / "stages" / "eval" / "rep-0" / "scasml").glob("chunk-*.json"))
    assert 1 <= len(finished) < 6 and not (run / "metrics.json").exists()
    checkpoint_mtime = (run / "checkpoint.scasml").stat().st_mtime_ns

    scasml_cli(tmp_path, "run", "tiny.toml", "--out", "killed", "--quiet")
    assert (run / "checkpoint.scasml").stat().st_mtime_ns == checkpoint_mtime  # training was not redone
    log = (run / "run.log").read_text()
    assert "resuming run 'tiny-trained'" in log and f"{len(finished)} of 6 chunks already done" in log
    assert (run / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_lqou_run_with_a_built_in_terminal_condition_wider_than_the_network(tmp_path):
    """`scasml run lqou-100d` at d = 60 > width, in a new process (the command shards over every CPU core): the
    terminal transform's derivative along constant σ directions inside the sharded program (jax's varying-axes
    check refused it: 'mul requires varying manual axes to match')."""
    overrides = ["equation.dim=60", "training.steps=10", "evaluation.points=12", "evaluation.chunks=2",
                 "evaluation.repetitions=1"]
    command = [sys.executable, "-m", "scasml", "run", "lqou-100d", "--out", str(tmp_path / "run"), "--quiet"]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert math.isfinite(metrics["methods"]["scasml"]["relative_l2"])


def test_run_at_the_recorded_reference(tmp_path):
    """evaluation.at = 'reference' (bsdr, d = 100): every test point is (0, x₀), compared with the recorded u(0, x₀)
    (its standard error in the points' exact_stderr); each point draws its own noise; the report names the
    reference, the smoothed payoff and the scalings."""
    pde = scasml.equations.get("bsdr", dim=100)  # an untrained saved PINN: no training in this test
    scasml.save_surrogate(tmp_path / "pinn.scasml", scasml.PINN(
        100, pde.horizon, jax.random.key(0), width=8, depth=1, terminal=pde.smoothed_terminal(8.0),
        terminal_smoothing=8.0, input_offset=100.0, input_scale=30.0, output_scale=50.0), pde)
    raw = {**TINY, "equation": {"name": "bsdr", "dim": 100},
           "surrogate": {"width": 8, "depth": 1, "terminal_transform": True, "terminal_smoothing": 8.0,
                         "input_offset": 100.0, "input_scale": 30.0, "output_scale": 50.0,
                         "checkpoint": str(tmp_path / "pinn.scasml")},
           "evaluation": {"points": 4, "chunks": 1, "at": "reference"},
           "methods": {"surrogate": {"kind": "surrogate"}, "mlp": {"kind": "mlp", "levels": 1, "base": 4}}}
    report = run_experiment(config_from_dict(raw), tmp_path / "run", progress=False)
    run = RunDirectory.open(tmp_path / "run")
    points = run.load_arrays("points/rep-0")
    assert np.all(points["x"] == 100.0) and np.all(points["t"] == 0.0)
    assert np.all(points["exact"] == np.float32(57.307)) and np.all(points["exact_stderr"] == np.float32(0.009))
    u = run.load_arrays("eval/rep-0/mlp/chunk-000")["prediction"]
    assert len(np.unique(u)) == 4  # one draw of noise per point index
    assert report.metrics["reference"].startswith("recorded u(0, x₀) = 57.307 ± 0.009")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "g smoothed at scale 8" in text and "input offset 100" in text
