"""The numerical work of a run: training, test points with exact/reference values, and method evaluations.

Randomness (all keys derive from the config's seeds, so the same config gives the same numbers):

* surrogate: ``k = fold_in(key(training.seed), TRAINING_STREAM)``; initial weights from ``fold_in(k, 0)``,
  training from ``fold_in(k, 1)`` (continued training: ``fold_in(fold_in(k, 1), steps done before)``); a GP's
  collocation points from ``fold_in(k, 1)``; a user function (surrogate.kind = 'python:…') is checked at points
  from ``key(0)``. The stream keeps training apart from the repetitions' keys when the two seeds are equal (as
  by default): no test point, reference or Monte Carlo draw reuses a training draw.
* repetition r: ``k_r = fold_in(key(evaluation.seed), r)``; test points from ``fold_in(k_r, 0)``, the Monte
  Carlo reference from ``fold_in(k_r, 1)``, method m from ``fold_in(fold_in(k_r, 2), crc32(m))``.
* chunks: a method's points are split into ``evaluation.chunks`` equal chunks (the last padded by repeating
  its final point); each chunk is one call of ``scasml.solve``/``scasml.calibrate`` with the method key and
  ``index_offset`` = the index of its first point, so point i draws its noise from ``fold_in(method key, i)``
  exactly as one library call on all points would: the numbers depend neither on ``evaluation.chunks`` nor on
  where a run was interrupted.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from .._calibrate import calibrate, solve, surrogate_values
from .._derivatives import ExactTrace, HutchinsonTrace
from ..surrogates import PINN, StaleTrainingState, fit_gp, train
from ._config import ExperimentConfig, Method
from ._schema import ConfigError


def name_tag(name: str) -> int:
    """A stable 31-bit integer for a name (used with ``fold_in``)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def make_trace(kind: str, probes: int):
    return ExactTrace() if kind == "exact" else HutchinsonTrace(probes)


# ---- surrogate -----------------------------------------------------------------------------------------


TRAINING_STREAM = 2**31 - 2  # far from the repetition indices r folded into key(evaluation.seed)


def training_keys(seed: int):
    """(initial weights key, training key) of ``training.seed``."""
    base = jax.random.fold_in(jax.random.key(seed), TRAINING_STREAM)
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)


def new_surrogate(config: ExperimentConfig, pde):
    s = config.surrogate
    init_key, _ = training_keys(config.training.seed)
    terminal = pde.smoothed_terminal(s.terminal_smoothing) if s.terminal_transform else None
    return PINN(pde.dim, pde.horizon, init_key, width=s.width, depth=s.depth, activation=s.activation,
                terminal=terminal, input_offset=s.input_offset, input_scale=s.input_scale, output_scale=s.output_scale,
                terminal_smoothing=s.terminal_smoothing)


def train_surrogate(config: ExperimentConfig, pde, surrogate=None, steps: int | None = None, done_before: int = 0,
                    progress: bool = True, state_file=None, replace_stale: bool = False):
    """Train ``surrogate`` (a fresh PINN if None) with the config's budget; returns (surrogate, log, record).
    ``state_file``: where an interrupted training keeps its state and continues from it (``scasml.train``); a
    state of another training there raises ``StaleTrainingState``, or with ``replace_stale`` is removed (with a
    warning in the log) and the training starts afresh."""
    tr = config.training
    steps = steps or tr.steps
    surrogate = new_surrogate(config, pde) if surrogate is None else surrogate
    _, key = training_keys(tr.seed)
    if done_before:
        key = jax.random.fold_in(key, done_before)
    settings = {"steps": steps, "collocation": tr.collocation, "terminal_points": tr.terminal_points,
                "terminal_weight": tr.terminal_weight, "learning_rate": tr.learning_rate,
                "final_learning_rate": min(tr.final_learning_rate, tr.learning_rate),
                "trace": make_trace(tr.trace, tr.probes), "log_every": min(tr.log_every, steps),
                "progress": progress, "sampling": tr.sampling, "state_file": state_file}
    try:
        surrogate, log = train(surrogate, pde, key, **settings)
    except StaleTrainingState as err:
        if not replace_stale:
            raise
        logging.getLogger("scasml.experiments").warning(
            "%s holds the state of another training (the settings, the equation's code or scasml changed?); "
            "training afresh", err.path)
        err.path.unlink()
        surrogate, log = train(surrogate, pde, key, **settings)
    record = {
        "steps": steps, "total_steps": done_before + steps, "collocation": tr.collocation,
        "terminal_points": tr.terminal_points, "learning_rate": tr.learning_rate,
        "final_learning_rate": tr.final_learning_rate, "trace": tr.trace, "sampling": tr.sampling, "seed": tr.seed,
        "final_loss": float(log.loss[-1]), "experiment": config.name,
    }
    return surrogate, log, record


