"""Experiment configurations: a TOML file (+ ``--set key=value`` overrides) → a validated ``ExperimentConfig``.

Everything is checked before any work starts: unknown keys, wrong types, impossible values and inconsistent
combinations raise ``ConfigError`` whose message begins with the dotted key. The resolved configuration (every
default filled in) is written back as TOML/JSON into the run directory, so a run is reproducible from it alone.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import tomllib
from pathlib import Path

import jax

from .. import equations
from .._adaptive import Budget, TargetStderr
from .._calibrate import MIN_TRUNCATION_POINTS
from .._checks import MAX_EVALUATIONS_PER_POINT
from ..estimators import FeynmanKac, MultilevelPicard
from ._schema import (
    ESTIMATORS,
    IDENTIFIER,
    LATER_KEY_DEFAULTS,
    METHOD_KINDS,
    PYTHON_PREFIX,
    SECTIONS,
    SURROGATE_KEYS,
    TRAINING_KEYS,
    ConfigError,
    EquationSection,
    EvaluationSection,
    ExperimentSection,
    MethodSection,
    SurrogateSection,
    SweepSection,
    TrainingSection,
    build_section,
    method_keys,
    section_to_dict,
    surrogate_family,
    unknown_key_error,
)

TOP_LEVEL = ("experiment", "equation", "surrogate", "training", "evaluation", "methods", "sweep")


@dataclasses.dataclass(frozen=True)
class Method:
    """One compared method: ``kind`` is 'surrogate' (û alone), 'mlp' (plain Monte Carlo) or 'scasml'."""

    name: str
    options: MethodSection

    @property
    def kind(self) -> str:
        return self.options.kind

    @property
    def is_picard(self) -> bool:
        return self.kind != "surrogate" and self.options.estimator == "picard"

    def estimator(self):
        """The Monte Carlo estimator object (None for the surrogate alone)."""
        o = self.options
        if self.kind == "surrogate":
            return None
        if o.estimator == "picard":
            return MultilevelPicard(levels=o.levels, base=o.base, variant=o.variant, clip=o.clip, debias=o.debias,
                                    antithetic=o.antithetic, terminal_factor=o.terminal_factor,
                                    min_top_samples=o.min_top_samples, qmc_sets=o.qmc_sets,
                                    qmc_points=o.qmc_points, inner_base=o.inner_base,
                                    next_correction=o.next_correction)
        return FeynmanKac(paths=o.paths, time_samples=o.time_samples, time_rule=o.time_rule, antithetic=o.antithetic)

    @property
    def is_adaptive(self) -> bool:
        o = self.options
        return self.kind != "surrogate" and any(v is not None for v in (o.target_stderr, o.target_relative, o.budget))

    def allocation(self, points: int):
        """The per-point budget rule for a chunk of ``points`` points: ``scasml.TargetStderr``, ``scasml.Budget``
        (``budget`` evaluations per point on average over the chunk) or None (one replica per point)."""
        o = self.options
        if not self.is_adaptive:
            return None
        if o.budget is not None:
            return Budget(evaluations=o.budget * points)
        return TargetStderr(absolute=o.target_stderr, relative=o.target_relative, max_replicas=o.max_replicas)

    @property
    def post_processed(self) -> bool:
        """Whether the estimates are shrunk or their intervals widened (post-processing of the Monte Carlo)."""
        return self.options.shrinkage != "none" or self.options.widen

    def monte_carlo_options(self) -> MethodSection:
        """The options without the post-processing: methods that agree on them can share their estimates."""
        return dataclasses.replace(self.options, shrinkage="none", widen=False)

    def replace(self, **changes) -> Method:
        return Method(self.name, dataclasses.replace(self.options, **changes))

    def to_dict(self) -> dict:
        out = section_to_dict(self.options, method_keys(self.kind, self.options.estimator))
        for key, default in LATER_KEY_DEFAULTS.items():
            if key in out and out[key] == ("none" if default is None else default):
                del out[key]
        return out

    def label(self) -> str:
        """Short human description, e.g. 'SCaSML, MLP n=2 M=10, clip 0.01'."""
        o = self.options
        head = {"surrogate": "surrogate", "mlp": "plain MC", "scasml": "SCaSML"}[self.kind]
        if self.kind == "surrogate":
            return head
        shrunk = (", SURE shrinkage" if o.shrinkage == "sure" else "") + (
            ", widened intervals" if o.widen else "")
        if o.estimator == "feynman_kac":
            anti = ", antithetic" if o.antithetic else ""
            return f"{head}, Feynman-Kac {o.paths} paths{anti}{shrunk}{self._adaptive_label()}"
        clip = f", clip {o.clip:g}" if o.clip is not None else ""
        variant = "" if o.variant == "full_history" else f" {o.variant}"
        reduced = (", antithetic" if o.antithetic else "") + (
            f", {o.terminal_factor}x terminal paths" if o.terminal_factor > 1 else "") + (
            f", top blocks ≥ {o.min_top_samples}" if o.min_top_samples > 1 else "") + (
            f", QMC terminal paths ({o.qmc_sets} nets{self._net_size()})" if o.qmc_sets else "") + (
            f", nested M={o.inner_base}" if o.inner_base is not None else "") + (
            f", next correction ({o.next_correction} bridge points)" if o.next_correction else "")
        return f"{head}, MLP{variant} n={o.levels} M={o.base}{clip}{reduced}{shrunk}{self._adaptive_label()}"

    def _net_size(self) -> str:
        return f" of ≥ {self.options.qmc_points} points" if self.options.qmc_points > 1 else ""

    def _adaptive_label(self) -> str:
        o = self.options
        if o.budget is not None:
            return f", budget {o.budget:.3g} evaluations/point"
        targets = [f"stderr ≤ {v:g}{unit}" for v, unit in ((o.target_stderr, ""), (o.target_relative, "·|u|"))
                   if v is not None]
        return f", target {' or '.join(targets)} (≤ {o.max_replicas} replicas)" if targets else ""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment (see configs/*.toml for the keys and docs/ for their meaning)."""

    experiment: ExperimentSection
    equation: EquationSection
    surrogate: SurrogateSection
    training: TrainingSection
    evaluation: EvaluationSection
    methods: tuple[Method, ...]
    sweep: SweepSection

    @property
    def name(self) -> str:
        return self.experiment.name

    def method(self, name: str) -> Method:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    def methods_of_kind(self, kind: str) -> tuple[Method, ...]:
        return tuple(m for m in self.methods if m.kind == kind)

    def sweep_methods(self) -> tuple[Method, ...]:
        names = self.sweep.methods or tuple(m.name for m in self.methods if m.is_picard)
        return tuple(self.method(n) for n in names)

    @property
    def surrogate_family(self) -> str:
        """'pinn', 'gp' or 'python' (a user function named by surrogate.kind = 'python:…')."""
        return surrogate_family(self.surrogate.kind)

    @property
    def user_equation(self) -> bool:
        """True when equation.name names a user's PDE ('python:…')."""
        return self.equation.name.startswith(PYTHON_PREFIX)

    @property
    def equation_label(self) -> str:
        """The equation as titles show it: 'VB' for a built-in one, the object's name for a user's PDE."""
        return self.equation.name.rpartition(":")[2] if self.user_equation else self.equation.name.upper()

    def make_pde(self):
        if self.user_equation:
            from ._user import load_user_pde

            return load_user_pde(self.equation.name, self.equation.dim, self.equation.parameters)
        return equations.get(self.equation.name, dim=self.equation.dim, **self.equation.parameters)

    def to_dict(self) -> dict:
        out = {}
        family = self.surrogate_family
        for name in ("experiment", "equation", "surrogate", "training", "evaluation"):
            keys = {"surrogate": SURROGATE_KEYS[family], "training": TRAINING_KEYS[family]}.get(name)
            if name == "training" and not keys:
                continue  # a user function is not trained
            out[name] = section_to_dict(getattr(self, name), keys)
        out["methods"] = {m.name: m.to_dict() for m in self.methods}
        out["sweep"] = section_to_dict(self.sweep)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"  # keeps the order of the methods

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())

    def fingerprint(self) -> str:
        """SHA-256 of the resolved configuration (identifies a run)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# ---- loading ----------------------------------------------------------------------------------------------


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides) -> dict:
    """Apply ``key.path=value`` strings (values parsed as TOML, else taken as strings) to a raw config."""
    raw = copy.deepcopy(raw)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. training.steps=500)")
        key, text = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: malformed key {key!r}")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: is not a table, cannot set {key}")
            node = child
        node[parts[-1]] = _parse_value(text)
    return raw


def _surrogate_kind(raw: dict):
    table = raw.get("surrogate")
    return table.get("kind") if isinstance(table, dict) else None


def _equation_name(raw: dict):
    table = raw.get("equation")
    return table.get("name") if isinstance(table, dict) else None


def load_config(path, overrides=()) -> ExperimentConfig:
    """Read, override and validate a TOML experiment config (``ConfigError`` on any problem).

    A relative file path in ``surrogate.kind = "python:path/to/file.py:function"`` is relative to the config file's
    folder, or to the current directory when it comes from ``overrides``.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    default_name = path.stem if IDENTIFIER.match(path.stem) else "experiment"
    patched = apply_overrides(raw, overrides)
    base_dir = path.parent if _surrogate_kind(patched) == _surrogate_kind(raw) else None
    equation_dir = path.parent if _equation_name(patched) == _equation_name(raw) else None
    return config_from_dict(patched, default_name=default_name, base_dir=base_dir, equation_dir=equation_dir)


