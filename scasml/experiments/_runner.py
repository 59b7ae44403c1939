"""The experiment pipeline: train → test points → evaluate each method (in chunks) → sweeps → report.

Each step is a cached stage of the run directory (see ``_rundir``): re-running a killed run recomputes nothing
that finished. Chunk keys are derived from the config (see ``_compute``), so resumed and uninterrupted runs
produce the same numbers and the same metrics.json.
"""

from __future__ import annotations

import contextlib
import logging
import time

import jax
import numpy as np

from .. import surrogates
from .._calibrate import truncation_estimate, truncation_share
from .._io import atomic_write_bytes, atomic_write_text
from .._progress import ProgressBar
from .._shrinkage import shrunk_prediction
from .._widen import widened_bounds
from ..surrogates._checkpoint import read_bytes as read_checkpoint_bytes
from ._compute import (
    check_run_memory,
    chunk_layout,
    chunk_slice,
    evaluate_method,
    fit_gp_surrogate,
    method_key,
    test_points,
    timed,
    train_surrogate,
    training_log_csv,
)
from ._config import ExperimentConfig, Method
from ._metrics import MethodResult, Results, SweepResult
from ._rundir import RunDirectory, RunDirectoryError
from ._schema import MethodSection

log = logging.getLogger("scasml.experiments")

_COMPILED: set = set()  # (method signature, chunk length) already compiled in this process