def fit_gp_surrogate(config: ExperimentConfig, pde):
    """Fit the config's GP surrogate (kernel collocation); returns (surrogate, fit log, record)."""
    tr, s = config.training, config.surrogate
    _, key = training_keys(tr.seed)
    try:
        surrogate, log = fit_gp(pde, key, interior=tr.points, terminal=tr.terminal_points, kernel=s.kernel,
                                lengthscale_factor=s.lengthscale_factor, iterations=tr.iterations,
                                regularization=tr.regularization, terminal_weight=tr.terminal_weight)
    except FloatingPointError as err:
        raise ConfigError(f"training: the GP fit failed: {err}") from None
    record = {**log.summary(), "points": tr.points, "terminal_points": tr.terminal_points,
              "iterations_limit": tr.iterations, "lengthscale_factor": s.lengthscale_factor,
              "regularization": log.regularization, "terminal_weight": tr.terminal_weight, "seed": tr.seed,
              "final_loss": float(log.residual_rms[-1] ** 2 + tr.terminal_weight * log.terminal_rms[-1] ** 2),
              "experiment": config.name}
    return surrogate, log, record


def training_log_csv(log) -> str:
    rows = ["step,loss,residual_loss,terminal_loss"]
    columns = zip(log.steps, log.loss, log.residual_loss, log.terminal_loss, strict=True)
    rows += [f"{int(s)},{float(a)!r},{float(b)!r},{float(c)!r}" for s, a, b, c in columns]
    return "\n".join(rows) + "\n"


# ---- test points ---------------------------------------------------------------------------------------


def repetition_key(config: ExperimentConfig, repetition: int):
    return jax.random.fold_in(jax.random.key(config.evaluation.seed), repetition)


def test_points(config: ExperimentConfig, pde, repetition: int) -> dict[str, np.ndarray]:
    """t, x, the exact solution (or Monte Carlo reference) and its standard error (0 when exact)."""
    key = repetition_key(config, repetition)
    if config.evaluation.at == "reference":  # n copies of the recorded point; each index draws its own noise
        ref, n = pde.recorded_reference(), config.evaluation.points
        points = {"t": jnp.full(n, ref.t), "x": jnp.tile(jnp.asarray(ref.x), (n, 1)), "exact": jnp.full(n, ref.value),
                  "exact_stderr": jnp.full(n, ref.stderr)}
        return {k: np.asarray(v) for k, v in points.items()}
    t, x = pde.sample_domain(jax.random.fold_in(key, 0), config.evaluation.points)
    if pde.has_exact:
        exact = jax.jit(jax.vmap(pde.exact))(t, x)
        stderr = jnp.zeros_like(exact)
    else:
        exact, stderr = pde.reference(t, x, jax.random.fold_in(key, 1), samples=config.evaluation.reference_samples)
    return {k: np.asarray(v) for k, v in {"t": t, "x": x, "exact": exact, "exact_stderr": stderr}.items()}


def check_run_memory(config: ExperimentConfig, capacity: float | None = None) -> None:
    """Refuse, before any work, a run whose test points and per-point results cannot fit in memory (``capacity``
    bytes; default: this machine's physical memory): the points of a repetition are drawn at once, and the
    report holds every repetition's results and writes them as text."""
    from .._calibrate import device_memory

    capacity = capacity or device_memory(jax.local_devices()[0])
    if capacity is None:
        return
    ev, d = config.evaluation, config.equation.dim
    methods = len(config.methods)
    per_point = (d + 4) * 4 * 4 + methods * 8 * 8 + (d + 2 + 6 * methods) * 24  # draws, results, CSV text
    need = ev.repetitions * ev.points * per_point
    if need > capacity:
        raise ConfigError(
            f"evaluation.points: {ev.points} test points in d = {d} ({ev.repetitions} repetition(s), {methods} "
            f"method(s)) need about {need / 2**30:.3g} GiB of memory for the points and their results, more than "
            f"this machine's {capacity / 2**30:.3g} GiB; lower evaluation.points (or evaluate on a larger machine)"
        )


