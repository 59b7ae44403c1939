"""The experiment configuration schema: one frozen dataclass per TOML section.

Each field carries its default, its allowed values and a check; ``build_section`` turns a raw TOML table into a
section, rejecting unknown keys, wrong types and impossible values with the dotted key in the message.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
ACTIVATIONS = ("tanh", "softplus", "sin", "gelu")
TRACES = ("exact", "hutchinson")


class ConfigError(ValueError):
    """An invalid experiment configuration; the message starts with the offending key (e.g. ``training.steps``)."""


def spec(default=dataclasses.MISSING, *, check=None, choices=None, doc: str = "", factory=dataclasses.MISSING):
    """A schema field: ``check(value)`` returns a problem description or None; ``choices`` lists allowed values."""
    meta = {"check": check, "choices": choices, "doc": doc}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


def at_least(low):
    return lambda v: None if v >= low else f"must be ≥ {low}"


def positive(v):
    return None if v > 0 else "must be > 0"


def each(check):
    def run(values):
        for i, v in enumerate(values):
            problem = check(v)
            if problem:
                return f"entry {i} ({v!r}) {problem}"
        return None

    return run


def identifier(v):
    return None if IDENTIFIER.match(v) else "must start with a letter and use only letters, digits, '_' and '-'"


@dataclasses.dataclass(frozen=True)
class ExperimentSection:
    name: str = spec("experiment", check=identifier, doc="run name; the default run directory is runs/<name>")
    description: str = spec("", doc="one line shown by `scasml list` and in report.md")


@dataclasses.dataclass(frozen=True)
class EquationSection:
    name: str = spec(doc="a name from scasml.equations.available()")
    dim: int = spec(check=at_least(1), doc="spatial dimension d")
    parameters: dict = spec(factory=dict, doc="extra keyword arguments of the equation (e.g. seed for lqg)")


@dataclasses.dataclass(frozen=True)
class SurrogateSection:
    kind: str = spec("pinn", choices=("pinn",))
    width: int = spec(50, check=at_least(1), doc="units per hidden layer")
    depth: int = spec(5, check=at_least(1), doc="hidden layers")
    activation: str = spec("tanh", choices=ACTIVATIONS)
    terminal_transform: bool = spec(False, doc="build g into the network so that û(T, ·) = g exactly")
    checkpoint: str = spec("", doc="use this trained checkpoint instead of training (path)")


@dataclasses.dataclass(frozen=True)
class TrainingSection:
    steps: int = spec(10_000, check=at_least(1))
    collocation: int = spec(2500, check=at_least(1), doc="interior collocation points per step")
    terminal_points: int = spec(500, check=at_least(1), doc="terminal-condition points per step")
    terminal_weight: float = spec(1.0, check=positive, doc="weight of the terminal mismatch in the loss")
    learning_rate: float = spec(7e-4, check=positive, doc="Adam step size at the start")
    final_learning_rate: float = spec(1e-5, check=positive, doc="end of the cosine decay")
    trace: str = spec("exact", choices=TRACES, doc="Laplacian in the residual")
    probes: int = spec(4, check=at_least(1), doc="Rademacher probes when trace = 'hutchinson'")
    seed: int = spec(0, check=at_least(0), doc="initial weights and collocation points")
    log_every: int = spec(100, check=at_least(1), doc="record the loss every log_every steps")


@dataclasses.dataclass(frozen=True)
class EvaluationSection:
    points: int = spec(1200, check=at_least(1), doc="test points per repetition")
    seed: int = spec(0, check=at_least(0), doc="test points, references and Monte Carlo noise")
    repetitions: int = spec(1, check=at_least(1), doc="independent repetitions (fresh points and noise)")
    chunks: int = spec(4, check=at_least(1), doc="resumable stages per method and repetition")
    batch_size: int = spec(0, check=at_least(0), doc="points per vectorised batch inside a chunk (0: automatic)")
    reference_samples: int = spec(10_000, check=at_least(2), doc="Monte Carlo samples for reference solutions")
    trace: str = spec("exact", choices=TRACES, doc="Laplacian of the surrogate residual in SCaSML")
    probes: int = spec(4, check=at_least(1), doc="Rademacher probes when trace = 'hutchinson'")


METHOD_KINDS = ("surrogate", "mlp", "scasml")
ESTIMATORS = ("picard", "feynman_kac")


@dataclasses.dataclass(frozen=True)
class MethodSection:
    kind: str = spec(choices=METHOD_KINDS, doc="surrogate alone, plain Monte Carlo (mlp) or SCaSML")
    estimator: str = spec("picard", choices=ESTIMATORS, doc="feynman_kac: linear PDEs only")
    levels: int = spec(2, check=at_least(1), doc="n")
    base: int = spec(10, check=at_least(2), doc="M")
    variant: str = spec("full_history", choices=("full_history", "quadrature"))
    clip: float | None = spec(None, check=positive, doc="clip (u, z) to [-clip, clip] at every level; 'none': off")
    paths: int = spec(1000, check=at_least(2), doc="Brownian paths per point")
    time_samples: int = spec(1, check=at_least(1), doc="source evaluations per path")
    time_rule: str = spec("random", choices=("random", "gauss_legendre"))


METHOD_KEYS = {
    "surrogate": ("kind",),
    "picard": ("kind", "estimator", "levels", "base", "variant", "clip"),
    "feynman_kac": ("kind", "estimator", "paths", "time_samples", "time_rule"),
}


def method_keys(kind: str, estimator: str) -> tuple[str, ...]:
    return METHOD_KEYS["surrogate" if kind == "surrogate" else estimator]


@dataclasses.dataclass(frozen=True)
class SweepSection:
    base: tuple[int, ...] = spec((), check=each(at_least(2)), doc="M values for the inference-time scaling curve")
    levels: tuple[int, ...] = spec((), check=each(at_least(1)), doc="levels n for the scaling curve")
    training_steps: tuple[int, ...] = spec((), check=each(at_least(1)), doc="training budgets (convergence curve)")
    methods: tuple[str, ...] = spec((), doc="methods to sweep (default: every multilevel Picard method)")
    points: int = spec(0, check=at_least(0), doc="use the first k test points of repetition 0 (0: all)")


SECTIONS = {
    "experiment": ExperimentSection,
    "equation": EquationSection,
    "surrogate": SurrogateSection,
    "training": TrainingSection,
    "evaluation": EvaluationSection,
    "sweep": SweepSection,
}


# ---- validation ------------------------------------------------------------------------------------------


def _describe(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _coerce(value: Any, hint, key: str):
    """Check ``value`` against the annotation ``hint`` and normalise it (int → float, list → tuple, 'none')."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[...]
        if isinstance(value, str) and value.lower() == "none":
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected an array, got {_describe(value)}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {_describe(value)}")
        return dict(value)
    raise TypeError(f"unsupported schema type {hint!r}")  # pragma: no cover - schema bug


