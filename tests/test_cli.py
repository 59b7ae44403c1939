"""The ``scasml`` command line: help, list, train, calibrate on user point files, argument and file errors."""

from __future__ import annotations

import csv
import re

import equinox as eqx
import jax
import numpy as np
import pytest
from conftest import count_training_blocks

import scasml
from scasml.cli import main
from scasml.surrogates import read_header

TRAIN_CONFIG = """
[experiment]
name = "cli-tiny"
[equation]
name = "vb"
dim = 3
[surrogate]
width = 8
depth = 1
[training]
steps = 10
log_every = 5
collocation = 16
terminal_points = 8
[methods.surrogate]
kind = "surrogate"
"""


@pytest.fixture(autouse=True)
def _no_global_compile_cache(monkeypatch):
    monkeypatch.setenv("SCASML_COMPILE_CACHE", "none")  # keep the test process's JAX configuration untouched


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An (untrained) 3-d VB PINN saved with its PDE, as `scasml train` would write it."""
    path = tmp_path_factory.mktemp("ckpt") / "vb3.scasml"
    pde = scasml.equations.get("vb", dim=3)
    scasml.save_surrogate(path, scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1), pde)
    return path


def write_csv(path, rows, header=("t", "x0", "x1", "x2")):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


POINTS = [[0.0, 0.1, -0.2, 0.3], [0.25, 0.0, 0.0, 0.0], [0.4, -0.5, 0.5, 0.2], [0.5, 0.1, 0.1, 0.1]]


@pytest.mark.parametrize("command", ["run", "report", "train", "calibrate", "list"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: scasml {command}" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "run" in capsys.readouterr().err


def test_list_shows_equations_and_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vb" in out and "lqg" in out and "Monte Carlo reference" in out
    assert "quickstart" in out and "lcd-10d" in out


def read_rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_calibrate_user_points_csv_npy_npz(checkpoint, tmp_path, capsys):
    src = write_csv(tmp_path / "points.csv", POINTS)
    out = tmp_path / "out.csv"
    args = ["--levels", "1", "--base", "8", "--seed", "3", "--quiet"]
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out), *args]) == 0
    assert "calibrated 4 points" in capsys.readouterr().out
    rows = read_rows(out)
    assert len(rows) == 4
    assert list(rows[0]) == ["t", "x0", "x1", "x2", "surrogate", "defect", "u", "stderr", "lower", "upper", "finite",
                             "exact"]
    u = np.array([float(r["u"]) for r in rows])
    np.testing.assert_allclose(u, [float(r["surrogate"]) + float(r["defect"]) for r in rows], rtol=1e-5, atol=1e-6)
    assert all(float(r["lower"]) <= float(r["u"]) <= float(r["upper"]) for r in rows)
    last = rows[-1]  # t = T: the calibrated value is g(x) exactly, with zero stderr
    assert float(last["stderr"]) == 0.0 and float(last["u"]) == pytest.approx(float(last["exact"]), abs=1e-6)

    npy = tmp_path / "points.npy"
    np.save(npy, np.array(POINTS))
    npz_out = tmp_path / "out.npz"
    assert main(["calibrate", str(checkpoint), "--points", str(npy), "--out", str(npz_out), *args]) == 0
    with np.load(npz_out, allow_pickle=False) as data:
        np.testing.assert_allclose(data["u"], u, rtol=1e-6)
        assert data["x"].shape == (4, 3)

    # columns in another order, an extra column and a comment line
    shuffled = tmp_path / "shuffled.csv"
    write_csv(shuffled, [[p[3], "a", p[1], p[0], p[2]] for p in POINTS], header=("x2", "label", "x0", "t", "x1"))
    shuffled.write_text("# my points\n" + shuffled.read_text())
    out2 = tmp_path / "out2.csv"
    assert main(["calibrate", str(checkpoint), "--points", str(shuffled), "--out", str(out2), *args]) == 0
    np.testing.assert_allclose([float(r["u"]) for r in read_rows(out2)], u, rtol=1e-6)

    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out), *args]) == 2
    assert "exists; pass --force" in capsys.readouterr().err

    out3 = tmp_path / "out3.csv"  # point i uses fold_in(key, i): the chunking does not change the results
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out3), *args,
                 "--chunk-points", "3"]) == 0
    chunked = [r["u"] for r in read_rows(out3)]
    if jax.default_backend() == "cpu":  # bit-identical there (fixed vector width); to rounding on accelerators
        assert chunked == [r["u"] for r in rows]
    np.testing.assert_allclose([float(v) for v in chunked], u, rtol=1e-6)

    out5 = tmp_path / "out5.csv"  # the variance-reduction options, as MultilevelPicard's arguments
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out5), "--levels", "2", "--base",
                 "4", "--antithetic", "--qmc-sets", "4", "--qmc-points", "8", "--min-top-samples", "8", "--inner-base",
                 "3", "--next-correction", "2"]) == 0
    assert ("MultilevelPicard(levels=2, base=4, antithetic=True, min_top_samples=8, qmc_sets=4, qmc_points=8, "
            "inner_base=3, next_correction=2)"
            in capsys.readouterr().out)
    out6 = tmp_path / "out6.npz"  # no multilevel Picard option given: scasml.default_estimator, as calibrate's
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out6), "--seed", "3"]) == 0
    assert ("MultilevelPicard(levels=2, base=10, antithetic=True, qmc_sets=8, qmc_points=32, min_top_samples=40, "
            "next_correction=4) (the default)" in capsys.readouterr().out)
    pde = scasml.equations.get("vb", dim=3)
    with np.load(out6, allow_pickle=False) as data:
        api = scasml.calibrate(scasml.load_surrogate(checkpoint, pde), pde, data["t"], data["x"], key=jax.random.key(3))
        np.testing.assert_array_equal(data["u"], api.u)
    from scasml.cli import build_parser  # flags left out keep MultilevelPicard's defaults; --no-antithetic is False

    parsed = build_parser().parse_args(["calibrate", str(checkpoint), "--points", str(src), "--no-antithetic"])
    assert parsed.antithetic is False and parsed.qmc_sets is None and parsed.min_top_samples is None
    assert parsed.qmc_points is None and parsed.next_correction is None

    out4 = tmp_path / "out4.npz"  # --shrinkage sure: the same estimates, shrunk over all points together
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out4), *args,
                 "--shrinkage", "sure"]) == 0
    assert "SURE shrinkage threshold" in capsys.readouterr().out
    with np.load(out4, allow_pickle=False) as data, np.load(npz_out, allow_pickle=False) as plain:
        expected, _ = scasml.shrink_defect(plain["defect"], plain["stderr"], plain["finite"])
        np.testing.assert_array_equal(data["defect"], expected)
        np.testing.assert_array_equal(data["u"], plain["surrogate"] + expected)
        np.testing.assert_array_equal(data["lower"], plain["lower"])


MALFORMED = [
    ("wrong_width.csv", "0.1,0.2,0.3\n0.2,0.1,0.1\n", r"line 1 has 3 columns; expected 4"),
    ("ragged.csv", "0.1,0.2,0.3,0.1\n0.2,0.1\n", r"line 2 has 2 columns, expected 4"),
    ("not_numbers.csv", "t,x0,x1,x2\n0.1,0.2,0.3,0.1\n0.2,abc,0.1,0.0\n", r"line 3: 'abc' is not a number"),
    ("bad_header.csv", "t,x0,x1,y\n0.1,0.2,0.3,0.1\n", r"header must name columns t, x0 … x2 .* missing x2"),
    ("header_only.csv", "t,x0,x1,x2\n", r"a header but no points"),
    ("too_many_dims.csv", "t,x0,x1,x2,x3\n0.1,0,0,0,0\n", r"names coordinate x3, but this equation has 3 dim"),
    ("two_t.csv", "t,x0,x1,x2,t\n0.1,0,0,0,0.2\n", r"names t more than once"),
    ("empty.csv", "\n\n", r"no points found"),
    ("late.csv", "0.1,0,0,0\n0.7,0,0,0\n", r"t must lie in \[0, T\] = \[0, 0.5\]; point 1 has t = 0.7"),
    ("nan.csv", "0.1,nan,0,0\n", r"x is not finite at point 0"),
    ("points.json", "[[0.1, 0, 0, 0]]", r"unknown points format '.json'"),
]


def test_calibrate_reports_the_picard_truncation(checkpoint, tmp_path, capsys):
    """The summary line gives the batch estimate of the Picard truncation (n = 2, ≥ 32 points; the untrained
    PINN's defect is large, so it is too), and nothing at n = 1, where there is no correction to estimate it from."""
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 0.4, 80), rng.normal(size=(80, 3))])
    src = write_csv(tmp_path / "many.csv", points.tolist())
    for levels, shown in (("2", True), ("1", False)):
        out = tmp_path / f"out{levels}.csv"
        assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out), "--levels", levels,
                     "--base", "4", "--quiet"]) == 0
        summary = capsys.readouterr().out
        assert ("Picard truncation ≈" in summary) == shown, summary
    # --widen: the estimate over all points, whatever the chunks (five of 16, each too few for an estimate of its
    # own, or one of 80), spread over them ∝ T − t and added to the intervals around the same centres
    plain = read_rows(tmp_path / "out2.csv")
    estimates = []
    for chunk in ("16", "80"):
        wide_out = tmp_path / f"wide{chunk}.csv"
        assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(wide_out), "--levels", "2",
                     "--base", "4", "--quiet", "--widen", "--chunk-points", chunk]) == 0
        assert "(RMS, in the intervals: --widen)" in capsys.readouterr().out
        estimates.append([float(r["truncation"]) for r in read_rows(wide_out)])
    np.testing.assert_allclose(estimates[0], estimates[1], rtol=1e-6)
    wide = read_rows(wide_out)
    ratio = [float(r["truncation"]) / (0.5 - float(r["t"])) for r in wide]  # T = 0.5
    assert min(ratio) > 0 and max(ratio) == pytest.approx(min(ratio), rel=1e-4)
    for a, b in zip(plain, wide, strict=True):
        assert float(a["u"]) == pytest.approx(float(b["u"]), rel=1e-6)
        assert float(b["lower"]) <= float(a["lower"]) and float(b["upper"]) >= float(a["upper"])
        centre = lambda r: (float(r["lower"]) + float(r["upper"])) / 2
        assert centre(b) == pytest.approx(centre(a), rel=1e-5, abs=1e-6)
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(tmp_path / "w1.csv"), "--levels",
                 "1", "--base", "4", "--quiet", "--widen"]) == 0
    assert "--widen: no Picard truncation estimate" in capsys.readouterr().out