# ---- methods -------------------------------------------------------------------------------------------


def method_key(config: ExperimentConfig, repetition: int, name: str, stream: int = 2):
    """Key of a method in a repetition; ``stream`` separates the main comparison (2) from sweeps (3, 4)."""
    base = jax.random.fold_in(repetition_key(config, repetition), stream)
    return jax.random.fold_in(base, name_tag(name))


def chunk_layout(n: int, chunks: int) -> tuple[int, int]:
    """(chunk length, number of chunks) for n points split into at most ``chunks`` equal chunks."""
    size = math.ceil(n / chunks)
    return size, math.ceil(n / size)


def chunk_slice(t, x, index: int, size: int):
    """Points of chunk ``index``, padded to ``size`` by repeating the last point (one compiled shape)."""
    n = len(t)
    start, stop = index * size, min((index + 1) * size, n)
    pad = size - (stop - start)
    tc = np.concatenate([t[start:stop], np.repeat(t[stop - 1 : stop], pad)])
    xc = np.concatenate([x[start:stop], np.repeat(x[stop - 1 : stop], pad, axis=0)])
    return tc, xc, stop - start


def evaluate_method(method: Method, config: ExperimentConfig, pde, surrogate, t, x, key,
                    index_offset: int = 0) -> tuple[dict, dict]:
    """Run one method on points (t, x), the first being point ``index_offset`` of the method's points:
    (arrays, evaluation counts per point).

    Arrays: prediction, stderr (NaN for the surrogate alone), lower/upper 95 % bounds, their degrees of freedom
    (dof), the Picard corrections (N, 3) from which the report estimates the truncation over all points,
    finite, for SCaSML also the surrogate value and the estimated defect, and for adaptive methods the replicas
    per point (the evaluation counts are those of one replica) and, with a target, whether it was met.
    """
    ev = config.evaluation
    batch = ev.batch_size or None
    if method.kind == "surrogate":
        u = surrogate_values(surrogate, jnp.asarray(t), jnp.asarray(x))  # full precision, as in calibrate
        nan = np.full_like(u, np.nan)
        return {"prediction": u, "stderr": nan, "lower": nan, "upper": nan, "finite": np.isfinite(u)}, {
            "surrogate_values": 1
        }
    estimator = method.estimator()
    allocation = method.allocation(len(t))
    with warnings.catch_warnings():  # a chunk's truncation warning: the report estimates it over all points
        warnings.filterwarnings("ignore", "(solve|calibrate): the Picard truncation", RuntimeWarning)
        if method.kind == "mlp":
            est = solve(pde, t, x, estimator, key=key, chunk_size=batch, index_offset=index_offset,
                        allocation=allocation)
        else:
            est = calibrate(surrogate, pde, t, x, estimator, key=key, trace=make_trace(ev.trace, ev.probes),
                            chunk_size=batch, index_offset=index_offset, allocation=allocation)
    arrays = {"prediction": np.asarray(est.u), "stderr": np.asarray(est.stderr), "lower": np.asarray(est.lower),
              "upper": np.asarray(est.upper), "finite": np.asarray(est.finite)}
    if method.kind == "scasml":
        arrays |= {"surrogate": np.asarray(est.surrogate), "defect": np.asarray(est.defect)}
    arrays["dof"] = np.asarray(est.dof)  # degrees of freedom of the variance estimate (Student-t intervals)
    arrays["picard_corrections"] = np.asarray(est.picard_corrections)  # the report's truncation estimate
    if allocation is not None:  # per point: replicas used (evaluations = replicas × the counts), target met
        arrays["replicas"] = np.asarray(est.replicas)
        if est.met is not None:
            arrays["met"] = np.asarray(est.met)
    return arrays, dict(est.evaluations)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
