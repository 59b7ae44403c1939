"""The run report: every file report.md links exists, error bars and cost are reported, per-point files hold x."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_runner import TINY, finished_run  # noqa: F401  (the small-run fixture, shared)

from scasml.experiments import config_from_dict, read_points, run_experiment
from scasml.experiments._metrics import coverage_at, wilson_interval

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def swept_run(finished_run, tmp_path_factory):  # noqa: F811
    """The same tiny config with an M-sweep and a SURE twin (links results/sweeps.csv and the scaling figure)."""
    _, config, _ = finished_run
    checkpoint = config.surrogate.checkpoint
    raw = {**TINY, "surrogate": {**TINY["surrogate"], "checkpoint": checkpoint},
           "sweep": {"base": [4, 8], "points": 12},
           "methods": {**TINY["methods"], "sure": {"kind": "scasml", "levels": 1, "base": 8, "shrinkage": "sure"}}}
    out = tmp_path_factory.mktemp("report") / "run"
    run_experiment(config_from_dict(raw), out, progress=False)
    return out


def _links(run: Path) -> list[str]:
    text = (run / "report.md").read_text()
    return [target for target in LINK.findall(text) if "://" not in target]


@pytest.mark.parametrize("which", ["finished_run", "swept_run"])
def test_every_file_report_md_links_exists(which, request):
    fixture = request.getfixturevalue(which)
    run = fixture[0] if isinstance(fixture, tuple) else fixture
    links = _links(run)
    assert "figures/calibration.png" in links and "figures/band.png" in links and "results/points.csv" in links
    missing = [target for target in links if not (run / target).is_file()]
    assert not missing, f"report.md links files that do not exist: {missing}"
    assert ("results/sweeps.csv" in links) == (which == "swept_run")
    assert ("figures/scaling.png" in links) == (which == "swept_run")


def test_report_shows_error_bars_and_cost_per_method(swept_run):
    text = (swept_run / "report.md").read_text()
    metrics = json.loads((swept_run / "metrics.json").read_text())
    assert "## Error bars" in text and "## Cost" in text
    assert "compiled s" not in text and "evals/point" not in text
    results = text.split("## Results")[1].split("##")[0]
    assert "| mean stderr | 95% coverage |" in results
    for name in ("mlp", "scasml"):
        m = metrics["methods"][name]
        assert f"{100 * m['interval_coverage']:.1f} %" in results
        assert f"{m['mean_stderr']:.2e}" in results
        assert m["interval_calibration"]["points"] == 2 * 24
        # exact reference, no point at t = T: z-based coverage at 95 % is the interval's coverage
        assert m["interval_calibration"]["coverage_by_nominal_level"]["0.95"] == pytest.approx(m["interval_coverage"])
    assert metrics["methods"]["surrogate"]["interval_calibration"] is None
    cost = text.split("## Cost")[1].split("##")[0]
    assert "| plain evaluations / point | residual evaluations / point |" in cost
    assert "| scasml | 10 | 8 |" in cost and "| mlp | 17 | 0 |" in cost  # n = 1, M = 8: 8 residuals
    header = (swept_run / "results" / "sweeps.csv").read_text().splitlines()[0]
    assert "plain_evaluations_per_point,residual_evaluations_per_point" in header


def test_points_csv_stores_the_coordinates(finished_run):  # noqa: F811
    run, config, _ = finished_run
    npz = np.load(run / "results" / "points.npz", allow_pickle=False)
    lines = (run / "results" / "points.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:6] == ["repetition", "index", "t", "x0", "x1", "x2"]
    assert "x_sum" not in header and "x_norm" not in header
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(table[:, 3:6], npz["x"].reshape(-1, 3), rtol=1e-7)
    t, x = read_points(run / "results" / "points.csv", 3, config.make_pde().horizon)  # `scasml calibrate` input
    np.testing.assert_allclose(x, npz["x"].reshape(-1, 3), rtol=1e-7)
    np.testing.assert_allclose(t, npz["t"].reshape(-1), rtol=1e-7)


def test_coverage_helpers():
    z = np.random.default_rng(0).normal(size=200_000)
    for level in (0.5, 0.9, 0.95, 0.99):
        assert coverage_at(z, level) == pytest.approx(level, abs=0.004)
    lo, hi = wilson_interval(0.95, 1200)
    assert lo < 0.95 < hi and hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.95 * 0.05 / 1200), rel=0.05)
    assert wilson_interval(1.0, 10)[1] == 1.0 and wilson_interval(0.0, 10)[0] == pytest.approx(0.0, abs=1e-12)