def test_calibrate_warns_of_the_truncation_over_all_chunks(tmp_path, capsys):
    """A surrogate far off (output scaled ×20) leaves a truncation of 0.7 standard errors at M = 64: one warning
    from the estimate over all points, though no chunk of 16 has the points for an estimate of its own; none
    with --widen, which puts it into the intervals."""
    pde = scasml.equations.get("vb", dim=3)
    far_off = scasml.PINN(3, pde.horizon, jax.random.key(0), width=8, depth=1, output_scale=20.0)
    scasml.save_surrogate(tmp_path / "far.scasml", far_off, pde)
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 0.4, 80), rng.normal(size=(80, 3))])
    src = write_csv(tmp_path / "many.csv", points.tolist())
    common = ["calibrate", str(tmp_path / "far.scasml"), "--points", str(src), "--levels", "2", "--base", "64",
              "--quiet", "--chunk-points", "16"]
    assert main([*common, "--out", str(tmp_path / "plain.csv")]) == 0
    err = capsys.readouterr().err
    assert err.count("the Picard truncation") == 1 and "--widen adds it to the intervals" in err, err
    assert main([*common, "--out", str(tmp_path / "wide.csv"), "--widen"]) == 0
    assert "the Picard truncation" not in capsys.readouterr().err


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_calibrate_rejects_malformed_points(checkpoint, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    assert main(["calibrate", str(checkpoint), "--points", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "scasml calibrate: error:" in err and name in err
    assert re.search(message, err), err
    assert not (tmp_path / f"{path.stem}.calibrated.csv").exists()


def test_calibrate_rejects_bad_binary_inputs(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.zeros(8))
    assert main(["calibrate", str(checkpoint), "--points", str(tmp_path / "flat.npy")]) == 2
    assert "expected a real (float or integer) array of shape (N, 4)" in capsys.readouterr().err
    np.savez(tmp_path / "p.npz", t=np.zeros(2), y=np.zeros((2, 3)))
    assert main(["calibrate", str(checkpoint), "--points", str(tmp_path / "p.npz")]) == 2
    assert "needs arrays 't' and 'x'" in capsys.readouterr().err
    assert main(["calibrate", str(checkpoint), "--points", str(tmp_path / "missing.csv")]) == 2
    assert "no such points file" in capsys.readouterr().err
    (tmp_path / "junk.scasml").write_bytes(b"hello")
    write_csv(tmp_path / "ok.csv", POINTS)
    assert main(["calibrate", str(tmp_path / "junk.scasml"), "--points", str(tmp_path / "ok.csv")]) == 2
    assert "not a scasml checkpoint" in capsys.readouterr().err
    assert main(["calibrate", str(checkpoint), "--points", str(tmp_path / "ok.csv"), "--base", "1"]) == 2
    assert "base must be ≥ 2" in capsys.readouterr().err


def test_train_and_continue(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG)
    ckpt = tmp_path / "model.scasml"
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    assert read_header(ckpt)["training"]["total_steps"] == 10
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 2
    assert "exists; pass --continue" in capsys.readouterr().err
    assert main(["train", str(config), "-o", str(ckpt), "--continue", "--quiet", "--set", "training.steps=5"]) == 0
    header = read_header(ckpt)
    assert header["training"]["total_steps"] == 15
    assert header["training"]["continued_from"]["total_steps"] == 10
    assert header["pde"]["name"] == "vb" and header["architecture"]["width"] == 8
    assert main(["train", str(config), "-o", str(ckpt), "--continue", "--quiet", "--set", "surrogate.width=16"]) == 2
    assert "has another architecture (width 8 in the checkpoint, 16 in the config)" in capsys.readouterr().err


def test_interrupted_train_continues_with_the_same_command(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the second block keeps the state of the first and says so; the same command then continues from
    it to the checkpoint an uninterrupted command writes (same weights), and removes the state."""
    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG)
    whole, ckpt = tmp_path / "whole.scasml", tmp_path / "model.scasml"
    assert main(["train", str(config), "-o", str(whole), "--quiet"]) == 0
    count_training_blocks(monkeypatch, interrupt_at=2)
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 130
    state = tmp_path / "model.scasml.training-state.npz"
    assert f"state after its last finished block is in {state}" in capsys.readouterr().err
    assert state.is_file() and not ckpt.exists()
    count_training_blocks(monkeypatch)
    assert main(["train", str(config), "-o", str(ckpt), "--quiet", "--set", "training.steps=20"]) == 2
    assert "holds the state of another training" in capsys.readouterr().err and state.is_file()
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    assert not state.exists()
    pde = scasml.equations.get("vb", dim=3)
    for a, b in zip(*(jax.tree.leaves(eqx.filter(scasml.load_surrogate(p, pde), eqx.is_array)) for p in (whole, ckpt)),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    count_training_blocks(monkeypatch, interrupt_at=2)
    assert main(["train", str(config), "-o", str(tmp_path / "other.scasml"), "--quiet"]) == 130
    count_training_blocks(monkeypatch)
    assert main(["train", str(config), "-o", str(tmp_path / "other.scasml"), "--quiet", "--force",
                 "--set", "training.steps=20"]) == 0  # --force trains afresh over another training's state
    assert read_header(tmp_path / "other.scasml")["training"]["total_steps"] == 20
    assert not (tmp_path / "other.scasml.training-state.npz").exists()


def test_bad_config_is_rejected_before_any_work(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--set", "training.steps=0"]) == 2
    assert "training.steps: must be ≥ 1; got 0" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", str(config), "--out", str(out), "--set", "methods.surrogate.kind=magic"]) == 2
    assert "methods.surrogate.kind: must be one of" in capsys.readouterr().err
    assert main(["run", "no-such-config"]) == 2
    assert "no such config file" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data.txt").write_text("x")
    assert main(["run", str(config), "--out", str(tmp_path / "busy")]) == 2
    assert "not a scasml run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "busy")]) == 2
    assert "not a scasml run directory" in capsys.readouterr().err


USER_SURROGATE = """
import jax.numpy as jnp


def surrogate(pde):
    return lambda t, x: pde.exact(t, x) * (1 + 0.05 * jnp.sin(jnp.sum(x)))
"""


def test_calibrate_a_user_function(tmp_path, capsys):
    module = tmp_path / "mine.py"
    module.write_text(USER_SURROGATE)
    src = write_csv(tmp_path / "points.csv", POINTS)
    out = tmp_path / "out.csv"
    user = ["--surrogate", f"python:{module}:surrogate"]
    args = ["--points", str(src), "--out", str(out), "--levels", "1", "--base", "8", "--quiet"]
    assert main(["calibrate", *user, "--equation", "vb", "--dim", "3", *args]) == 0
    rows = read_rows(out)
    exact = np.array([float(r["exact"]) for r in rows])
    x = np.array(POINTS)[:, 1:]
    np.testing.assert_allclose([float(r["surrogate"]) for r in rows], exact * (1 + 0.05 * np.sin(x.sum(axis=1))),
                               rtol=1e-5)
    assert float(rows[-1]["u"]) == pytest.approx(float(rows[-1]["exact"]), abs=1e-6)  # t = T: g(x) exactly
    capsys.readouterr()
    for argv, message in [
        ([*user, "--equation", "vb", *args], "--surrogate needs --dim"),
        (args, "give a CHECKPOINT, or --surrogate"),
        (["model.scasml", *user, "--equation", "vb", "--dim", "3", *args], "give either a CHECKPOINT"),
        (["--surrogate", "gp", "--equation", "vb", "--dim", "3", *args], "--surrogate 'gp': expected python:"),
        ([*user, "--equation", "nope", "--dim", "3", *args], "--equation 'nope': unknown"),
        (["--surrogate", f"python:{module}:surogate", "--equation", "vb", "--dim", "3", *args],
         "has no attribute 'surogate' (did you mean 'surrogate'?)"),
    ]:
        assert main(["calibrate", *argv, "--force"]) == 2, argv
        assert message in capsys.readouterr().err, argv


USER_HEAT = """
import scasml


def heat(dim):
    return scasml.SemilinearPDE(dim=dim, horizon=1.0, nonlinearity=lambda t, x, u, z: 0.0 * u,
                                terminal=lambda x: x @ x, linear=True, exact=lambda t, x: x @ x + dim * (1.0 - t))


def surrogate(t, x):
    return 1.05 * (x @ x + 3 * (1.0 - t))
"""


def test_calibrate_a_user_pde_with_feynman_kac(tmp_path, capsys):
    """--equation python:file.py:factory with --estimator feynman-kac; a semilinear PDE is refused clearly."""
    module = tmp_path / "heat.py"
    module.write_text(USER_HEAT)
    src = write_csv(tmp_path / "points.csv", POINTS)
    out = tmp_path / "out.csv"
    common = ["--surrogate", f"python:{module}:surrogate", "--dim", "3", "--points", str(src), "--out", str(out),
              "--quiet", "--force"]
    assert main(["calibrate", *common, "--equation", f"python:{module}:heat", "--estimator", "feynman-kac",
                 "--paths", "400"]) == 0
    assert "FeynmanKac(paths=400)" in capsys.readouterr().out
    rows = read_rows(out)
    exact, u, stderr = (np.array([float(r[c]) for r in rows]) for c in ("exact", "u", "stderr"))
    surrogate = np.array([float(r["surrogate"]) for r in rows])
    np.testing.assert_allclose(surrogate, 1.05 * exact, rtol=1e-5)
    assert np.all(np.abs(u - exact) <= 4 * stderr + 1e-5)  # the defect −0.05·u is linear in (t, x²): FK is exact
    for argv, message in [
        (["--equation", "vb", "--estimator", "feynman-kac"], "--estimator feynman-kac needs a linear PDE"),
        (["--equation", f"python:{module}:heet"], "--equation: 'python:"),
        (["--equation", f"python:{module}:heat", "--estimator", "feynman-kac", "--paths", "0"], "paths"),
        (["--equation", f"python:{module}:heat", "--estimator", "feynman-kac", "--paths", "-5"],
         "--paths must be positive"),
    ]:
        assert main(["calibrate", *common, *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_train_fits_a_gp_and_refuses_a_user_function(tmp_path, capsys):
    config = tmp_path / "gp.toml"
    config.write_text(TRAIN_CONFIG.replace("width = 8\ndepth = 1", 'kind = "gp"').replace(
        "steps = 10\nlog_every = 5\ncollocation = 16", "points = 24\niterations = 2"))
    ckpt = tmp_path / "gp.scasml"
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    assert "GP with 32 centres" in capsys.readouterr().out
    assert read_header(ckpt)["architecture"]["kind"] == "gp"
    assert main(["train", str(config), "-o", str(ckpt), "--continue", "--quiet"]) == 2
    assert "cannot be trained further" in capsys.readouterr().err
    user = tmp_path / "user.toml"
    user.write_text('[equation]\nname = "vb"\ndim = 3\n[surrogate]\nkind = "python:math:hypot"\n'
                    '[methods.s]\nkind = "surrogate"\n')
    assert main(["train", str(user), "--quiet"]) == 2
    assert "is a user function: there is nothing to train" in capsys.readouterr().err


def test_points_csv_with_a_byte_order_mark_is_read(tmp_path):
    from scasml.experiments._points import read_points

    path = tmp_path / "excel.csv"
    path.write_bytes("t,x0,x1\n0.1,0.5,-0.5\n".encode("utf-8-sig"))
    t, x = read_points(path, dim=2, horizon=1.0)
    np.testing.assert_array_equal(t, [0.1])
    np.testing.assert_array_equal(x, [[0.5, -0.5]])


def test_unwritable_outputs_and_bad_options_fail_before_any_work(checkpoint, tmp_path, capsys):
    write_csv(tmp_path / "ok.csv", POINTS)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    (tmp_path / "d.csv").mkdir()
    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG)
    cases = [
        (["calibrate", str(checkpoint), "--points", str(tmp_path / "ok.csv"), "--out", str(blocker / "x.csv")],
         "cannot write in"),
        (["calibrate", str(checkpoint), "--points", str(tmp_path / "ok.csv"), "--out", str(tmp_path / "d.csv")],
         "is a directory"),
        (["calibrate", str(checkpoint), "--points", str(tmp_path / "ok.csv"), "--clip", "abc"],
         "--clip must be a number or 'none'"),
        (["train", str(config), "-o", str(blocker / "m.scasml")], "cannot write in"),
        (["run", str(config), "--out", str(blocker)], "is a file; give a directory"),
        (["calibrate", str(tmp_path), "--points", str(tmp_path / "ok.csv")], "error:"),  # a directory as checkpoint
    ]
    for argv, message in cases:
        assert main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert f"scasml {argv[0]}: error:" in err and message in err, (argv, err)
        assert "Traceback" not in err
    assert not list(tmp_path.glob("*.scasml"))


def test_calibrate_with_a_target_or_a_budget(checkpoint, tmp_path, capsys):
    src = write_csv(tmp_path / "points.csv", POINTS)
    base = ["calibrate", str(checkpoint), "--points", str(src), "--levels", "2", "--base", "4", "--seed", "1"]
    out = tmp_path / "target.csv"
    assert main([*base, "--out", str(out), "--target-relative", "1e-9", "--max-replicas", "3"]) == 0
    captured = capsys.readouterr()
    assert "target met at 1 of 4 points (missed at 3: 3 at max_replicas)" in captured.out  # t = T: exact, met
    assert "points done 3/3" in captured.err  # the progress bar
    rows = read_rows(out)
    assert [r["replicas"] for r in rows] == ["3", "3", "3", "1"] and [r["met"] for r in rows] == ["0", "0", "0", "1"]
    budget = tmp_path / "budget.csv"
    assert main([*base, "--out", str(budget), "--budget", "1e5", "--quiet"]) == 0
    assert "Budget(evaluations=100000.0)" in capsys.readouterr().out
    assert "met" not in read_rows(budget)[0]


@pytest.mark.parametrize("flags, message", [
    (["--target-stderr", "0"], "--target-stderr must be a positive finite number"),
    (["--target-relative", "nan"], "--target-relative must be a positive finite number"),
    (["--budget", "-1"], "--budget must be a positive finite number"),
    (["--target-stderr", "1e-3", "--max-replicas", "0"], "--max-replicas must be at least 1"),
    (["--max-replicas", "4"], "--max-replicas caps a target"),
    (["--budget", "1e6", "--target-stderr", "1e-3"], "either --budget or a target"),
    (["--budget", "10"], "below the pilot's cost"),
    (["--recommend"], "--recommend chooses (levels, base) for a target or a budget"),
    (["--min-top-samples", "0"], "min_top_samples must be a positive integer"),
    (["--estimator", "feynman-kac", "--min-top-samples", "20"], "--min-top-samples applies to --estimator picard"),
    (["--qmc-sets", "1"], "qmc_sets must be 0 (off) or an integer ≥ 2"),
    (["--inner-base", "1"], "inner_base must be None (the base) or an integer ≥ 2"),
    (["--estimator", "feynman-kac", "--inner-base", "3"], "--inner-base applies to --estimator picard"),
])
def test_calibrate_refuses_bad_targets_and_budgets(checkpoint, tmp_path, capsys, flags, message):
    src = write_csv(tmp_path / "points.csv", POINTS)
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(tmp_path / "o.csv"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_chunk_points_do_not_change_a_digit(tmp_path):
    """--chunk-points 7 is run as chunks of 8: chunks that start off a multiple of the CPU's vector width of 4
    put points in other lanes, where the shipped VB-10 PINN's matrix products rounded the defect differently."""
    from pathlib import Path

    checkpoint = Path(scasml.__file__).parent / "pretrained" / "vb_10.scasml"
    _, pde = scasml.pretrained("vb", 10)
    t, x = (np.asarray(a) for a in pde.sample_domain(jax.random.key(1), 40))
    points = tmp_path / "points.npz"
    np.savez(points, t=t, x=x)
    outputs = []
    for chunk in ("7", "256"):
        outputs.append(tmp_path / f"out-{chunk}.npz")
        assert main(["calibrate", str(checkpoint), "--points", str(points), "--out", str(outputs[-1]), "--levels",
                     "2", "--base", "4", "--quiet", "--chunk-points", chunk]) == 0
    with np.load(outputs[0]) as chunked, np.load(outputs[1]) as whole:
        for name in ("defect", "u", "stderr", "lower", "upper"):
            np.testing.assert_array_equal(chunked[name], whole[name])


# ---- reviewed defects: overwritten configs, ignored flags, chunk diagnostics, interrupts, sizes, list --------


def test_train_never_overwrites_the_config_or_another_file(tmp_path, capsys):
    """-o naming the config (also through a symbolic or hard link) is refused, with or without --force; --force
    replaces a scasml checkpoint only, never another file."""
    import os

    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG.replace("steps = 10", "steps = 2"))
    (tmp_path / "link.scasml").symlink_to(config)
    os.link(config, tmp_path / "hard.scasml")
    for out in (config, tmp_path / "." / "tiny.toml", tmp_path / "link.scasml", tmp_path / "hard.scasml"):
        assert main(["train", str(config), "-o", str(out), "--force", "--quiet"]) == 2, out
        assert "is the config file itself" in capsys.readouterr().err
    assert config.read_text() == TRAIN_CONFIG.replace("steps = 10", "steps = 2")
    data = tmp_path / "data.bin"
    data.write_bytes(b"precious")
    assert main(["train", str(config), "-o", str(data), "--force", "--quiet"]) == 2
    assert "--force replaces only a scasml checkpoint" in capsys.readouterr().err
    assert data.read_bytes() == b"precious"
    ckpt = tmp_path / "model.scasml"
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    assert main(["train", str(config), "-o", str(ckpt), "--force", "--quiet"]) == 0  # a checkpoint: replaced
    assert read_header(ckpt)["training"]["total_steps"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--paths", "-5"], "--paths applies to --estimator feynman-kac"),
    (["--paths", "100"], "--paths applies to --estimator feynman-kac"),
    (["--probes", "3"], "--probes applies to --trace hutchinson"),
    (["--trace", "hutchinson", "--probes", "0"], "--probes must be positive"),
    (["--estimator", "feynman-kac", "--levels", "3"], "--levels applies to --estimator picard"),
    (["--estimator", "feynman-kac", "--base", "4", "--clip", "3", "--variant", "quadrature"],
     "--base, --variant, --clip apply to --estimator picard"),
    (["--recommend", "--budget", "1e5", "--levels", "2", "--base", "4"],
     "--recommend chooses levels and base; drop --levels and --base"),
    (["--recommend", "--budget", "1e5", "--estimator", "feynman-kac"], "does not apply to --estimator feynman-kac"),
])
def test_calibrate_refuses_flags_that_do_not_apply(checkpoint, tmp_path, capsys, flags, message):
    src = write_csv(tmp_path / "points.csv", POINTS)
    out = tmp_path / "o.csv"
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(out), "--quiet", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_recommend_gives_the_estimator_options_to_every_candidate(checkpoint, tmp_path, capsys, monkeypatch):
    import scasml._recommend as recommend_module

    seen = {}

    class Chosen:
        def __init__(self, estimator):
            self.estimator = estimator

        def __str__(self):
            return "recommended"

    def fake_recommend(surrogate, pde, t, x, target, *, key, candidates=recommend_module.DEFAULT_CANDIDATES,
                       trace=None):
        seen["candidates"] = candidates
        return Chosen(scasml.MultilevelPicard(1, 4, antithetic=True, clip=5.0, variant="quadrature"))

    monkeypatch.setattr(recommend_module, "recommend", fake_recommend)
    src = write_csv(tmp_path / "points.csv", POINTS)
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--out", str(tmp_path / "o.csv"), "--quiet",
                 "--recommend", "--budget", "1e5", "--antithetic", "--clip", "5", "--variant", "quadrature"]) == 0
    candidates = seen["candidates"]
    assert [(c.levels, c.base) for c in candidates] == [(c.levels, c.base) for c in
                                                        recommend_module.DEFAULT_CANDIDATES]
    assert all(c.antithetic and c.clip == 5.0 and c.variant == "quadrature" for c in candidates)