def config_from_dict(raw: dict, default_name: str = "experiment", check_files: bool = True,
                     base_dir=None, equation_dir=None) -> ExperimentConfig:
    """Validate a raw (parsed TOML) configuration.

    ``check_files``: also check surrogate.checkpoint and import a ``python:`` surrogate's module (without calling
    it). ``base_dir``: the folder that a relative ``.py`` path in ``surrogate.kind`` is relative to (default: the
    current directory); ``equation_dir`` the same for ``equation.name``; the validated config holds absolute paths.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table, got {type(raw).__name__}")
    for name in raw:
        if name not in TOP_LEVEL:
            raise unknown_key_error(name, name, TOP_LEVEL)
    for name in ("equation", "methods"):
        if name not in raw:
            raise ConfigError(f"{name}: required section [{name}] is missing")
    experiment_raw = raw.get("experiment", {})
    if isinstance(experiment_raw, dict):
        experiment_raw = {"name": default_name, **experiment_raw}
    kind = _surrogate_kind(raw)
    try:
        family = surrogate_family("pinn" if kind is None else kind)
    except (AttributeError, TypeError, ValueError):
        family = None  # build_section reports the bad kind
    sections = {}
    for name, cls in SECTIONS.items():
        table = experiment_raw if name == "experiment" else raw.get(name, {})
        allowed = {"surrogate": SURROGATE_KEYS, "training": TRAINING_KEYS}.get(name, {}).get(family)
        where = f"with surrogate.kind = {kind or 'pinn'!r}"
        if name == "training" and family == "python" and isinstance(table, dict) and table:
            raise ConfigError(f"training.{next(iter(table))}: not used {where}: a user function is not trained; "
                              "remove the [training] section")
        sections[name] = build_section(cls, table, name, allowed, where)
    if family == "python":
        from ._user import resolve_kind

        resolved = resolve_kind(sections["surrogate"].kind, base_dir)
        sections["surrogate"] = dataclasses.replace(sections["surrogate"], kind=resolved)
    if sections["equation"].name.startswith(PYTHON_PREFIX):
        from ._user import EQUATION_KEY, resolve_kind

        try:
            resolved = resolve_kind(sections["equation"].name, equation_dir)
        except ValueError as err:
            raise ConfigError(f"{EQUATION_KEY}: {err}; got {sections['equation'].name!r}") from None
        sections["equation"] = dataclasses.replace(sections["equation"], name=resolved)
    methods = _build_methods(raw["methods"])
    config = ExperimentConfig(methods=methods, **sections)
    _cross_check(config, check_files)
    return config


def _build_methods(raw) -> tuple[Method, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("methods: expected a table of methods, e.g. [methods.scasml] kind = \"scasml\"")
    if not raw:
        raise ConfigError("methods: at least one method is required")
    methods = []
    for name, table in raw.items():
        key = f"methods.{name}"
        if not IDENTIFIER.match(name) or "-" in name:
            raise ConfigError(f"{key}: method names must start with a letter and use only letters, digits and '_'")
        if name == "exact":
            raise ConfigError(f"{key}: 'exact' names the reference's columns in results/points.*; choose another "
                              "method name")
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table, got {type(table).__name__}")
        kind, estimator = table.get("kind"), table.get("estimator", "picard")
        allowed = method_keys(kind, estimator) if kind in METHOD_KINDS and estimator in ESTIMATORS else None
        methods.append(Method(name, build_section(MethodSection, table, key, allowed)))
    return tuple(methods)


def _check_equation(config: ExperimentConfig):
    eq = config.equation
    if config.user_equation:
        pde = config.make_pde()  # imports the user's file or module and builds the PDE (ConfigError if it fails)
        if config.evaluation.at == "reference":
            raise ConfigError("evaluation.at: 'reference' compares at a library equation's recorded u(0, x₀) "
                              "(bsdr, bsir); your PDE is compared with its exact solution (evaluation.at = 'domain')")
        if not pde.has_exact:
            raise ConfigError(f"equation.name: the PDE {eq.name!r} has no exact solution (build it with exact=...): "
                              "a run reports errors against it")
        return pde
    if eq.name.lower() not in equations.available():
        raise ConfigError(f"equation.name: unknown equation {eq.name!r}; available: "
                          f"{', '.join(equations.available())}; or your own PDE as 'python:path/to/file.py:pde'")
    try:  # abstract evaluation builds the equation's structure without running (or compiling) any array code
        pde = jax.eval_shape(config.make_pde)
    except (TypeError, ValueError):
        try:  # a genuine error reappears in a concrete build; one that needs concrete values does not
            pde = config.make_pde()
        except (TypeError, ValueError) as err:
            raise ConfigError(f"equation.parameters: cannot build {eq.name!r} in {eq.dim} d: {err}") from None
    smoothing = config.surrogate.terminal_smoothing
    if smoothing and not config.surrogate.terminal_transform:
        raise ConfigError("surrogate.terminal_smoothing: smooths the built-in terminal condition; set "
                          "surrogate.terminal_transform = true (or remove terminal_smoothing)")
    if smoothing:
        try:
            pde.smoothed_terminal(smoothing)
        except ValueError as err:
            raise ConfigError(f"surrogate.terminal_smoothing: {err}") from None
    if config.evaluation.at == "reference":
        if pde.recorded_reference() is None:
            raise ConfigError(f"evaluation.at: {eq.name!r} in {eq.dim} d with these parameters has no recorded "
                              "reference value u(0, x₀); the pricing equations 'bsdr' and 'bsir' record one in 100 d "
                              "with their default parameters")
    elif not pde.has_exact and not hasattr(pde, "reference"):
        raise ConfigError(f"equation.name: {eq.name!r} has neither an exact solution nor a reference to compare "
                          "with; with a recorded reference u(0, x₀) (bsdr, bsir in 100 d) set evaluation.at = "
                          "'reference'")
    return pde


def _check_methods(config: ExperimentConfig, pde) -> None:
    for m in config.methods:
        _check_method(config, pde, m, f"methods.{m.name}")


def _check_method(config: ExperimentConfig, pde, m: Method, key: str) -> None:
    """Everything about one method that can be checked before any compute (``key`` names it in errors)."""
    if m.options.estimator == "feynman_kac" and m.kind != "surrogate" and not pde.is_linear:
        raise ConfigError(
            f"{key}.estimator: feynman_kac needs a linear PDE, but {pde.name} is semilinear; use picard"
        )
    if m.kind == "mlp" and m.options.shrinkage != "none":
        raise ConfigError(f"{key}.shrinkage: only scasml methods shrink (toward the surrogate); plain Monte "
                          "Carlo has no surrogate to shrink toward")
    if m.kind == "mlp" and m.options.next_correction:
        raise ConfigError(f"{key}.next_correction: it linearises the generator at the surrogate, so it applies to "
                          "scasml methods (the law of defect); plain Monte Carlo solves the PDE on its own (use more "
                          "levels there)")
    if m.options.next_correction and not pde.is_linear and not pde.dynamics.brownian_transitions:
        raise ConfigError(f"{key}.next_correction: needs dynamics driven by Brownian increments alone "
                          f"(brownian_transitions), not {type(pde.dynamics).__name__}")
    if m.options.widen and (pde.is_linear or m.options.levels < 2):
        why = f"{pde.name} is linear" if pde.is_linear else "levels = 1 has no earlier correction to compare"
        raise ConfigError(f"{key}.widen: there is no Picard truncation estimate to add to the intervals ({why}; "
                          "the estimate needs levels ≥ 2 on a semilinear PDE)")
    if m.options.widen and config.evaluation.points < MIN_TRUNCATION_POINTS:
        raise ConfigError(f"{key}.widen: the Picard truncation is estimated over a repetition's points, at least "
                          f"{MIN_TRUNCATION_POINTS}; evaluation.points is {config.evaluation.points}")
    try:
        estimator = m.estimator()
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None
    has_target = m.options.target_stderr is not None or m.options.target_relative is not None
    if m.options.budget is not None and has_target:
        raise ConfigError(f"{key}.budget: give either a budget or a target (target_stderr/target_relative), "
                          "not both")
    if m.options.max_replicas != LATER_KEY_DEFAULTS["max_replicas"] and not has_target:
        raise ConfigError(f"{key}.max_replicas: caps the replicas a target (target_stderr/target_relative) asks "
                          "for; this method has none")
    if estimator is not None:
        cost = sum(estimator.evaluations(pde).values())
        pilot = cost + (1 if m.kind == "scasml" else 0)  # calibrate also evaluates the surrogate at the point
        if m.options.budget is not None and m.options.budget < pilot:
            raise ConfigError(f"{key}.budget: {m.options.budget:g} evaluations per point is below the pilot's "
                              f"cost, one replica per point = {pilot} evaluations")
        if cost > MAX_EVALUATIONS_PER_POINT:
            raise ConfigError(
                f"{key}: {cost:.3g} function evaluations per point (levels={m.options.levels}, "
                f"base={m.options.base}) is beyond any budget; lower levels or base"
            )


def _check_sweep(config: ExperimentConfig, pde) -> None:
    sweep = config.sweep
    names = {m.name for m in config.methods}
    for i, name in enumerate(sweep.methods):
        if name not in names:
            raise ConfigError(f"sweep.methods[{i}]: no method named {name!r}; methods: {', '.join(sorted(names))}")
    for label in ("base", "levels", "training_steps", "methods"):
        values = getattr(sweep, label)
        if len(set(values)) != len(values):
            raise ConfigError(f"sweep.{label}: duplicate entries in {list(values)}")
    swept = config.sweep_methods()
    if (sweep.base or sweep.levels) and not any(m.is_picard for m in swept):
        raise ConfigError("sweep.base: the base/levels sweep needs at least one multilevel Picard method to sweep")
    for m in swept:
        if (sweep.base or sweep.levels) and not m.is_picard:
            raise ConfigError(f"sweep.methods: {m.name!r} is not a multilevel Picard method and cannot be swept")
    for axis in ("base", "levels"):  # every swept variant is checked as a method, before any compute
        for value in getattr(sweep, axis):
            for m in swept:
                try:
                    _check_method(config, pde, m.replace(**{axis: value}), f"methods.{m.name}")
                except ConfigError as err:
                    raise ConfigError(f"sweep.{axis} = {value}: {err}") from None
    if sweep.points > config.evaluation.points:
        raise ConfigError(f"sweep.points: {sweep.points} exceeds evaluation.points = {config.evaluation.points}")
    if sweep.training_steps and config.surrogate_family != "pinn":
        raise ConfigError(f"sweep.training_steps: the training-budget sweep retrains a PINN; not available with "
                          f"surrogate.kind = {config.surrogate.kind!r}")


def _check_checkpoint(config: ExperimentConfig, pde) -> None:
    from ..surrogates import CheckpointError, read_header

    path = config.surrogate.checkpoint
    if not path:
        return
    try:
        header = read_header(path)
    except CheckpointError as err:
        raise ConfigError(f"surrogate.checkpoint: {err}") from None
    saved = header.get("pde")
    if saved is not None and saved != pde.parameters():
        raise ConfigError(
            f"surrogate.checkpoint: {path!r} was trained for {saved.get('name')} in {saved.get('dim')} d, "
            f"not for {pde.name} in {pde.dim} d"
        )
    saved_kind = (header.get("architecture") or {}).get("kind")
    if saved_kind != config.surrogate.kind:
        raise ConfigError(
            f"surrogate.checkpoint: {path!r} holds a {saved_kind!r} surrogate, but surrogate.kind = "
            f"{config.surrogate.kind!r}; set surrogate.kind = {saved_kind!r}"
        )


def _cross_check(config: ExperimentConfig, check_files: bool) -> None:
    pde = _check_equation(config)
    tr, ev = config.training, config.evaluation
    if tr.final_learning_rate > tr.learning_rate:
        raise ConfigError(
            f"training.final_learning_rate: {tr.final_learning_rate:g} exceeds learning_rate {tr.learning_rate:g}"
        )
    if ev.chunks > ev.points:
        raise ConfigError(f"evaluation.chunks: {ev.chunks} chunks for only {ev.points} points")
    _check_methods(config, pde)
    _check_sweep(config, pde)
    if check_files:
        _check_checkpoint(config, pde)
        if config.surrogate_family == "python":
            from ._user import resolve_object

            resolve_object(config.surrogate.kind)  # module and function exist (calling it waits for the run)


# ---- config files -----------------------------------------------------------------------------------------


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def shipped_config_dir() -> Path:
    """The folder of the configs installed with the package (``scasml/configs``)."""
    return SHIPPED_CONFIGS


def config_dirs() -> list[Path]:
    """Where configs are looked up by name: ./configs (if it exists), then the configs shipped with the package."""
    out = []
    for d in (Path.cwd() / "configs", SHIPPED_CONFIGS):
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_configs() -> dict[str, Path]:
    """Config name → file for every config that ``resolve_config_path`` finds by name (the first folder wins)."""
    found: dict[str, Path] = {}
    for d in config_dirs():
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A config file path, or a config name such as 'quickstart' (or 'quickstart.toml') found in ``config_dirs()``.

    An existing file wins over a name, so a local ``configs/quickstart.toml`` or any other path keeps working; a
    bare name is looked up in ./configs first, then among the configs shipped with the package.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if len(path.parts) == 1 and path.suffix in ("", ".toml"):
        for d in config_dirs():
            candidate = d / f"{path.stem}.toml"
            if candidate.is_file():
                return candidate
    places = ", ".join(map(str, config_dirs())) or "./configs"
    known = ", ".join(available_configs())
    hint = f"; known configs: {known}" if known else ""
    raise ConfigError(f"{name_or_path}: no such config file (nor a config name in {places}){hint}")


# ---- a minimal TOML writer for resolved configs ----------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if IDENTIFIER.match(key) or key.isdigit() else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict, prefix: str = "") -> str:
    """TOML text for nested dicts of scalars and arrays (tables after plain keys)."""
    plain = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = []
    if plain or (prefix and not any(isinstance(v, dict) for v in data.values())):
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(plain)
        lines.append("")
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(dump_toml(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)))
    return "\n".join(lines)
