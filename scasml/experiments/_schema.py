"""The experiment configuration schema: one frozen dataclass per TOML section.

Each field carries its default, its allowed values and a check; ``build_section`` turns a raw TOML table into a
section, rejecting unknown keys, wrong types and impossible values with the dotted key in the message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from typing import Any

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
ACTIVATIONS = ("tanh", "softplus", "sin", "gelu")
TRACES = ("exact", "hutchinson")
GP_KERNELS = ("matern52", "gaussian")
DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PYTHON_PREFIX = "python:"


class ConfigError(ValueError):
    """An invalid experiment configuration; the message starts with the offending key (e.g. ``training.steps``)."""


def spec(default=dataclasses.MISSING, *, check=None, choices=None, doc: str = "", factory=dataclasses.MISSING):
    """A schema field: ``check(value)`` returns a problem description or None; ``choices`` lists allowed values."""
    meta = {"check": check, "choices": choices, "doc": doc}
    return dataclasses.field(default=default, default_factory=factory, metadata=meta)


def at_least(low):
    return lambda v: None if v >= low else f"must be ≥ {low}"


def seed_range(v):
    """A seed of ``jax.random.key``, which keeps 32 bits (2³² + 5 would give seed 5's numbers)."""
    return None if 0 <= v < 2**32 else "must lie in [0, 2³²): jax.random.key keeps 32 bits"


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


# ---- surrogate kinds ---------------------------------------------------------------------------------------

SURROGATE_FAMILIES = ("pinn", "gp", "python")
KIND_HELP = "'pinn', 'gp', 'python:module:function' or 'python:path/to/file.py:function'"


def parse_python_kind(kind: str) -> tuple[str, str, bool]:
    """``"python:TARGET:ATTRIBUTE"`` → (TARGET, ATTRIBUTE, TARGET is a .py file); ValueError if malformed.

    TARGET is a dotted module name or a path ending in ``.py``; ATTRIBUTE a (dotted) name inside it.
    """
    if not kind.startswith(PYTHON_PREFIX):
        raise ValueError(f"must be {KIND_HELP}")
    target, sep, attribute = kind[len(PYTHON_PREFIX):].rpartition(":")
    if not sep or not target or not attribute:
        raise ValueError("a user surrogate is written 'python:module:function' or 'python:path/to/file.py:function' "
                         "(module or file, then the function)")
    if not DOTTED.match(attribute):
        raise ValueError(f"{attribute!r} is not a Python name (the part after the last ':' names the function)")
    is_file = target.endswith(".py")
    if not is_file and not DOTTED.match(target):
        raise ValueError(f"{target!r} is neither a dotted module name nor a path to a .py file")
    return target, attribute, is_file


def surrogate_family(kind: str) -> str:
    """'pinn', 'gp' or 'python' (for 'python:…'); ValueError for anything else."""
    if kind in ("pinn", "gp"):
        return kind
    parse_python_kind(kind)
    return "python"


def surrogate_kind(v):
    try:
        surrogate_family(v)
    except ValueError as err:
        return str(err)
    return None


@dataclasses.dataclass(frozen=True)
class ExperimentSection:
    name: str = spec("experiment", check=identifier, doc="run name; the default run directory is runs/<name>")
    description: str = spec("", doc="one line shown by `scasml list` and in report.md")


@dataclasses.dataclass(frozen=True)
class EquationSection:
    name: str = spec(doc="a name from scasml.equations.available(), or your own PDE as 'python:module:name' / "
                     "'python:path/to/file.py:name' (a PDE object, or a factory f(dim, **parameters) returning one; "
                     "it needs exact=...; a relative path is relative to the config file)")
    dim: int = spec(check=at_least(1), doc="spatial dimension d")
    parameters: dict = spec(factory=dict, doc="extra keyword arguments of the equation (e.g. seed for lqg)")


@dataclasses.dataclass(frozen=True)
class SurrogateSection:
    kind: str = spec("pinn", check=surrogate_kind,
                     doc="'pinn' (train a PINN), 'gp' (fit a kernel-collocation GP) or 'python:module:function' / "
                     "'python:path/to/file.py:function' (your u(t, x), or f(pde) returning one; not trained; a "
                     "relative path is relative to the config file)")
    width: int = spec(50, check=at_least(1), doc="units per hidden layer")
    depth: int = spec(5, check=at_least(1), doc="hidden layers")
    activation: str = spec("tanh", choices=ACTIVATIONS)
    terminal_transform: bool = spec(False, doc="build g into the network so that û(T, ·) = g exactly")
    terminal_smoothing: float = spec(0.0, check=at_least(0.0),
                                     doc="build in g smoothed at this scale (kinked payoffs: min/max; 0: g itself)")
    input_offset: float = spec(0.0, doc="PINN input (x − input_offset)/input_scale (e.g. 100 for prices "
                               "near 100)")
    input_scale: float = spec(1.0, check=positive, doc="see input_offset (e.g. 30 for a ±30 % neighbourhood of 100)")
    output_scale: float = spec(1.0, check=positive, doc="PINN output = output_scale × network (the solution's size)")
    checkpoint: str = spec("", doc="use this saved surrogate of the same kind instead of training (path)")
    kernel: str = spec("matern52", choices=GP_KERNELS, doc="GP kernel")
    lengthscale_factor: float = spec(1.0, check=positive,
                                     doc="GP lengthscale = factor × median distance of the collocation points")


@dataclasses.dataclass(frozen=True)
class TrainingSection:
    steps: int = spec(10_000, check=at_least(1))
    collocation: int = spec(2500, check=at_least(1), doc="interior collocation points per step")
    terminal_points: int = spec(500, check=at_least(1), doc="terminal-condition points per step (GP: in total)")
    terminal_weight: float = spec(1.0, check=positive, doc="weight of the terminal mismatch in the loss")
    learning_rate: float = spec(7e-4, check=positive, doc="Adam step size at the start")
    final_learning_rate: float = spec(1e-5, check=positive, doc="end of the cosine decay")
    trace: str = spec("exact", choices=TRACES, doc="Laplacian in the residual")
    probes: int = spec(4, check=at_least(1), doc="Rademacher probes when trace = 'hutchinson'")
    sampling: str = spec("domain", choices=("domain", "paths"),
                         doc="collocation points: all in the domain, or half where the diffusion from it goes")
    seed: int = spec(0, check=seed_range, doc="initial weights and collocation points")
    log_every: int = spec(100, check=at_least(1), doc="record the loss every log_every steps")
    points: int = spec(1500, check=at_least(1), doc="GP interior collocation points (also its kernel centres)")
    iterations: int = spec(6, check=at_least(1), doc="GP Gauss–Newton iterations")
    regularization: float | None = spec(None, check=positive,
                                        doc="GP ridge λ relative to the data term ('none': 1e-5 in float32)")


SURROGATE_KEYS = {
    "pinn": ("kind", "width", "depth", "activation", "terminal_transform", "terminal_smoothing", "input_offset",
             "input_scale", "output_scale", "checkpoint"),
    "gp": ("kind", "kernel", "lengthscale_factor", "checkpoint"),
    "python": ("kind",),
}
TRAINING_KEYS = {
    "pinn": ("steps", "collocation", "terminal_points", "terminal_weight", "learning_rate", "final_learning_rate",
             "trace", "probes", "sampling", "seed", "log_every"),
    "gp": ("points", "terminal_points", "terminal_weight", "iterations", "regularization", "seed"),
    "python": (),
}


@dataclasses.dataclass(frozen=True)
class EvaluationSection:
    points: int = spec(1200, check=at_least(1), doc="test points per repetition")
    seed: int = spec(0, check=seed_range, doc="test points, references and Monte Carlo noise")
    repetitions: int = spec(1, check=at_least(1), doc="independent repetitions (fresh points and noise)")
    chunks: int = spec(4, check=at_least(1), doc="resumable stages per method and repetition")
    batch_size: int = spec(0, check=at_least(0), doc="points per vectorised batch inside a chunk (0: automatic)")
    at: str = spec("domain", choices=("domain", "reference"),
                   doc="test points drawn from the equation's domain, or all at the point of its recorded reference "
                   "u(0, x₀) (equations without a closed form: bsdr, bsir), each with its own Monte Carlo noise")
    reference_samples: int = spec(10_000, check=at_least(2), doc="Monte Carlo samples for reference solutions")
    trace: str = spec("exact", choices=TRACES, doc="Laplacian of the surrogate residual in SCaSML")
    probes: int = spec(4, check=at_least(1), doc="Rademacher probes when trace = 'hutchinson'")


METHOD_KINDS = ("surrogate", "mlp", "scasml")
ESTIMATORS = ("picard", "feynman_kac")
SHRINKAGE = ("none", "sure")


@dataclasses.dataclass(frozen=True)
class MethodSection:
    kind: str = spec(choices=METHOD_KINDS, doc="surrogate alone, plain Monte Carlo (mlp) or SCaSML")
    estimator: str = spec("picard", choices=ESTIMATORS, doc="feynman_kac: linear PDEs only")
    levels: int = spec(2, check=at_least(1), doc="n")
    base: int = spec(10, check=at_least(2), doc="M")
    variant: str = spec("full_history", choices=("full_history", "quadrature"))
    clip: float | None = spec(None, check=positive, doc="clip (u, z) to [-clip, clip] at every level; 'none': off")
    debias: bool = spec(True, doc="remove the variance bias of generators quadratic in z (HJB/LQG; unclipped only)")
    antithetic: bool = spec(False, doc="antithetic pairs (N, -N) of path samples (variance reduction)")
    terminal_factor: int = spec(1, check=at_least(1), doc="picard: K x M^l terminal paths (cheap surrogate values)")
    min_top_samples: int = spec(1, check=at_least(1),
                                doc="picard: at least this many samples in every block of the reported estimate")
    qmc_sets: int = spec(0, check=lambda v: None if v == 0 or v >= 2 else "must be 0 (off) or ≥ 2",
                         doc="picard: terminal paths and level-0 samples as this many shifted Sobol' nets "
                             "(randomised QMC; 0: off)")
    qmc_points: int = spec(1, check=lambda v: None if v >= 1 and v & (v - 1) == 0 else "must be a power of two",
                           doc="picard: at least this many points in each Sobol' net (with qmc_sets)")
    inner_base: int | None = spec(None, check=at_least(2),
                                  doc="picard: base of the nested estimates inside the reported one ('none': base)")
    next_correction: int = spec(0, check=lambda v: None if v >= 0 else "must be 0 (off) or a positive integer",
                                doc="picard: the linearised next Picard correction from the last level's samples, "
                                    "with this many Brownian-bridge points each (0: off; full history, levels >= 2)")
    widen: bool = spec(False, doc="picard: 95 % intervals that include the Picard truncation estimated over each "
                                  "repetition's points (scasml.widen)")
    paths: int = spec(1000, check=at_least(2), doc="Brownian paths per point")
    time_samples: int = spec(1, check=at_least(1), doc="source evaluations per path")
    time_rule: str = spec("random", choices=("random", "gauss_legendre"))
    shrinkage: str = spec("none", choices=SHRINKAGE,
                          doc="scasml only: 'sure' shrinks the defect estimates toward the surrogate (scasml.shrink)")
    target_stderr: float | None = spec(None, check=positive,
                                       doc="adaptive: replicas per point until the stderr of u is at most this")
    target_relative: float | None = spec(None, check=positive,
                                         doc="adaptive: ... or at most this times |u| (either target suffices)")
    max_replicas: int = spec(64, check=at_least(1), doc="adaptive: replicas per point at most (the pilot is one)")
    budget: float | None = spec(None, check=positive,
                                doc="adaptive: function evaluations per point on average, spread over each "
                                    "repetition's points where the pilot's errors are largest (Neyman; one "
                                    "resumable stage per repetition); not with a target")


ADAPTIVE_KEYS = ("target_stderr", "target_relative", "max_replicas", "budget")
# method keys added after the first runs, left out of a resolved config at these defaults (so that earlier runs keep
# their fingerprint and resume)
LATER_KEY_DEFAULTS = {"shrinkage": "none", "target_stderr": None, "target_relative": None, "max_replicas": 64,
                      "budget": None, "antithetic": False, "terminal_factor": 1, "min_top_samples": 1,
                      "qmc_sets": 0, "inner_base": None, "qmc_points": 1, "widen": False,
                      "next_correction": 0}
METHOD_KEYS = {
    "surrogate": ("kind",),
    "picard": ("kind", "estimator", "levels", "base", "variant", "clip", "debias", "antithetic", "terminal_factor",
               "min_top_samples", "qmc_sets", "qmc_points", "inner_base", "next_correction", "shrinkage", "widen",
               *ADAPTIVE_KEYS),
    "feynman_kac": ("kind", "estimator", "paths", "time_samples", "time_rule", "antithetic", "shrinkage",
                    *ADAPTIVE_KEYS),
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
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
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


def build_section(cls, raw: Any, path: str, allowed: tuple[str, ...] | None = None, where: str = "here"):
    """Validate the raw TOML table ``raw`` for section ``cls`` found at dotted ``path``.

    ``allowed``: the keys accepted in this context (default: every field); ``where`` describes the context in the
    message for a field that exists but is not used there (e.g. "with surrogate.kind = 'gp'").
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = tuple(fields if allowed is None else allowed)
    for name in raw:
        if name not in names:
            if name in fields:
                raise ConfigError(f"{path}.{name}: not used {where}; allowed: {', '.join(names)}")
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
            family_keys = {SurrogateSection: SURROGATE_KEYS, TrainingSection: TRAINING_KEYS}.get(cls)
            if family_keys and f.name != "kind":
                users = [k for k, keys in family_keys.items() if f.name in keys]
                notes.append("for surrogate.kind = " + " and ".join(map(repr, users)))
            entry = f"{f.name} = {_default_text(f)}"
            lines.append(f"{entry:<34}# " + "; ".join(notes) if notes else entry)
        lines.append("")
    return "\n".join(lines)