NEAR_SINGULAR = """
import jax.numpy as jnp


def near(pde):  # finite at every query point; paths from x0 = -4.9999 cross x0 = -5, where it is not
    return lambda t, x: pde.exact(t, x) + 0.01 * jnp.log(x[0] + 5.0)


def far(pde):  # not finite where x0 < -100
    return lambda t, x: pde.exact(t, x) + jnp.log(x[0] + 100.0)
"""


@pytest.mark.parametrize("kind, x0, message", [
    ("near", -4.9999, "calibrate: the Monte Carlo estimate is not finite at 1 of the 6 points"),
    ("far", -101.0, "the surrogate returned non-finite values at 1 of the 6 points"),
])
def test_chunked_calibrate_reports_nonfinite_points_by_file_index(tmp_path, capsys, kind, x0, message):
    """6 points in chunks of 4 (the second padded with copies of point 5): one report over the file's points, with
    the file's index, counting no padding."""
    module = tmp_path / "singular.py"
    module.write_text(NEAR_SINGULAR)
    src = write_csv(tmp_path / "points.csv", [[0.1, 0.2, 0.2, 0.2]] * 5 + [[0.1, x0, 0.2, 0.2]])
    out = tmp_path / "o.csv"
    code = main(["calibrate", "--surrogate", f"python:{module}:{kind}", "--equation", "lcd", "--dim", "3", "--points",
                 str(src), "--out", str(out), "--levels", "1", "--base", "8", "--chunk-points", "4", "--quiet"])
    err = capsys.readouterr().err
    assert code == (0 if kind == "near" else 2), err
    assert message in err and "first: point 5" in err, err
    assert err.count("not finite") + err.count("non-finite") == 1, err
    if kind == "near":
        assert [r["finite"] for r in read_rows(out)] == ["1"] * 5 + ["0"]