@contextlib.contextmanager
def log_to_file(path):
    """Copy scasml's log records into ``path`` while the context is open."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("scasml")
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def run_experiment(config: ExperimentConfig, out, *, force: bool = False, progress: bool = True):
    """Run (or resume) ``config`` in the folder ``out``; returns the ``Report`` (see ``render_report``)."""
    from ._report import cached_report, render_report

    check_run_memory(config)  # sizes that cannot fit fail here, not deep in XLA
    user = None
    if config.surrogate_family == "python":  # import, build and check it before any file is written
        from ._user import load_user_surrogate

        user = timed(load_user_surrogate, config.surrogate.kind, config.make_pde())
    with RunDirectory.session(out, config, force=force) as (run, resumed), log_to_file(run.path / "run.log"):
        log.info("%s run %r in %s", "resuming" if resumed else "starting", config.name, run.path)
        start = time.perf_counter()
        Pipeline(run, config, progress, user).execute()
        report = cached_report(run, config) or render_report(run, config)
        log.info("finished in %.1f s: %s", time.perf_counter() - start, report.summary)
    return report


class Pipeline:
    """The stages of one run (each skipped when its marker already exists).

    ``user``: (surrogate, seconds) of a ``python:`` surrogate already loaded by ``load_user_surrogate``.
    """

    def __init__(self, run: RunDirectory, config: ExperimentConfig, progress: bool, user=None):
        self.run, self.config, self.progress, self.user = run, config, progress, user
        self.pde = config.make_pde()

    def execute(self) -> None:
        surrogate = self.main_surrogate()
        widened = widened_sources(self.config.methods)
        for r in range(self.config.evaluation.repetitions):
            points = self.points(r)
            for method in own_estimates(self.config.methods):
                key = method_key(self.config, r, method.name)
                self.evaluate(method, surrogate, points, key, f"eval/rep-{r}/{method.name}", f"{method.name} rep {r}",
                              corrections=method.name in widened)
        self.sweeps(surrogate)

    # ---- surrogate ----------------------------------------------------------------------------------------
    def main_surrogate(self):
        if self.config.surrogate_family == "python":
            return self.user_surrogate()
        path = self.run.path / "checkpoint.scasml"
        if self.run.stage_info("train") is None or not path.is_file():
            source = self.config.surrogate.checkpoint
            if source:
                log.info("using the trained surrogate %s", source)
                atomic_write_bytes(path, read_checkpoint_bytes(source))  # a regular, valid checkpoint only
                self.run.finish("train", {"seconds": 0.0, "source": source})
            elif self.config.surrogate_family == "gp":
                self.fit_gp(path)
            else:
                self.train(self.config.training.steps, path, "train", "training.csv")
        else:
            log.info("surrogate: cached (%s)", path.name)
        return surrogates.load(path, self.pde)

    def user_surrogate(self):
        """A ``python:`` surrogate: never trained nor saved; stage 'surrogate' records what was imported."""
        from ._user import describe, load_user_surrogate

        kind = self.config.surrogate.kind
        surrogate, seconds = self.user or timed(load_user_surrogate, kind, self.pde)
        record = describe(kind)
        previous = self.run.stage_info("surrogate")
        if previous is None:
            self.run.finish("surrogate", {"seconds": seconds, **record})
            log.info("surrogate: user function %s (%s), checked in %.1f s", record["function"],
                     record.get("file") or record.get("source_file") or record.get("module"), seconds)
        elif previous.get("source_sha256") != record.get("source_sha256"):
            log.warning("surrogate: %s changed since this run started; finished stages used the earlier version "
                        "(pass --force to start over)", record.get("source_file", kind))
        else:
            log.info("surrogate: user function %s, re-imported", record["function"])
        return surrogate

    def fit_gp(self, path) -> None:
        tr = self.config.training
        log.info("fitting the GP surrogate: %d + %d collocation points, %s kernel, up to %d Gauss-Newton iterations",
                 tr.points, tr.terminal_points, self.config.surrogate.kernel, tr.iterations)
        (surrogate, _, record), seconds = timed(fit_gp_surrogate, self.config, self.pde)
        surrogates.save(path, surrogate, self.pde, training=record)
        self.run.finish("train", {"seconds": seconds, "final_loss": record["final_loss"],
                                  "final_residual_rms": record["final_residual_rms"],
                                  "final_terminal_rms": record["final_terminal_rms"]})
        log.info("fitted in %.1f s: residual RMS %.3e, terminal RMS %.3e", seconds, record["final_residual_rms"],
                 record["final_terminal_rms"])

    def train(self, steps: int, path, stage: str, curve_file: str | None) -> None:
        tr = self.config.training
        state = path.with_name(f"{path.stem}.training-state.npz")  # where an interrupted training continues from
        log.info("training the surrogate: %d steps, %d collocation points%s", steps, tr.collocation,
                 " (continuing from the interrupted training's state)" if state.is_file() else "")
        (surrogate, tlog, record), seconds = timed(train_surrogate, self.config, self.pde, steps=steps,
                                                   progress=self.progress, state_file=state, replace_stale=True)
        if curve_file:
            atomic_write_text(self.run.path / curve_file, training_log_csv(tlog))
        surrogates.save(path, surrogate, self.pde, training=record)
        self.run.finish(stage, {"seconds": seconds, "final_loss": record["final_loss"]})
        state.unlink(missing_ok=True)  # saved and finished: the state is not needed any more
        log.info("trained in %.1f s, final loss %.3e", seconds, record["final_loss"])

    # ---- points and methods -------------------------------------------------------------------------------
    def points(self, repetition: int) -> dict:
        stage = f"points/rep-{repetition}"
        if not self.run.has_results(stage):
            (points, seconds) = timed(test_points, self.config, self.pde, repetition)
            self.run.save_arrays(stage, **points)
            self.run.finish(stage, {"seconds": seconds})
            log.info("repetition %d: %d test points (%s)", repetition, len(points["t"]),
                     "exact solution" if self.pde.has_exact else "Monte Carlo reference")
        return self.run.load_arrays(stage)

    def evaluate(self, method: Method, surrogate, points: dict, key, prefix: str, label: str, limit: int = 0,
                 corrections: bool = False):
        """Evaluate ``method`` chunk by chunk, skipping finished chunks (with ``corrections``, a widened twin reads
        them: only those that stored the Picard corrections, which chunks of an earlier scasml lack; redone, they
        give the same estimates). A method with a ``budget`` runs in one chunk: its Neyman allocation spreads
        the budget over the points it is given, so chunks would make a point's replicas depend on its chunk."""
        t, x = points["t"], points["x"]
        if limit:
            t, x = t[:limit], x[:limit]
        size, n_chunks = chunk_layout(len(t), method_chunks(self.config, method))
        stages = [f"{prefix}/chunk-{c:03d}" for c in range(n_chunks)]
        key_data = np.asarray(jax.random.key_data(key)).tolist()
        todo = [c for c in range(n_chunks)
                if not self.chunk_done(stages[c], key_data, c * size, min(size, len(t) - c * size), corrections)]
        if not todo:
            log.debug("%s: cached", label)
            return
        if len(todo) < n_chunks:
            log.info("%s: resuming, %d of %d chunks already done", label, n_chunks - len(todo), n_chunks)
        else:
            log.info("%s: %s on %d points in %d chunk(s)", label, method.label(), len(t), n_chunks)
        bar = ProgressBar(label, n_chunks, self.progress and method.kind != "surrogate", skipped=n_chunks - len(todo))
        signature = (method.kind, repr(method.estimator()), size)
        for done, c in enumerate(todo, start=n_chunks - len(todo) + 1):
            tc, xc, valid = chunk_slice(t, x, c, size)
            warm = signature in _COMPILED
            (arrays, evaluations), seconds = timed(evaluate_method, method, self.config, self.pde, surrogate, tc, xc,
                                                   key, c * size)  # point i: fold_in(key, i), as in the library
            _COMPILED.add(signature)
            arrays = {k: v[:valid] for k, v in arrays.items()}
            self.run.save_arrays(stages[c], index=np.arange(c * size, c * size + valid), **arrays)
            self.run.finish(stages[c], {"seconds": seconds, "warm": warm, "points": valid, "evaluations": evaluations,
                                        "key_data": key_data, "index_offset": c * size})
            bar.update(done)
        bar.close()

    def chunk_done(self, stage: str, key_data: list, offset: int, points: int, corrections: bool = False) -> bool:
        """Whether ``stage`` holds this chunk's results: its marker records the method key, first point index and
        number of points of the current noise scheme (a chunk of an older scheme or another layout is redone,
        never mixed in), and with ``corrections`` its arrays include the Picard corrections."""
        if not self.run.has_results(stage):
            return False
        info = self.run.stage_info(stage)
        if info.get("key_data") != key_data or info.get("index_offset") != offset or info.get("points") != points:
            return False
        return not corrections or "picard_corrections" in self.run.array_names(stage)

    # ---- sweeps -------------------------------------------------------------------------------------------
    def sweeps(self, surrogate) -> None:
        sweep = self.config.sweep
        if not (sweep.base or sweep.levels or sweep.training_steps):
            return
        points = self.points(0)
        widened = widened_sources(self.config.sweep_methods())
        for axis in ("base", "levels"):
            for value in getattr(sweep, axis):
                for method in own_estimates(self.config.sweep_methods()):
                    variant = method.replace(**{axis: value})
                    key = method_key(self.config, 0, f"{method.name}@{axis}={value}", stream=3)
                    self.evaluate(variant, surrogate, points, key, f"sweep/{axis}-{value}/{method.name}",
                                  f"{method.name} {axis}={value}", limit=sweep.points,
                                  corrections=method.name in widened)
        widened = widened_sources(training_sweep_methods(self.config))
        for steps in sweep.training_steps:
            trained = self.sweep_surrogate(steps)
            for method in own_estimates(training_sweep_methods(self.config)):
                key = method_key(self.config, 0, method.name, stream=4)  # common random numbers across budgets
                self.evaluate(method, trained, points, key, f"sweep/training_steps-{steps}/{method.name}",
                              f"{method.name} trained {steps} steps", limit=sweep.points,
                              corrections=method.name in widened)

    def sweep_surrogate(self, steps: int):
        main = self.run.path / "checkpoint.scasml"
        if steps == self.config.training.steps and not self.config.surrogate.checkpoint:
            return surrogates.load(main, self.pde)
        path = self.run.file("sweep", f"surrogate-{steps}-steps.scasml")
        stage = f"sweep/train-{steps}"
        if self.run.stage_info(stage) is None or not path.is_file():
            self.train(steps, path, stage, None)
        return surrogates.load(path, self.pde)


