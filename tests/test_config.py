"""Experiment config validation: every bad config is rejected before any work, naming the offending key."""

from __future__ import annotations

import copy
import dataclasses
import tomllib

import pytest

import scasml
from scasml.experiments import ConfigError, apply_overrides, config_from_dict, load_config, resolve_config_path
from scasml.experiments._config import config_dirs, shipped_config_dir

CONFIGS = shipped_config_dir()  # scasml/configs (the checkout's configs/ links to it)

BASE = {
    "experiment": {"name": "tiny"},
    "equation": {"name": "vb", "dim": 4},
    "surrogate": {"width": 8, "depth": 1},
    "training": {"steps": 10, "collocation": 16},
    "evaluation": {"points": 10, "chunks": 2},
    "methods": {
        "surrogate": {"kind": "surrogate"},
        "mlp": {"kind": "mlp", "levels": 1, "base": 4, "clip": 10.0},
        "scasml": {"kind": "scasml", "levels": 1, "base": 4},
    },
}


def mutate(path: str, value):
    """BASE with the dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


class _Delete:
    def __repr__(self):  # a stable test id (pytest-xdist workers must collect the same names)
        return "DELETE"


DELETE = _Delete()

BAD = [
    ("trainig", {"steps": 1}, r"^trainig: unknown key \(did you mean 'training'\?\)"),
    ("training.stepz", 10, r"^training\.stepz: unknown key \(did you mean 'steps'\?\)"),
    ("training.steps", "many", r"^training\.steps: expected an integer, got a string \('many'\)"),
    ("training.steps", 0, r"^training\.steps: must be ≥ 1; got 0"),
    ("training.learning_rate", -1e-3, r"^training\.learning_rate: must be > 0"),
    ("training.final_learning_rate", 0.5, r"^training\.final_learning_rate: 0\.5 exceeds learning_rate"),
    ("training", 5, r"^training: expected a table, got an integer \(5\)"),
    ("evaluation.points", True, r"^evaluation\.points: expected an integer, got a boolean"),
    ("evaluation.chunks", 50, r"^evaluation\.chunks: 50 chunks for only 10 points"),
    ("surrogate.width", 2.5, r"^surrogate\.width: expected an integer, got a float"),
    ("surrogate.activation", "relu", r"^surrogate\.activation: must be one of 'tanh', 'softplus', 'sin', 'gelu'"),
    ("surrogate.checkpoint", "/nonexistent/model.scasml", r"^surrogate\.checkpoint: no checkpoint at"),
    ("equation.name", "navier_stokes", r"^equation\.name: unknown equation 'navier_stokes'; available: bsb, bsdr"),
    ("equation.dim", DELETE, r"^equation\.dim: required key is missing"),
    ("equation.dim", 0, r"^equation\.dim: must be ≥ 1; got 0"),
    ("equation.parameters", {"viscosity": 1.0}, r"^equation\.parameters: cannot build 'vb' in 4 d"),
    ("equation", DELETE, r"^equation: required section \[equation\] is missing"),
    ("methods", {}, r"^methods: at least one method is required"),
    ("methods.bad-name", {"kind": "surrogate"}, r"^methods\.bad-name: method names must start with a letter"),
    ("methods.extra", {"kind": "magic"}, r"^methods\.extra\.kind: must be one of 'surrogate', 'mlp', 'scasml'"),
    ("methods.extra", {"levels": 2}, r"^methods\.extra\.kind: required key is missing"),
    ("methods.scasml.base", 1, r"^methods\.scasml\.base: must be ≥ 2; got 1"),
    ("surrogate.input_scale", 0.0, r"^surrogate\.input_scale: must be > 0"),
    ("surrogate.terminal_smoothing", 2.0, r"^surrogate\.terminal_smoothing: smooths the built-in terminal condition"),
    ("evaluation.at", "reference", r"^evaluation\.at: 'vb' in 4 d with these parameters has no recorded reference"),
    ("evaluation.at", "x0", r"^evaluation\.at: must be one of 'domain', 'reference'"),
    ("methods.scasml.clip", -1.0, r"^methods\.scasml\.clip: must be > 0; got -1\.0"),
    ("methods.scasml.clip", "off", r"^methods\.scasml\.clip: expected a number, got a string \('off'\)"),
    ("methods.scasml.variant", "fancy", r"^methods\.scasml\.variant: must be one of 'full_history', 'quadrature'"),
    ("methods.scasml.paths", 100, r"^methods\.scasml\.paths: not used here; allowed: kind, estimator, levels"),
    ("methods.surrogate.levels", 2, r"^methods\.surrogate\.levels: not used here; allowed: kind"),
    ("methods.scasml.levles", 2, r"^methods\.scasml\.levles: unknown key \(did you mean 'levels'\?\)"),
    ("methods.fk", {"kind": "mlp", "estimator": "feynman_kac"}, r"^methods\.fk\.estimator: feynman_kac needs a linear"),
    ("methods.huge", {"kind": "mlp", "levels": 8, "base": 16}, r"^methods\.huge: .* function evaluations per point"),
    ("experiment.name", "my run", r"^experiment\.name: must start with a letter"),
    ("sweep.base", [10, 1], r"^sweep\.base: entry 1 \(1\) must be ≥ 2"),
    ("sweep.base", [4, 4], r"^sweep\.base: duplicate entries in \[4, 4\]"),
    ("sweep.base", 10, r"^sweep\.base: expected an array, got an integer"),
    ("sweep.methods", ["nope"], r"^sweep\.methods\[0\]: no method named 'nope'"),
    ("sweep.points", 500, r"^sweep\.points: 500 exceeds evaluation\.points = 10"),
    ("surrogate.kind", "magic", r"^surrogate\.kind: must be 'pinn', 'gp', 'python:module:function' or"),
    ("surrogate.kind", 5, r"^surrogate\.kind: expected a string, got an integer"),
    ("surrogate.kind", "python:mymodule", r"^surrogate\.kind: a user surrogate is written 'python:module:function'"),
    ("surrogate.kind", "python:my-module:f", r"^surrogate\.kind: 'my-module' is neither a dotted module name nor"),
    ("training.points", 100, r"^training\.points: not used with surrogate\.kind = 'pinn'; allowed: steps,"),
    ("surrogate.kernel", "matern52", r"^surrogate\.kernel: not used with surrogate\.kind = 'pinn'"),
    ("methods.scasml", {"kind": "scasml", "levels": 1, "base": 2, "variant": "quadrature"},
     r"^methods\.scasml: the quadrature variant needs base ≥ 3"),
    ("methods.mlp.shrinkage", "sure", r"^methods\.mlp\.shrinkage: only scasml methods shrink"),
    ("methods.scasml.shrinkage", "james-stein", r"^methods\.scasml\.shrinkage: must be one of 'none', 'sure'"),
    ("methods.scasml.budget", 1.0, r"^methods\.scasml\.budget: 1 evaluations per point is below the pilot's cost"),
    ("methods.scasml.target_stderr", -1e-3, r"^methods\.scasml\.target_stderr: "),
    ("methods.scasml.max_replicas", 0, r"^methods\.scasml\.max_replicas: "),
    ("methods.scasml", {"kind": "scasml", "budget": 1e6, "target_stderr": 1e-3},
     r"^methods\.scasml\.budget: give either a budget or a target"),
    ("methods.surrogate.target_stderr", 1e-3, r"^methods\.surrogate\.target_stderr: "),
    ("training.learning_rate", float("inf"), r"^training\.learning_rate: expected a finite number, got inf"),
    ("training.terminal_weight", float("nan"), r"^training\.terminal_weight: expected a finite number, got nan"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_config_is_rejected_with_key_in_message(path, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(mutate(path, value))


def test_sweep_of_non_picard_method_is_rejected():
    raw = mutate("sweep", {"base": [4, 6], "methods": ["surrogate"]})
    with pytest.raises(ConfigError, match=r"^sweep\.base: the base/levels sweep needs at least one multilevel Picard"):
        config_from_dict(raw)


def test_base_config_is_valid_and_defaults_are_filled():
    config = config_from_dict(copy.deepcopy(BASE))
    assert config.training.learning_rate == 7e-4
    assert config.evaluation.repetitions == 1
    assert [m.name for m in config.methods] == ["surrogate", "mlp", "scasml"]
    assert config.method("mlp").options.clip == 10.0
    assert config.method("scasml").options.clip is None
    assert config.method("scasml").estimator().levels == 1
    assert config.method("surrogate").estimator() is None


def test_adaptive_method_keys_build_the_allocation_and_stay_out_of_plain_configs():
    config = config_from_dict(mutate("methods.scasml", {"kind": "scasml", "target_stderr": 1e-3, "max_replicas": 8}))
    method = config.method("scasml")
    assert method.allocation(100) == scasml.TargetStderr(absolute=1e-3, max_replicas=8)
    assert "target stderr ≤ 0.001 (≤ 8 replicas)" in method.label()
    assert config.method("mlp").allocation(100) is None
    assert "target_stderr" not in config_from_dict(copy.deepcopy(BASE)).to_dict()["methods"]["scasml"]
    budget = config_from_dict(mutate("methods.mlp", {"kind": "mlp", "budget": 5e4})).method("mlp")
    assert budget.allocation(10) == scasml.Budget(evaluations=5e5)


def test_variance_reduction_keys_build_the_estimator_and_stay_out_of_plain_configs():
    config = config_from_dict(mutate("methods.scasml", {"kind": "scasml", "antithetic": True, "terminal_factor": 4,
                                                        "min_top_samples": 20, "qmc_sets": 8, "qmc_points": 32,
                                                        "inner_base": 5, "next_correction": 2}))
    method = config.method("scasml")
    assert method.estimator() == scasml.MultilevelPicard(2, 10, antithetic=True, terminal_factor=4, min_top_samples=20,
                                                         qmc_sets=8, qmc_points=32, inner_base=5, next_correction=2)
    assert ("antithetic, 4x terminal paths, top blocks ≥ 20, QMC terminal paths (8 nets of ≥ 32 points), nested M=5, "
            "next correction (2 bridge points)" in method.label())
    assert method.to_dict()["antithetic"] is True
    plain = config_from_dict(copy.deepcopy(BASE)).to_dict()["methods"]["scasml"]
    assert not {"antithetic", "terminal_factor", "min_top_samples", "qmc_sets", "qmc_points", "inner_base",
                "next_correction"} & set(plain)
    with pytest.raises(ConfigError, match=r"^methods\.scasml\.next_correction: must be 0 \(off\) or a positive"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "next_correction": -1}))
    with pytest.raises(ConfigError, match=r"^methods\.scasml: MultilevelPicard next_correction needs"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "levels": 1, "next_correction": 2}))
    with pytest.raises(ConfigError, match=r"^methods\.mlp\.next_correction: it linearises the generator at the"):
        config_from_dict(mutate("methods.mlp", {"kind": "mlp", "next_correction": 2}))
    with pytest.raises(ConfigError, match=r"^methods\.scasml\.qmc_sets: must be 0 \(off\) or ≥ 2"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "qmc_sets": 1}))
    with pytest.raises(ConfigError, match=r"^methods\.scasml\.qmc_points: must be a power of two"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "qmc_sets": 8, "qmc_points": 48}))
    with pytest.raises(ConfigError, match=r"^methods\.scasml: MultilevelPicard qmc_points applies to quasi-Monte"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "qmc_points": 32}))
    with pytest.raises(ConfigError, match=r"^methods\.scasml\.inner_base: must be ≥ 2"):
        config_from_dict(mutate("methods.scasml", {"kind": "scasml", "inner_base": 1}))


def test_integral_float_is_accepted_for_integer_keys():
    config = config_from_dict(mutate("training.steps", 1e4))
    assert config.training.steps == 10_000 and isinstance(config.training.steps, int)


def test_resolved_config_round_trips_through_toml():
    config = config_from_dict(mutate("sweep", {"base": [4, 6], "methods": ["scasml"]}))
    again = config_from_dict(tomllib.loads(config.to_toml()))
    assert again == config
    assert again.fingerprint() == config.fingerprint()


def test_overrides_parse_toml_values_and_strings():
    raw = apply_overrides(BASE, ["training.steps=500", "methods.scasml.clip=none", "equation.name=lcd",
                                 "sweep.base=[4, 6]", "methods.scasml.clip=0.5"])
    config = config_from_dict(raw)
    assert config.training.steps == 500
    assert config.equation.name == "lcd"
    assert config.sweep.base == (4, 6)
    assert config.method("scasml").options.clip == 0.5
    assert config_from_dict(apply_overrides(BASE, ["methods.scasml.clip=none"])).method("scasml").options.clip is None
    assert BASE["training"]["steps"] == 10  # the input is not modified


@pytest.mark.parametrize(("override", "message"), [
    ("training.steps", r"^--set 'training\.steps': expected key=value"),
    ("training..steps=3", r"^--set 'training\.\.steps=3': malformed key"),
    ("training.steps.x=3", r"^training\.steps: is not a table"),
    ("training.steps=-3", r"^training\.steps: must be ≥ 1; got -3"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(apply_overrides(BASE, [override]))


def test_load_config_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match=r"no such config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nsteps = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_experiment_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my-experiment.toml"
    path.write_text('[equation]\nname = "lcd"\ndim = 3\n[methods.s]\nkind = "surrogate"\n')
    assert load_config(path).name == "my-experiment"


def test_every_shipped_config_is_valid():
    paths = sorted(CONFIGS.glob("*.toml"))
    names = {p.stem for p in paths}
    table1 = {f"{eq}-{d}d" for eq, dims in {"lcd": (10, 20, 30, 60), "vb": (20, 40, 60, 80),
                                            "lqg": (100, 120, 140, 160), "dr": (100, 120, 140, 160)}.items()
              for d in dims}
    assert table1 | {"quickstart"} <= names
    for path in paths:
        config = load_config(path)
        assert config.name == path.stem
        again = config_from_dict(tomllib.loads(config.to_toml()))
        assert again.fingerprint() == config.fingerprint()


def test_shrinkage_is_left_out_of_the_resolved_config_unless_set():
    """Configs written before the key existed keep their fingerprint, so their runs still resume."""
    config = config_from_dict(copy.deepcopy(BASE))
    assert "shrinkage" not in config.method("scasml").to_dict()
    shrunk = config_from_dict(mutate("methods.scasml.shrinkage", "sure"))
    assert shrunk.method("scasml").to_dict()["shrinkage"] == "sure"
    assert shrunk.method("scasml").label().endswith(", SURE shrinkage")
    assert config_from_dict(tomllib.loads(shrunk.to_toml())) == shrunk


def test_table1_configs_match_the_paper_budget():
    table1 = [p for p in CONFIGS.glob("*-*d.toml") if p.stem.split("-")[0] in ("vb", "lcd", "lqg", "dr")]
    assert len(table1) == 20  # 16 PINN rows and 4 VB-GP rows
    for path in table1:
        config = load_config(path)
        s, tr = config.surrogate, config.training
        if s.kind == "gp":  # VB-GP rows: 2,000 collocation points (1,500 interior + 500 terminal)
            assert path.stem.startswith("vb-gp-") and (tr.points, tr.terminal_points) == (1500, 500)
        else:
            assert (s.depth, s.width, s.activation) == (5, 50, "tanh")
            assert (tr.learning_rate, tr.steps, tr.collocation) == (7e-4, 10_000, 2500)
        assert config.evaluation.points == 1200
        scasml = config.method("scasml").options
        assert (scasml.levels, scasml.base, scasml.variant) == (2, 10, "full_history")
        assert config.method("scasml_noclip").options.clip is None and scasml.clip is not None
        if s.kind != "gp":  # scasml_sure shrinks scasml_noclip's estimates (no second Monte Carlo run)
            sure = config.method("scasml_sure").options
            assert sure == dataclasses.replace(config.method("scasml_noclip").options, shrinkage="sure")
        if config.equation.name == "lcd":
            assert scasml.clip == 0.5 * (config.equation.dim + 1)
        else:
            assert scasml.clip == {"vb": 0.01, "lqg": 0.1, "dr": 0.01}[config.equation.name]
            assert config.method("mlp").options.clip == {"vb": 1.0, "lqg": 10.0, "dr": 10.0}[config.equation.name]


def test_config_names_resolve_to_files(monkeypatch):
    monkeypatch.chdir(CONFIGS.parents[1])
    assert CONFIGS.resolve() in [d.resolve() for d in config_dirs()]
    assert resolve_config_path("quickstart").resolve() == (CONFIGS / "quickstart.toml").resolve()
    with pytest.raises(ConfigError, match=r"^no-such-config: no such config file"):
        resolve_config_path("no-such-config")


# ---- surrogate kinds: gp and python:module:function ---------------------------------------------------------

GP = {**BASE, "surrogate": {"kind": "gp", "kernel": "gaussian"},
      "training": {"points": 16, "terminal_points": 8, "iterations": 2}}
USER = {key: value for key, value in BASE.items() if key != "training"}
USER["surrogate"] = {"kind": "python:math:hypot"}

BAD_KINDS = [
    (USER, "surrogate.kind", "python:no_such_module_xyz:surrogate",
     r"^surrogate\.kind: 'python:no_such_module_xyz:surrogate': no module named 'no_such_module_xyz'"),
    (USER, "surrogate.kind", "python:/nonexistent/model.py:surrogate", r"^surrogate\.kind: .*no such file '/nonex"),
    (USER, "surrogate.kind", "python:math:no_such_function", r"^surrogate\.kind: .*module 'math' has no attribute"),
    (USER, "surrogate.kind", "python:math:pi", r"^surrogate\.kind: .*'pi' is a float, not a function"),
    (GP, "surrogate.width", 8, r"^surrogate\.width: not used with surrogate\.kind = 'gp'; allowed: kind, kernel, "
     r"lengthscale_factor, checkpoint"),
    (GP, "training.steps", 10, r"^training\.steps: not used with surrogate\.kind = 'gp'; allowed: points, "),
    (GP, "training.pionts", 10, r"^training\.pionts: unknown key \(did you mean 'points'\?\)"),
    (GP, "surrogate.kernel", "rbf", r"^surrogate\.kernel: must be one of 'matern52', 'gaussian'; got 'rbf'"),
    (GP, "surrogate.lengthscale_factor", -1.0, r"^surrogate\.lengthscale_factor: must be > 0"),
    (GP, "training.points", 0, r"^training\.points: must be ≥ 1; got 0"),
    (GP, "training.iterations", "many", r"^training\.iterations: expected an integer, got a string"),
    (GP, "training.regularization", 0.0, r"^training\.regularization: must be > 0"),
    (GP, "sweep.training_steps", [5], r"^sweep\.training_steps: the training-budget sweep retrains a PINN"),
    (USER, "surrogate.width", 8, r"^surrogate\.width: not used with surrogate\.kind = 'python:math:hypot'; "
     r"allowed: kind$"),
    (USER, "training.steps", 10, r"^training\.steps: not used with surrogate\.kind = 'python:math:hypot': a user "
     r"function is not trained"),
    (USER, "surrogate.checkpoint", "model.scasml", r"^surrogate\.checkpoint: not used with surrogate\.kind"),
]


@pytest.mark.parametrize(("base", "path", "value", "message"), BAD_KINDS,
                         ids=[f"{b['surrogate']['kind'][:6]}-{p}={v!r}"[:60] for b, p, v, _ in BAD_KINDS])
def test_bad_surrogate_kind_keys(base, path, value, message):
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_gp_config_defaults_and_round_trip():
    config = config_from_dict(copy.deepcopy(GP))
    assert config.surrogate_family == "gp" and config.surrogate.kernel == "gaussian"
    assert (config.training.points, config.training.terminal_points, config.training.iterations) == (16, 8, 2)
    assert config.training.regularization is None and config.surrogate.lengthscale_factor == 1.0
    resolved = config.to_dict()
    assert set(resolved["surrogate"]) == {"kind", "kernel", "lengthscale_factor", "checkpoint"}
    assert set(resolved["training"]) == {"points", "terminal_points", "terminal_weight", "iterations",
                                         "regularization", "seed"}
    again = config_from_dict(tomllib.loads(config.to_toml()))
    assert again == config and again.fingerprint() == config.fingerprint()
    pinn = config_from_dict(copy.deepcopy(BASE)).to_dict()  # PINN configs resolve exactly as before
    assert "kernel" not in pinn["surrogate"] and "points" not in pinn["training"]


def test_user_function_config_resolves_paths(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.py").write_text("def surrogate(pde):\n    return lambda t, x: t\n")
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "mine.toml"
    path.write_text('[equation]\nname = "vb"\ndim = 2\n[surrogate]\nkind = "python:../models/mine.py:surrogate"\n'
                    '[methods.s]\nkind = "surrogate"\n')
    config = load_config(path)  # relative to the config file's folder
    assert config.surrogate.kind == f"python:{tmp_path / 'models' / 'mine.py'}:surrogate"
    assert "training" not in config.to_dict() and "[training]" not in config.to_toml()
    again = config_from_dict(tomllib.loads(config.to_toml()))
    assert again == config and again.fingerprint() == config.fingerprint()
    monkeypatch.chdir(tmp_path)  # --set: relative to the current directory
    assert load_config(path, ["surrogate.kind=python:models/mine.py:surrogate"]).surrogate == config.surrogate
    with pytest.raises(ConfigError, match=r"^surrogate\.kind: .*file '.*mine\.py' has no attribute 'surogate' "
                                          r"\(did you mean 'surrogate'\?\)"):
        load_config(path, ["surrogate.kind=python:models/mine.py:surogate"])
    (tmp_path / "models" / "broken.py").write_text("import no_such_module_xyz\n")
    with pytest.raises(ConfigError, match=r"^surrogate\.kind: .*executing '.*broken\.py' failed: "
                                          r"ModuleNotFoundError"):
        load_config(path, ["surrogate.kind=python:models/broken.py:surrogate"])
    monkeypatch.syspath_prepend(str(tmp_path / "models"))
    assert load_config(path, ["surrogate.kind=python:mine:surrogate"]).surrogate.kind == "python:mine:surrogate"
    # reading a finished run back (check_files=False) imports nothing
    config_from_dict({**USER, "surrogate": {"kind": "python:no_such_module_xyz:f"}}, check_files=False)


def test_checkpoint_must_match_the_surrogate_kind(tmp_path):
    import jax

    import scasml

    pde = scasml.equations.get("vb", dim=4)
    path = tmp_path / "pinn.scasml"
    scasml.save_surrogate(path, scasml.PINN(4, pde.horizon, jax.random.key(0), width=4, depth=1), pde)
    config_from_dict(mutate("surrogate.checkpoint", str(path)))
    raw = copy.deepcopy(GP)
    raw["surrogate"]["checkpoint"] = str(path)
    with pytest.raises(ConfigError, match=r"^surrogate\.checkpoint: .* holds a 'pinn' surrogate, but surrogate\.kind"
                                          r" = 'gp'"):
        config_from_dict(raw)


def test_pricing_configs_compare_at_the_recorded_reference():
    """bsdr/bsir have no closed form: a run compares at the recorded u(0, x₀) (evaluation.at = 'reference'); asking
    for domain points says so, as does a smoothed payoff on an equation without one or a reference off d = 100."""
    raw = mutate("equation", {"name": "bsdr", "dim": 100})
    with pytest.raises(ConfigError, match=r"^equation\.name: 'bsdr' has neither .* set evaluation\.at = 'reference'"):
        config_from_dict(raw)
    raw["evaluation"]["at"] = "reference"
    raw["surrogate"].update(terminal_transform=True, terminal_smoothing=8.0)
    assert config_from_dict(raw).surrogate.terminal_smoothing == 8.0
    raw["equation"]["dim"] = 10
    with pytest.raises(ConfigError, match=r"^evaluation\.at: 'bsdr' in 10 d .* no recorded reference"):
        config_from_dict(raw)
    raw = mutate("surrogate", {"terminal_transform": True, "terminal_smoothing": 1.0})
    with pytest.raises(ConfigError, match=r"^surrogate\.terminal_smoothing: .*has no smoothed terminal condition"):
        config_from_dict(raw)
    for name in ("bsdr-100d", "bsir-100d"):
        config = load_config(CONFIGS / f"{name}.toml")
        assert config.evaluation.at == "reference" and config.surrogate.terminal_smoothing > 0