@pytest.mark.parametrize("command", ["run", "train", "calibrate"])
def test_an_interrupt_says_what_it_left(checkpoint, tmp_path, capsys, monkeypatch, command):
    import scasml._calibrate
    import scasml.experiments
    import scasml.experiments._compute

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scasml.experiments, "run_experiment", interrupt)
    monkeypatch.setattr(scasml.experiments._compute, "train_surrogate", interrupt)
    monkeypatch.setattr(scasml._calibrate, "calibrate", interrupt)
    config = tmp_path / "tiny.toml"
    config.write_text(TRAIN_CONFIG)
    out = tmp_path / "out.csv"
    argv = {"run": ["run", str(config), "--out", str(tmp_path / "run")],
            "train": ["train", str(config), "-o", str(tmp_path / "m.scasml")],
            "calibrate": ["calibrate", str(checkpoint), "--points", str(write_csv(tmp_path / "p.csv", POINTS)),
                          "--out", str(out)]}[command]
    assert main([*argv, "--quiet"]) == 130
    err = capsys.readouterr().err
    expected = "run the same command again to resume" if command == "run" else "interrupted; nothing was written"
    assert expected in err, err
    if command != "run":
        assert "resume" not in err and not out.exists() and not (tmp_path / "m.scasml").exists()