def estimate_sources(methods) -> dict[str, str]:
    """Method name → the name whose stored Monte Carlo estimates it reads. Shrinkage and widened intervals are
    post-processing, so a method with ``shrinkage`` or ``widen`` whose Monte Carlo options are those of a method
    of ``methods`` without either reuses that method's estimates (no second run; common random numbers); any
    other method reads its own (two identical methods without post-processing stay two independent runs)."""
    plain = {m.options: m.name for m in reversed(methods) if not m.post_processed}
    return {m.name: plain.get(m.monte_carlo_options(), m.name) if m.post_processed else m.name for m in methods}


def widened_sources(methods) -> set[str]:
    """The methods of ``methods`` whose estimates a method with ``widen`` reads."""
    sources = estimate_sources(methods)
    return {sources[m.name] for m in methods if m.options.widen}


def own_estimates(methods) -> list[Method]:
    """The methods of ``methods`` that run their own Monte Carlo (the others reuse a twin's; see
    ``estimate_sources``)."""
    sources = estimate_sources(methods)
    return [m for m in methods if sources[m.name] == m.name]


def training_sweep_methods(config: ExperimentConfig) -> list[Method]:
    """The surrogate alone plus the SCaSML methods being swept (for the convergence curve). Without a surrogate
    method in the config, the surrogate alone is added as "surrogate", or as "_surrogate" (a name no config
    method can have) where a method of another kind is named "surrogate": its stored results are its own."""
    baseline = config.methods_of_kind("surrogate")
    name = "_surrogate" if any(m.name == "surrogate" for m in config.methods) else "surrogate"
    head = [baseline[0]] if baseline else [Method(name, MethodSection(kind="surrogate"))]
    return head + [m for m in config.sweep_methods() if m.kind == "scasml"]


def method_chunks(config: ExperimentConfig, method: Method) -> int:
    """Chunks (resumable stages) of a method's points: ``evaluation.chunks``, or one for a method with a
    ``budget``, whose Neyman allocation spreads the budget over the points of one call."""
    return 1 if method.options.budget is not None else config.evaluation.chunks


# ---- reading results back -------------------------------------------------------------------------------


