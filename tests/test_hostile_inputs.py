"""Hostile inputs: every bad input fails at once with an error naming the problem; nothing a user had is lost."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import threading
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml.cli import main
from scasml.experiments import ConfigError, RunDirectory, RunDirectoryError, apply_overrides, config_from_dict
from scasml.experiments._compute import check_run_memory
from scasml.surrogates import CheckpointError, read_header
from scasml.surrogates._checkpoint import MAGIC

PDE = scasml.equations.get("vb", dim=3)
T, X = np.array([0.1, 0.2], np.float32), np.zeros((2, 3), np.float32)
SMALL = scasml.MultilevelPicard(1, 4)
KEY = jax.random.key(0)


@pytest.fixture(autouse=True)
def _no_global_compile_cache(monkeypatch):
    monkeypatch.setenv("SCASML_COMPILE_CACHE", "none")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "vb3.scasml"
    scasml.save_surrogate(path, scasml.PINN(3, PDE.horizon, jax.random.key(0), width=8, depth=1), PDE)
    return path


# ---- API: cost (item 4), memory (item 5), devices (item 8) ---------------------------------------------------


@pytest.mark.parametrize("estimator, cost", [(scasml.MultilevelPicard(levels=30, base=10), "2.22e+39"),
                                             (scasml.MultilevelPicard(levels=8, base=10), "3.12e+10"),
                                             (scasml.MultilevelPicard(levels=5, base=50, variant="quadrature"), ""),
                                             (scasml.FeynmanKac(paths=10**9), "2e+09")])
@pytest.mark.parametrize("entry", ["solve", "calibrate"])
def test_estimators_beyond_any_budget_are_refused_before_tracing(estimator, cost, entry):
    start = time.perf_counter()
    pde = scasml.equations.get("heat", dim=3) if isinstance(estimator, scasml.FeynmanKac) else PDE
    call = (lambda: scasml.solve(pde, T, X, estimator, key=KEY)) if entry == "solve" else \
        (lambda: scasml.calibrate(lambda t, x: jnp.sum(x), pde, T, X, estimator, key=KEY))
    message = rf"needs {re.escape(cost)}.*function evaluations per query point.*more than the limit of 1e\+08"
    with pytest.raises(ValueError, match=message + ".*max_evaluations=math.inf"):
        call()
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("limit", [0, -1, "many", None.__class__, float("nan") * 0 - 1])
def test_bad_max_evaluations(limit):
    with pytest.raises(ValueError, match="max_evaluations must be a positive number"):
        scasml.solve(PDE, T, X, SMALL, key=KEY, max_evaluations=limit)


def test_an_explicit_lower_limit_refuses_and_an_override_reaches_the_memory_check():
    with pytest.raises(ValueError, match="more than the limit of 5"):
        scasml.solve(PDE, T, X, SMALL, key=KEY, max_evaluations=5)
    with pytest.raises(ValueError, match=r"one query point of MultilevelPicard\(levels=8\).* needs about .* GiB of "
                                         r"memory .*lower levels or base"):
        scasml.solve(PDE, T, X, scasml.MultilevelPicard(8, 10), key=KEY, max_evaluations=math.inf)


def test_points_that_cannot_fit_are_refused_with_what_to_change(monkeypatch):
    monkeypatch.setattr(scasml._calibrate, "device_memory", lambda device: 2.0**20)  # a 1 MiB device
    x = np.zeros((50_000, 3), np.float32)
    with pytest.raises(ValueError, match=r"50000 query points in d = 3 need about .* per device .*index_offset="):
        scasml.solve(PDE, 0.1, x, SMALL, key=KEY)
    with pytest.raises(ValueError, match="one query point .* needs about"):
        scasml.calibrate(lambda t, x: jnp.sum(x), PDE, T, X, scasml.MultilevelPicard(3, 10), key=KEY)


def test_a_device_named_twice_is_refused():
    d0 = jax.local_devices()[0]
    with pytest.raises(ValueError, match=r"devices lists .* more than once"):
        scasml.solve(PDE, T, X, SMALL, key=KEY, devices=[d0, d0])


def test_a_run_too_large_for_memory_is_refused_before_any_file(tmp_path):
    config = config_from_dict({"experiment": {"name": "huge"}, "equation": {"name": "vb", "dim": 3},
                               "evaluation": {"points": 10**9}, "methods": {"surrogate": {"kind": "surrogate"}}})
    with pytest.raises(ConfigError, match=r"evaluation.points: 1000000000 test points in d = 3 .* GiB .*lower "
                                          "evaluation.points"):
        check_run_memory(config)
    with pytest.raises(ConfigError, match="evaluation.points"):
        scasml.experiments.run_experiment(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    check_run_memory(config_from_dict({**config.to_dict(), "evaluation": {"points": 100}}))  # fine


# ---- API: finite flags (item 3) and interval on Estimate ------------------------------------------------


def test_calibrate_flags_an_infinite_error_bar_although_u_is_finite():
    pde = scasml.SemilinearPDE(dim=2, horizon=1.0, nonlinearity=lambda t, x, u, z: u**5,
                               terminal=lambda x: 10 + x @ x)  # no solution exists
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = scasml.calibrate(lambda t, x: 10 + x @ x, pde, 0.0, np.zeros((3, 2), np.float32),
                               scasml.MultilevelPicard(2, 10), key=KEY)
    assert np.all(np.isfinite(out.u)) and not np.any(np.isfinite(out.stderr))
    assert not np.any(out.finite)
    assert any("not finite at 3 point(s) of 3" in str(w.message) for w in caught)


def test_solve_flags_infinite_standard_errors_and_gives_its_interval():
    pde = scasml.SemilinearPDE(dim=2, horizon=1.0, nonlinearity=lambda t, x, u, z: 0.0 * u,
                               terminal=lambda x: 1e20 * x[0], linear=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = scasml.solve(pde, 0.0, np.zeros((3, 2), np.float32), scasml.FeynmanKac(paths=64), key=KEY)
    assert np.all(np.isfinite(est.u)) and np.all(np.isfinite(est.z)) and not np.any(est.finite)
    assert any("solve: the Monte Carlo estimate is not finite at 3 point(s)" in str(w.message) for w in caught)
    good = scasml.solve(PDE, T, X, SMALL, key=KEY)
    from scipy import stats

    quantile = stats.t.ppf(0.975, np.asarray(good.dof, np.float64))  # Student-t at the Satterthwaite dof
    assert np.all(quantile > 1.96)  # a small estimator: few degrees of freedom, wider than the normal interval
    np.testing.assert_allclose(good.lower, good.u - quantile * good.stderr, rtol=1e-6)
    np.testing.assert_allclose(good.upper, good.u + quantile * good.stderr, rtol=1e-6)
    assert bool(np.all(good.finite))


# ---- API: reproducibility of û (item 8) ---------------------------------------------------------------


def test_surrogate_values_do_not_depend_on_the_other_points():
    pinn = scasml.PINN(3, PDE.horizon, jax.random.key(3), width=16, depth=2)
    t, x = (np.asarray(a) for a in PDE.sample_domain(jax.random.key(1), 300))
    full = scasml._calibrate.surrogate_values(pinn, t, x)
    for lo, hi in [(0, 1), (3, 7), (255, 260), (299, 300)]:
        np.testing.assert_array_equal(scasml._calibrate.surrogate_values(pinn, t[lo:hi], x[lo:hi]), full[lo:hi])
    one = scasml.calibrate(pinn, PDE, t[5], x[5], SMALL, key=KEY, index_offset=5)
    four = scasml.calibrate(pinn, PDE, t[3:7], x[3:7], SMALL, key=KEY, index_offset=3)
    assert one.surrogate == four.surrogate[2] and one.u == four.u[2]


# ---- checkpoints (items 6 and 8) ----------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path):
    """A FIFO; a writer thread opens it after 3 s (so that a reader that blocks gets EOF rather than hanging)."""
    path = tmp_path / "model.scasml"
    os.mkfifo(path)
    stop = threading.Event()

    def writer():
        if not stop.wait(3.0):
            os.close(os.open(path, os.O_WRONLY))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield path
    stop.set()


def test_a_fifo_checkpoint_is_refused_at_once(fifo, capsys):
    start = time.perf_counter()
    for call in (lambda: scasml.load_surrogate(fifo, PDE), lambda: read_header(fifo)):
        with pytest.raises(CheckpointError, match=rf"{fifo}.* is not a regular file \(a FIFO\)"):
            call()
    assert main(["calibrate", str(fifo), "--points", str(fifo)]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert time.perf_counter() - start < 2.5


def _parts(path):
    data = path.read_bytes()
    o = len(MAGIC)
    (n,) = struct.unpack("<Q", data[o:o + 8])
    return json.loads(data[o + 8:o + 8 + n]), data[o + 8 + n:]


def _write(path, header, payload, magic=MAGIC):
    raw = json.dumps(header).encode()
    path.write_bytes(magic + struct.pack("<Q", len(raw)) + raw + payload)
    return path


def _edit(field, value):
    def apply(header, payload):
        header = dict(header)
        header[field] = value
        return header, payload
    return apply


def _wider(header, payload):  # architecture and shapes edited consistently, payload unchanged
    header = json.loads(json.dumps(header))
    header["architecture"]["width"] = 16
    for leaf in header["leaves"]:
        leaf["shape"] = [16 if v == 8 else v for v in leaf["shape"]]
    return header, payload


CORRUPTIONS = [
    ("bad magic", lambda p, h, b: p.write_bytes(b"\x80\x04pickle" + b"\0" * 40), "not a scasml checkpoint"),
    ("empty", lambda p, h, b: p.write_bytes(b""), "not a scasml checkpoint"),
    ("no length", lambda p, h, b: p.write_bytes(MAGIC + b"\1"), "header length is missing"),
    ("huge header", lambda p, h, b: p.write_bytes(MAGIC + struct.pack("<Q", 2**40)), "header of 1099511627776"),
    ("cut header", lambda p, h, b: p.write_bytes(MAGIC + struct.pack("<Q", 500) + b"{}"), "truncated or corrupt"),
    ("not json", lambda p, h, b: p.write_bytes(MAGIC + struct.pack("<Q", 3) + b"{x}"), "corrupt header"),
    ("not object", lambda p, h, b: p.write_bytes(MAGIC + struct.pack("<Q", 2) + b"[]"), "not a JSON object"),
    ("no version", lambda p, h, b: _write(p, *_edit("format_version", None)(h, b)), "no format_version"),
    ("newer", lambda p, h, b: _write(p, *_edit("format_version", 99)(h, b)), "format version 99, newer"),
    ("short payload", lambda p, h, b: _write(p, h, b[:-4]), "expected 196 bytes of parameters, found 192"),
    ("checksum", lambda p, h, b: _write(p, h, b[:-4] + b"\0\0\0\1"), "checksum mismatch"),
    ("arch", lambda p, h, b: _write(p, *_edit("architecture", "pinn")(h, b)), "architecture must be a table"),
    ("pde", lambda p, h, b: _write(p, *_edit("pde", [1])(h, b)), "pde must be a table or null"),
    ("dtype", lambda p, h, b: _write(p, *_edit("dtype", "int8")(h, b)), "dtype must be 'float32' or 'float64'"),
    ("leaves", lambda p, h, b: _write(p, *_edit("leaves", {})(h, b)), "leaves must be a list"),
    ("leaf", lambda p, h, b: _write(p, *_edit("leaves", [{"shape": [-1], "dtype": "float32"}])(h, b)),
     r"leaves\[0\] must give a shape"),
    ("kind", lambda p, h, b: _write(p, *_edit("architecture", {"kind": "tree"})(h, b)), "unknown surrogate kind"),
    ("unbuildable", lambda p, h, b: _write(p, *_edit("architecture", {"kind": "pinn"})(h, b)), "cannot be built"),
    ("leaf count", lambda p, h, b: _write(p, *_edit("leaves", h["leaves"][:3])(h, b)),
     "3 parameter arrays stored, the architecture has 4"),
    ("sizes vs payload", lambda p, h, b: _write(p, *_wider(h, b)), "header describes 388 bytes of parameters, the "
                                                                  "file holds 196"),
]


@pytest.mark.parametrize("name, damage, message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_damaged_checkpoints_name_the_file_and_the_problem(checkpoint, tmp_path, name, damage, message):
    header, payload = _parts(checkpoint)
    path = tmp_path / "damaged.scasml"
    damage(path, header, payload)
    with pytest.raises(CheckpointError, match=message) as err:
        scasml.load_surrogate(path, PDE)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("target, message", [("dir", "is a directory"), ("/dev/null", "a character device"),
                                             ("missing", "no checkpoint at")])
def test_checkpoints_that_are_not_files(tmp_path, target, message):
    path = {"dir": tmp_path, "missing": tmp_path / "nope.scasml"}.get(target, target)
    with pytest.raises(CheckpointError, match=message):
        read_header(path)


def test_a_checkpoint_for_another_pde_is_refused(checkpoint):
    with pytest.raises(CheckpointError, match=r"was trained for .* which does not match"):
        scasml.load_surrogate(checkpoint, scasml.equations.get("vb", dim=4))


def test_a_fifo_in_a_config_is_a_config_error(fifo):
    raw = {"experiment": {"name": "f"}, "equation": {"name": "vb", "dim": 3},
           "surrogate": {"checkpoint": str(fifo)}, "methods": {"surrogate": {"kind": "surrogate"}}}
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"surrogate.checkpoint: .* is not a regular file \(a FIFO\)"):
        config_from_dict(raw)
    assert time.perf_counter() - start < 2.5


# ---- run directories (items 1, 2, 8) --------------------------------------------------------------------

TINY = {"experiment": {"name": "tiny"}, "equation": {"name": "vb", "dim": 3}, "surrogate": {"width": 8, "depth": 1},
        "evaluation": {"points": 8, "chunks": 2}, "methods": {"surrogate": {"kind": "surrogate"}}}


@pytest.fixture
def config():
    return config_from_dict(TINY)


@pytest.fixture
def other(config):
    return config_from_dict(apply_overrides(config.to_dict(), ["evaluation.seed=1"]))


@pytest.mark.parametrize("name", ["config.toml", "config.json", "notes.txt", ".lock.bak", "stages"])
def test_a_users_folder_is_never_taken_over(tmp_path, config, name):
    (tmp_path / name).write_text("mine")
    for force in (False, True):
        with pytest.raises(RunDirectoryError, match="is not empty and is not a scasml run directory"):
            RunDirectory.prepare(tmp_path, config, force=force)
    assert (tmp_path / name).read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_force_against_a_live_run_deletes_nothing(tmp_path, config, other):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    (run.path / "stages").mkdir()
    (run.path / "stages" / "train.json").write_text("{}")
    before = sorted(p.relative_to(run.path) for p in run.path.rglob("*"))
    with run.lock():  # the live run
        with pytest.raises(RunDirectoryError, match="in use by another scasml process.*--force included"):
            RunDirectory.prepare(run.path, other, force=True)
    assert sorted(p.relative_to(run.path) for p in run.path.rglob("*")) == before
    assert json.loads((run.path / "scasml-run.json").read_text())["config_sha256"] == config.fingerprint()


def test_force_deletes_only_a_run_and_refuses_a_run_with_user_files(tmp_path, config, other):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    (run.path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match=r"also files scasml did not write \(notes.txt\)"):
        RunDirectory.prepare(run.path, other, force=True)
    assert (run.path / "notes.txt").read_text() == "mine"
    (run.path / "notes.txt").unlink()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (run.path / "results").symlink_to(outside)
    (run.path / "stages").mkdir()
    _, resumed = RunDirectory.prepare(run.path, other, force=True)
    assert not resumed and not (run.path / "stages").exists() and not (run.path / "results").exists()
    assert (outside / "keep.txt").read_text() == "mine"  # a link is removed, never followed
    assert json.loads((run.path / "scasml-run.json").read_text())["config_sha256"] == other.fingerprint()


@pytest.mark.parametrize("mine", ["results/my_analysis.ipynb", "figures/paper_fig.pdf", "stages/notes.txt",
                                  "raw/eval/mine.csv", "sweep/other.scasml", "report.md/draft.txt"])
def test_force_refuses_user_files_at_any_depth(tmp_path, config, other, mine):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    written = ["stages/eval/rep-0/a/chunk-000.json", "raw/eval/rep-0/a/chunk-000.npz", "results/points.csv",
               "results/sweeps.csv", "figures/band.pdf", "figures/training.png", "sweep/surrogate-50-steps.scasml"]
    for name in [*written, mine]:
        (run.path / name).parent.mkdir(parents=True, exist_ok=True)
        (run.path / name).write_text("x")
    shown = mine.split("/")[0] if mine.startswith("report.md") else mine  # a folder in a run file's place
    with pytest.raises(RunDirectoryError, match=rf"also files scasml did not write \({re.escape(shown)}\)"):
        RunDirectory.prepare(run.path, other, force=True)
    assert all((run.path / name).read_text() == "x" for name in [*written, mine])
    (run.path / mine).unlink()
    if shown != mine:
        (run.path / shown).rmdir()
    _, resumed = RunDirectory.prepare(run.path, other, force=True)  # only what a run writes: emptied
    assert not resumed and not any((run.path / name).exists() for name in written)


def test_force_keeps_an_input_of_the_new_configuration(tmp_path, config):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    (run.path / "checkpoint.scasml").write_bytes(b"trained")
    checkpoint = f"surrogate.checkpoint={run.path / 'checkpoint.scasml'}"
    reuse = config_from_dict(apply_overrides(config.to_dict(), [checkpoint]), check_files=False)
    with pytest.raises(RunDirectoryError, match="holds this configuration's input .*checkpoint.scasml"):
        RunDirectory.prepare(run.path, reuse, force=True)
    assert (run.path / "checkpoint.scasml").read_bytes() == b"trained"


def test_force_resumes_a_run_of_the_same_configuration(tmp_path, config):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    run.finish("points/rep-0", {"seconds": 1.0})
    _, resumed = RunDirectory.prepare(run.path, config, force=True)
    assert resumed and run.stage_info("points/rep-0") is not None


def test_losing_the_race_for_a_new_folder_leaves_the_winners_lock(tmp_path, config, monkeypatch):
    path = tmp_path / "run"
    winner = []
    real_mkdir = type(path).mkdir

    def mkdir_then_lose(self, *args, **kwargs):  # another process creates the folder and locks it first
        real_mkdir(self, *args, **kwargs)
        if self == path and not winner:
            winner.append(RunDirectory(path).lock())
            winner[0].__enter__()

    monkeypatch.setattr(type(path), "mkdir", mkdir_then_lose)
    with pytest.raises(RunDirectoryError, match="in use by another scasml process"):
        RunDirectory.prepare(path, config)
    assert (path / ".lock").is_file()  # the winner's lock file is not unlinked under it
    with pytest.raises(RunDirectoryError, match="in use"):  # and it still excludes everyone else
        with RunDirectory(path).lock():
            pass
    winner[0].__exit__(None, None, None)


def test_a_write_that_must_not_overwrite_keeps_a_file_made_meanwhile(tmp_path):
    from scasml._io import atomic_write_bytes

    path = tmp_path / "out.csv"
    atomic_write_bytes(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    atomic_write_bytes(path, b"third")
    assert path.read_bytes() == b"third"


def test_calibrate_never_writes_over_its_own_points(checkpoint, tmp_path, capsys):
    points = tmp_path / "points.csv"
    points.write_text("t,x0,x1,x2\n0.1,0.123456789012345678,0.2,0.3\n")
    before = points.read_text()
    for out in (points, tmp_path / "." / "points.csv"):
        for force in ([], ["--force"]):
            assert main(["calibrate", str(checkpoint), "--points", str(points), "--out", str(out), "--levels", "1",
                         "--base", "4", "--quiet", *force]) == 2
            assert "is the points file itself" in capsys.readouterr().err
    assert points.read_text() == before


def test_a_checkpoint_that_load_would_refuse_is_not_written(tmp_path):
    pinn = scasml.PINN(3, PDE.horizon, jax.random.key(0), width=8, depth=1)
    arrays, static = eqx.partition(pinn, eqx.is_array)
    mixed = eqx.combine(jax.tree.map(lambda a: np.asarray(a, np.float64) if a.ndim == 1 else a, arrays), static)
    with pytest.raises(TypeError, match="must all be float32 or all float64, got float32, float64"):
        scasml.save_surrogate(tmp_path / "mixed.scasml", mixed, PDE)
    counted = eqx.combine(jax.tree.map(lambda a: np.asarray(a, np.int32) if a.ndim == 1 else a, arrays), static)
    with pytest.raises(TypeError, match="got float32, int32"):
        scasml.save_surrogate(tmp_path / "ints.scasml", counted, PDE)
    assert not list(tmp_path.iterdir())


def test_continue_is_refused_while_another_process_trains_the_checkpoint(tmp_path, capsys):
    from scasml._io import transient_lock

    config = tmp_path / "tiny.toml"
    config.write_text('[experiment]\nname = "tiny"\n[equation]\nname = "vb"\ndim = 3\n[surrogate]\nwidth = 8\n'
                      'depth = 1\n[training]\nsteps = 2\nlog_every = 1\ncollocation = 16\nterminal_points = 8\n'
                      '[methods.surrogate]\nkind = "surrogate"\n')
    ckpt = tmp_path / "model.scasml"
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    before = ckpt.read_bytes()
    refused = lambda: RuntimeError("held")
    with transient_lock(tmp_path / "model.scasml.lock", refused, refused):  # another process trains it further
        assert main(["train", str(config), "-o", str(ckpt), "--continue", "--quiet"]) == 2
    assert "being trained by another scasml process" in capsys.readouterr().err and ckpt.read_bytes() == before
    assert main(["train", str(config), "-o", str(ckpt), "--continue", "--quiet"]) == 0
    assert read_header(ckpt)["training"]["total_steps"] == 4


TINY_TRAINING = ('[experiment]\nname = "tiny"\n[equation]\nname = "vb"\ndim = 3\n[surrogate]\nwidth = 8\ndepth = 1\n'
                 '[training]\nsteps = 2\nlog_every = 1\ncollocation = 16\nterminal_points = 8\n'
                 '[methods.surrogate]\nkind = "surrogate"\n')


def test_a_second_training_to_the_same_output_is_refused_at_once(tmp_path, capsys):
    from scasml._io import transient_lock

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TRAINING)
    ckpt, lock = tmp_path / "model.scasml", tmp_path / "model.scasml.lock"
    refused = lambda: RuntimeError("held")
    with transient_lock(lock, refused, refused):  # another process trains for this output
        assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.scasml.lock", "tiny.toml"]  # nothing touched
    assert "model.scasml is being trained by another scasml process" in capsys.readouterr().err
    assert not lock.exists()
    assert main(["train", str(config), "-o", str(ckpt), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.scasml", "tiny.toml"]  # the lock is gone with it


def test_the_training_lock_file_of_a_killed_process_is_taken_over_and_another_file_kept(tmp_path, capsys):
    from scasml._io import LOCK_MARK

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TRAINING)
    (tmp_path / "a.scasml.lock").write_bytes(LOCK_MARK)  # left by a killed training: nobody holds it
    assert main(["train", str(config), "-o", str(tmp_path / "a.scasml"), "--quiet"]) == 0
    assert not (tmp_path / "a.scasml.lock").exists()
    (tmp_path / "b.scasml.lock").write_text("my notes")  # a user's file of that name is locked, never removed
    assert main(["train", str(config), "-o", str(tmp_path / "b.scasml"), "--quiet"]) == 0
    assert (tmp_path / "b.scasml.lock").read_text() == "my notes"
    os.symlink(tmp_path / "elsewhere", tmp_path / "c.scasml.lock")  # a link is not followed
    assert main(["train", str(config), "-o", str(tmp_path / "c.scasml"), "--quiet"]) == 2
    assert "cannot lock" in capsys.readouterr().err
    assert not (tmp_path / "c.scasml").exists() and not (tmp_path / "elsewhere").exists()
    os.mkfifo(tmp_path / "d.scasml.lock")  # opening a FIFO must not block
    assert main(["train", str(config), "-o", str(tmp_path / "d.scasml"), "--quiet"]) == 2
    assert "not a regular file" in capsys.readouterr().err and not (tmp_path / "d.scasml").exists()


def test_a_refused_folder_is_left_untouched(tmp_path, config):
    (tmp_path / "config.toml").write_text("mine")
    with pytest.raises(RunDirectoryError):
        RunDirectory.prepare(tmp_path, config)
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("damage, message", [("corrupt", "is corrupt"), ("dir", "not a scasml run directory"),
                                             ("file", "exists and is not a directory")])
def test_damaged_run_folders(tmp_path, config, damage, message):
    path = tmp_path / "run"
    if damage == "file":
        path.write_text("mine")
    else:
        path.mkdir()
        if damage == "corrupt":
            (path / "scasml-run.json").write_text('{"experiment": 1}')
        else:
            (path / "scasml-run.json").mkdir()
    with pytest.raises(RunDirectoryError, match=message):
        RunDirectory.prepare(path, config)


def test_resume_removes_stale_temporary_files_and_rewrites_a_lost_config(tmp_path, config):
    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    stale = [run.path / ".metrics.json.abcd_123.tmp", run.file("raw", "eval", ".chunk-000.npz.zz99aa11.tmp")]
    for path in stale:
        path.write_text("partial")
    (run.path / "notes.tmp").write_text("mine")
    (run.path / "config.json").unlink()
    _, resumed = RunDirectory.prepare(run.path, config)
    assert resumed and not any(p.exists() for p in stale) and (run.path / "notes.tmp").read_text() == "mine"
    assert json.loads((run.path / "config.json").read_text()) == json.loads(config.to_json())


def test_cli_refuses_user_folders_and_locked_runs(tmp_path, config, capsys):
    (tmp_path / "cfg.toml").write_text(config.to_toml())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.toml").write_text("my notes")
    assert main(["run", str(tmp_path / "cfg.toml"), "--out", str(mine), "--quiet"]) == 2
    assert "is not a scasml run directory" in capsys.readouterr().err
    assert (mine / "config.toml").read_text() == "my notes"
    run, _ = RunDirectory.prepare(tmp_path / "live", config)
    with run.lock():
        for extra in ([], ["--force", "--set", "evaluation.seed=3"]):
            assert main(["run", str(tmp_path / "cfg.toml"), "--out", str(run.path), "--quiet", *extra]) == 2
            assert "in use by another scasml process" in capsys.readouterr().err
        assert main(["report", str(run.path)]) == 2
        assert "in use by another scasml process" in capsys.readouterr().err
    assert json.loads((run.path / "scasml-run.json").read_text())["config_sha256"] == config.fingerprint()


def test_cli_refuses_huge_runs_and_costs_before_any_work(tmp_path, checkpoint, capsys):
    assert main(["run", "quickstart", "--out", str(tmp_path / "huge"), "--set", "evaluation.points=1000000000"]) == 2
    assert "evaluation.points: 1000000000 test points" in capsys.readouterr().err
    assert not (tmp_path / "huge").exists()
    points = tmp_path / "p.csv"
    points.write_text("t,x0,x1,x2\n0.1,0,0,0\n")
    start = time.perf_counter()
    assert main(["calibrate", str(checkpoint), "--points", str(points), "--levels", "30"]) == 2
    assert "function evaluations per query point" in capsys.readouterr().err
    assert time.perf_counter() - start < 5 and not (tmp_path / "p.calibrated.csv").exists()
    assert main(["calibrate", str(checkpoint), "--points", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ---- the runner's noise does not depend on the chunking (item 7) -----------------------------------------


def test_run_results_do_not_depend_on_evaluation_chunks(tmp_path, checkpoint):
    from scasml.experiments import run_experiment
    from scasml.experiments._compute import method_key

    raw = {"experiment": {"name": "chunks"}, "equation": {"name": "vb", "dim": 3},
           "surrogate": {"width": 8, "depth": 1, "checkpoint": str(checkpoint)},
           "evaluation": {"points": 8, "chunks": 2},
           "methods": {"mlp": {"kind": "mlp", "levels": 1, "base": 4},
                       "scasml": {"kind": "scasml", "levels": 1, "base": 4}}}
    runs = {}
    for chunks in (2, 3):
        config = config_from_dict({**raw, "evaluation": {"points": 8, "chunks": chunks}})
        run_experiment(config, tmp_path / f"c{chunks}", progress=False)
        runs[chunks] = np.load(tmp_path / f"c{chunks}" / "results" / "points.npz", allow_pickle=False)
    for name in ("mlp_prediction", "scasml_prediction", "scasml_stderr"):
        np.testing.assert_array_equal(runs[2][name], runs[3][name])
    # and they are those of one library call on all the points with the method key (to float32 rounding: a
    # program whose chunk loop runs once is compiled differently from one whose loop runs twice)
    points = runs[2]
    pinn = scasml.load_surrogate(checkpoint, PDE)
    key = method_key(config, 0, "scasml")
    direct = scasml.calibrate(pinn, PDE, points["t"][0], points["x"][0], scasml.MultilevelPicard(1, 4), key=key)
    np.testing.assert_allclose(points["scasml_prediction"][0], direct.u, rtol=2e-7, atol=0)


def test_a_lock_held_by_another_process_is_respected_and_released_by_kill_9(tmp_path, config, other):
    import signal
    import subprocess
    import sys

    run, _ = RunDirectory.prepare(tmp_path / "run", config)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fh = open(sys.argv[1], 'a'); "
                               "fcntl.flock(fh, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(run.path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryError, match="in use by another scasml process"):
            RunDirectory.prepare(run.path, other, force=True)
        assert json.loads((run.path / "scasml-run.json").read_text())["config_sha256"] == config.fingerprint()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    _, resumed = RunDirectory.prepare(run.path, other, force=True)  # the killed holder's lock is gone
    assert not resumed
    assert json.loads((run.path / "scasml-run.json").read_text())["config_sha256"] == other.fingerprint()


API_REFUSALS = [
    ({"t": np.array([0.1, 0.6], np.float32)}, ValueError, r"t must lie in \[0, T\]"),
    ({"t": np.array([-1e-3, 0.1], np.float32)}, ValueError, r"t must lie in \[0, T\]"),
    ({"t": np.array([np.nan, 0.1], np.float32)}, ValueError, "t has 1 non-finite entries"),
    ({"t": np.zeros(3, np.float32)}, ValueError, r"t must be a scalar or have shape \(2,\)"),
    ({"x": np.full((2, 3), np.inf, np.float32)}, ValueError, "x has 6 non-finite entries"),
    ({"x": np.zeros((2, 4), np.float32)}, ValueError, r"x must have shape \(N, 3\)"),
    ({"x": np.zeros((0, 3), np.float32)}, ValueError, "no query points"),
    ({"x": np.array([["a"] * 3] * 2)}, TypeError, "x must hold real numbers"),
    ({"key": None}, ValueError, "a PRNG key is required"),
    ({"key": np.zeros(3)}, TypeError, "key must be a jax.random key"),
    ({"key": jax.random.split(KEY, 2)}, TypeError, "key must be a jax.random key"),
    ({"estimator": "picard"}, TypeError, "estimator must be an AbstractEstimator"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be a positive integer"),
    ({"chunk_size": True}, ValueError, "chunk_size must be a positive integer"),
    ({"memory_budget": -1.0}, ValueError, "memory_budget must be a positive number"),
    ({"memory_budget": float("inf")}, ValueError, "memory_budget must be a positive number"),
    ({"index_offset": -1}, ValueError, "index_offset must be a non-negative integer"),
    ({"index_offset": 2**32}, ValueError, r"at most 2\*\*32"),
    ({"devices": []}, ValueError, "devices must name at least one device"),
    ({"devices": ["cpu:0"]}, TypeError, "devices must be a list of jax devices"),
]


@pytest.mark.parametrize("change, error, message", API_REFUSALS, ids=[str(i) for i in range(len(API_REFUSALS))])
def test_bad_api_arguments_are_refused_before_any_work(change, error, message):
    args = {"t": T, "x": X, "estimator": SMALL, "key": KEY, **change}
    with pytest.raises(error, match=message):
        scasml.solve(PDE, args.pop("t"), args.pop("x"), args.pop("estimator"), **args)


def test_numpy_integers_are_sizes_and_everything_else_is_refused_consistently():
    """np.int64(1) is a positive integer (it was refused with 'must be a positive integer, got np.int64(1)'); it is
    stored as a Python int, so the estimator hashes and compares like one built from ints."""
    mlp = scasml.MultilevelPicard(levels=np.int64(1), base=np.int32(4))
    assert mlp == scasml.MultilevelPicard(levels=1, base=4) and type(mlp.levels) is int
    assert scasml.FeynmanKac(paths=np.int64(8), time_samples=np.int16(2)).paths == 8
    assert scasml.HutchinsonTrace(np.int64(3)).probes == 3
    assert scasml.GeometricBrownianMotion(np.int64(4)).dim == 4
    for bad in (np.float64(2.0), True, np.int64(0), -1):
        with pytest.raises(ValueError, match=r"levels must be a positive integer, got "):
            scasml.MultilevelPicard(levels=bad, base=4)