def test_calibrate_compares_the_points_dimension_before_building_the_surrogate(tmp_path, capsys):
    module = tmp_path / "costly.py"
    module.write_text("def surrogate(pde):\n    raise MemoryError(f'built at d = {pde.dim}')\n")
    np.save(tmp_path / "points.npy", np.array(POINTS))
    for points in (write_csv(tmp_path / "points.csv", POINTS), tmp_path / "points.npy"):
        assert main(["calibrate", "--surrogate", f"python:{module}:surrogate", "--equation", "vb", "--dim", "50",
                     "--points", str(points), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "--dim 50, but the points in" in err and "are 3-dimensional" in err and "built at" not in err, err


@pytest.mark.parametrize("error", [MemoryError(), jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: 80 GiB")])
def test_out_of_memory_is_a_one_line_error(monkeypatch, capsys, error):
    import scasml.cli

    def exhausted(args):
        raise error

    monkeypatch.setattr(scasml.cli, "cmd_list", exhausted)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "scasml list: error: out of memory" in err and "Traceback" not in err, err


@pytest.mark.parametrize("points", ["0", "-3", "many"])
def test_quickstart_refuses_a_bad_number_of_points(capsys, points):
    from scasml.quickstart import main as quickstart

    with pytest.raises(SystemExit) as exit_info:
        quickstart(["--points", points])
    assert exit_info.value.code == 2
    assert "--points" in capsys.readouterr().err


def test_list_refuses_a_missing_configs_directory(tmp_path, capsys):
    assert main(["list", "--configs", str(tmp_path / "nonexistent")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["list", "--configs", str(tmp_path), "--keys"]) == 2
    assert "give one" in capsys.readouterr().err


def test_list_and_run_do_not_open_a_fifo(tmp_path, capsys):
    import os

    configs = tmp_path / "configs"
    configs.mkdir()
    os.mkfifo(configs / "fifo.toml")
    (configs / "tiny.toml").write_text(TRAIN_CONFIG)
    assert main(["list", "--configs", str(configs)]) == 0  # returns: the FIFO is never opened
    out = capsys.readouterr().out
    assert "fifo.toml is not a regular file" in out and "tiny" in out and "d=3" in out
    assert main(["run", str(configs / "fifo.toml")]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_the_evaluation_limit_names_the_command_line_remedy(checkpoint, tmp_path, capsys):
    src = write_csv(tmp_path / "points.csv", POINTS)
    assert main(["calibrate", str(checkpoint), "--points", str(src), "--levels", "30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lower levels or base" in err and "the scasml command and config files keep this limit" in err
    module = tmp_path / "heat.py"
    module.write_text(USER_HEAT)
    assert main(["calibrate", "--surrogate", f"python:{module}:surrogate", "--equation", f"python:{module}:heat",
                 "--dim", "3", "--points", str(src), "--estimator", "feynman-kac", "--paths", "1000000000",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lower paths" in err and "levels" not in err, err