def unknown_key_error(key: str, name: str, allowed) -> ConfigError:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{key}: unknown key{hint}; allowed: {', '.join(allowed)}")


def build_section(cls, raw: Any, path: str, allowed: tuple[str, ...] | None = None):
    """Validate the raw TOML table ``raw`` for section ``cls`` found at dotted ``path``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = tuple(allowed or fields)
    for name in raw:
        if name not in names:
            if name in fields:
                raise ConfigError(f"{path}.{name}: not used here; allowed: {', '.join(names)}")
            raise unknown_key_error(f"{path}.{name}", name, names)
    values = {}
    for name, f in fields.items():
        key = f"{path}.{name}"
        if name in raw:
            value = _coerce(raw[name], hints[name], key)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ConfigError(f"{key}: required key is missing")
        choices, check = f.metadata["choices"], f.metadata["check"]
        if value is not None and choices is not None and value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, choices))}; got {value!r}")
        if value is not None and check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{key}: {problem}; got {value!r}")
        values[name] = value
    return cls(**values)


def section_to_dict(section, keys: tuple[str, ...] | None = None) -> dict:
    """Plain dict of a section (tuples → lists, None → 'none'), restricted to ``keys`` if given."""
    out = {}
    for f in dataclasses.fields(section):
        if keys is not None and f.name not in keys:
            continue
        value = getattr(section, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif value is None:
            value = "none"
        out[f.name] = value
    return out


def _default_text(f) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return '"none"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, dict)):
        return "[]" if isinstance(value, tuple) else "{}"
    return repr(value)


def config_reference() -> str:
    """Every config key with its default, allowed values and meaning (printed by `scasml list --keys`)."""
    lines = []
    tables = [*SECTIONS.items()]
    tables.insert(5, ("methods.<name>", MethodSection))
    for name, cls in tables:
        lines.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            notes = [f.metadata["doc"]] if f.metadata["doc"] else []
            if f.metadata["choices"]:
                notes.append("one of " + ", ".join(map(repr, f.metadata["choices"])))
            if cls is MethodSection and f.name != "kind":
                users = [k for k, keys in METHOD_KEYS.items() if f.name in keys and k != "surrogate"]
                notes.append("for " + " and ".join(users) + " estimators")
            entry = f"{f.name} = {_default_text(f)}"
            lines.append(f"{entry:<34}# " + "; ".join(notes) if notes else entry)
        lines.append("")
    return "\n".join(lines)