def _read_method(run: RunDirectory, config: ExperimentConfig, prefix: str, n: int, method: Method, t,
                 horizon: float) -> MethodResult:
    """The stored estimates under ``prefix`` (concatenated over chunks) at times t (n,), shrunk and widened when
    ``method`` asks for it, with the Picard truncation estimated over all n points."""
    _, n_chunks = chunk_layout(n, method_chunks(config, method))
    parts, infos = [], []
    for c in range(n_chunks):
        stage = f"{prefix}/chunk-{c:03d}"
        info = run.stage_info(stage)
        if info is None:
            raise RunDirectoryError(f"{run.path}: {stage} is not finished; resume the run with `scasml run`")
        infos.append(info)
        parts.append(run.load_arrays(stage))
    # the arrays every chunk has (chunks stored by an earlier scasml may lack the corrections)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "index" and all(k in p for p in parts)}
    seconds = float(sum(i["seconds"] for i in infos))
    warm = [i["seconds"] for i in infos if i.get("warm")]
    seconds_warm = float(np.mean(warm) * n_chunks) if warm else seconds
    threshold = truncation = share = None
    if "picard_corrections" in arrays:  # over all the points, whatever the chunks (as calibrate over them at once)
        truncation, spread = truncation_estimate(arrays.pop("picard_corrections"), t, horizon, arrays["stderr"].dtype)
        share = truncation_share(truncation, arrays["stderr"], t < horizon)
    elif method.options.widen:
        raise RunDirectoryError(
            f"{run.path}: method {method.name!r} widens the intervals of the estimates in {prefix}, but they were "
            "stored without the Picard corrections that the truncation is estimated from (by an earlier version "
            "of scasml); `scasml run` on this folder computes them again (the same estimates, with the corrections)")
    if method.options.widen and truncation is not None:
        arrays["truncation"] = spread
        arrays["lower"], arrays["upper"] = widened_bounds(arrays["lower"], arrays["upper"], arrays["stderr"],
                                                          spread, arrays["dof"])
    if method.options.shrinkage == "sure":
        arrays["prediction"], arrays["defect"], threshold = shrunk_prediction(
            arrays["surrogate"], arrays["defect"], arrays["stderr"], arrays["finite"])
    evaluations = infos[0]["evaluations"]
    if "replicas" in arrays:  # adaptive: the counts of one replica × the mean replicas per point
        mean = float(np.mean(arrays["replicas"]))
        evaluations = {k: v * mean for k, v in evaluations.items()}
    return MethodResult(arrays, evaluations, seconds, seconds_warm, threshold, truncation, share)


def read_training_curve(run: RunDirectory) -> dict | None:
    path = run.path / "training.csv"
    if not path.is_file():
        return None
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {"step": data[:, 0], "loss": data[:, 1], "residual_loss": data[:, 2], "terminal_loss": data[:, 3]}


def collect_results(run: RunDirectory, config: ExperimentConfig, horizon: float) -> Results:
    """Read every finished stage back (no computation); raises if the run is incomplete. ``horizon``: the
    equation's T (the truncation estimate is spread over the points ∝ T − t)."""
    reps = config.evaluation.repetitions
    points = []
    for r in range(reps):
        if run.stage_info(f"points/rep-{r}") is None:
            raise RunDirectoryError(f"{run.path}: repetition {r} has no test points yet; resume with `scasml run`")
        points.append(run.load_arrays(f"points/rep-{r}"))
    n = config.evaluation.points
    sources = estimate_sources(config.methods)
    methods = {m.name: [_read_method(run, config, f"eval/rep-{r}/{sources[m.name]}", n, m, points[r]["t"],
                                     horizon) for r in range(reps)] for m in config.methods}
    sweeps = []
    sweep = config.sweep
    k = sweep.points or n
    exact, t = points[0]["exact"][:k], points[0]["t"][:k]
    sources = estimate_sources(config.sweep_methods())
    for axis in ("base", "levels"):
        for value in getattr(sweep, axis):
            for m in config.sweep_methods():
                result = _read_method(run, config, f"sweep/{axis}-{value}/{sources[m.name]}", k, m, t, horizon)
                sweeps.append(SweepResult(axis, value, m.name, m.kind, result, exact))
    trained = training_sweep_methods(config)
    sources = estimate_sources(trained)
    for steps in sweep.training_steps:
        for m in trained:
            result = _read_method(run, config, f"sweep/training_steps-{steps}/{sources[m.name]}", k, m, t,
                                  horizon)
            sweeps.append(SweepResult("training_steps", steps, m.name, m.kind, result, exact))
    train_info = run.stage_info("train")
    stage_seconds = float(sum(run.stage_info(s)["seconds"] for s in run.stages()))
    return Results(points, methods, sweeps, None if train_info is None else train_info["seconds"],
                   read_training_curve(run), stage_seconds)
