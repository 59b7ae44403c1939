"""The ``scasml`` command line: train, calibrate, run, report, list.

    scasml run configs/quickstart.toml            # whole experiment → runs/quickstart/report.md
    scasml run quickstart --set training.steps=500 --out runs/qs-500
    scasml report runs/quickstart                 # re-render tables and figures, no recomputation
    scasml train configs/vb-20d.toml -o vb20.scasml [--continue]
    scasml calibrate vb20.scasml --points points.csv [--out predictions.npz]
    scasml calibrate --surrogate python:my_model.py:surrogate --equation vb --dim 20 --points points.csv
    scasml list

Exit status: 0 success, 1 out of memory (or another failure of the JAX runtime), 2 invalid input (config, files,
run directory), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from ._io import transient_lock

log = logging.getLogger("scasml.cli")
_HANDLERS: list[logging.Handler] = []


class CommandError(Exception):
    """A problem with the command's arguments or files (reported without a traceback)."""


# ---- shared setup -----------------------------------------------------------------------------------------


_LOGGERS = ("scasml", "py.warnings")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log scasml messages (and Python warnings) to stderr; run directories add their own log file."""
    teardown_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[scasml] %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    _HANDLERS.append(handler)
    logging.captureWarnings(True)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def teardown_logging() -> None:
    """Undo ``setup_logging`` (so that calling ``main`` in-process leaves the logging state as it was)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for handler in _HANDLERS:
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    _HANDLERS.clear()
    logging.captureWarnings(False)


def enable_compile_cache(option: str | None) -> str | None:
    """Persist compiled XLA programs (a resumed or repeated run skips most compilation). 'none' disables."""
    import jax

    path = option or os.environ.get("SCASML_COMPILE_CACHE")
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "scasml", "xla")
    if path.lower() == "none":
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


def _check_output(path: Path, flag: str, directory: bool = False) -> None:
    """Fail before any work when ``path`` (a file, or a run directory) cannot be written."""
    if directory and path.exists() and not path.is_dir():
        raise CommandError(f"{flag} {path} is a file; give a directory")
    if not directory and path.is_dir():
        raise CommandError(f"{flag} {path} is a directory; give a file name")
    ancestor = (path if directory else path.parent).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise CommandError(f"{flag} {path}: cannot write in {ancestor}")


def _check_points_file(path: str, flag: str) -> None:
    """Fail at once, without opening it, when ``path`` is not a regular file (opening a FIFO blocks)."""
    kind = _file_kind(path)
    if kind == "missing":
        raise CommandError(f"{flag} {path}: no such points file")
    if kind is not None:
        raise CommandError(f"{flag} {path} is {kind}; give a file")


def _file_kind(path) -> str | None:
    """None for a regular file (or a link to one); else what ``path`` is, for a message (nothing is opened)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file (a FIFO, device or socket)"


def _config_path(args) -> Path:
    """The config file of ``args.config`` (a path or a config name); a path that exists but is not a regular file
    (a FIFO would block the reader) is refused as such, not reported missing."""
    from .experiments import ConfigError, resolve_config_path

    try:
        return resolve_config_path(args.config)
    except ConfigError:
        kind = _file_kind(args.config)
        if kind not in (None, "missing"):
            raise CommandError(f"{args.config} is {kind}; give a config file (or a config name)") from None
        raise


def _config(args, path: Path | None = None):
    from .experiments import load_config

    return load_config(path or _config_path(args), args.set)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (also through symbolic or hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


# ---- commands ---------------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from .experiments import run_experiment

    config = _config(args)
    out = Path(args.out) if args.out else Path("runs") / config.name
    _check_output(out, "--out", directory=True)
    cache = enable_compile_cache(args.compile_cache)
    log.debug("compile cache: %s", cache)
    start = time.perf_counter()
    report = run_experiment(config, out, force=args.force, progress=not args.quiet)
    print(report.table)
    print()
    print(f"{report.summary}; wall {time.perf_counter() - start:.0f} s; report: {out / 'report.md'}")
    return 0


def cmd_report(args) -> int:
    from .experiments import RunDirectory, render_report
    from .experiments._runner import log_to_file

    run = RunDirectory.open(args.dir)
    with run.lock(), log_to_file(run.path / "run.log"):
        run.remove_temporary_files()  # left by a killed write; none is in flight while the lock is held
        report = render_report(run)
    print(report.table)
    print()
    print(f"{report.summary}; report: {Path(args.dir) / 'report.md'}")
    return 0


def _not_a_checkpoint(path: Path) -> str | None:
    """Why the existing file ``path`` is not a scasml checkpoint (None: it is one)."""
    from .surrogates import CheckpointError, read_header

    try:
        read_header(path)
    except CheckpointError as err:
        return str(err)
    return None


def _check_replaceable(out: Path) -> None:
    """--force replaces a checkpoint that scasml wrote, never another file (a config, data, a broken link)."""
    if os.path.lexists(out):
        why = _not_a_checkpoint(out)
        if why is not None:
            raise CommandError(f"--force replaces only a scasml checkpoint, and {out} is not one ({why}); choose "
                               "another -o/--output, or move the file away yourself")


def _save_new(args, out: Path, overwrite: bool, surrogate, pde, record: dict) -> None:
    """Save to ``out`` (replacing it only with ``overwrite``, and then only a checkpoint); if a file of that name
    appeared meanwhile (or was replaced by another kind of file), keep it and save beside it under a new name,
    then refuse with both names."""
    from .surrogates import save

    try:
        if overwrite and os.path.lexists(out) and _not_a_checkpoint(out) is not None:
            raise FileExistsError(out)
        save(out, surrogate, pde, training=record, overwrite=overwrite)
        args.written = out
    except FileExistsError:
        aside = out.with_name(f"{out.stem}.{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}{out.suffix}")
        save(aside, surrogate, pde, training=record, overwrite=False)
        args.written = aside
        raise CommandError(f"{out} was created (or replaced by a file that is not a checkpoint) while training and "
                           f"is left as it is; the new surrogate is saved as {aside}") from None


def _check_not_config(out: Path, config_path: Path) -> None:
    if _same_file(out, config_path):
        raise CommandError(f"-o/--output {out} is the config file itself; give the checkpoint another name (the "
                           "config would be replaced)")


@contextlib.contextmanager
def _output_lock(out: Path):
    """An exclusive lock on the output ``out`` while a surrogate is trained for it (the file ``<out>.lock``, there
    only while it is held), so that a second ``scasml train`` to the same output is refused at once instead of
    sharing its training state and racing it to the checkpoint."""
    lock = out.with_name(f"{out.name}.lock")
    busy = lambda: CommandError(f"{out} is being trained by another scasml process; wait for it to end, or choose "
                                "another -o/--output")
    unopenable = lambda err: CommandError(f"cannot lock {out} ({lock}): {err.strerror}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with transient_lock(lock, busy, unopenable):
        yield


def cmd_train(args) -> int:
    config_path = _config_path(args)
    config = _config(args, config_path)
    out = Path(args.output or f"{config.name}.scasml")
    _check_not_config(out, config_path)
    _check_output(out, "--output")
    if args.resume and config.surrogate_family == "pinn" and not out.is_file():
        raise CommandError(f"--continue: no checkpoint at {out} to continue")
    with _output_lock(out):  # also a --continue: one of two trainings of the same checkpoint would lose its steps
        return _train(args, config, out)


def _train(args, config, out: Path) -> int:
    from .experiments._compute import train_surrogate
    from .surrogates import StaleTrainingState, load, read_header

    if config.surrogate_family == "python":
        raise CommandError(f"surrogate.kind = {config.surrogate.kind!r} is a user function: there is nothing to train "
                           "(use it directly with `scasml run` or `scasml calibrate --surrogate`)")
    pde = config.make_pde()
    _check_output(out, "--output")
    if config.surrogate_family == "gp":
        return _fit_gp(args, config, pde, out)
    surrogate, previous, done_before = None, None, 0
    if args.resume:
        if not out.is_file():
            raise CommandError(f"--continue: no checkpoint at {out} to continue")
        previous = read_header(out).get("training", {})
        done_before = int(previous.get("total_steps", previous.get("steps", 0)))
        surrogate = load(out, pde)
        stored = surrogate.architecture()
        wanted = {k: getattr(config.surrogate, k) for k in ("width", "depth", "activation", "terminal_transform")}
        differ = [f"{k} {stored.get(k)!r} in the checkpoint, {v!r} in the config" for k, v in wanted.items()
                  if stored.get(k) != v]
        if differ:
            raise CommandError(f"--continue: {out} has another architecture ({'; '.join(differ)}); train a new "
                               "checkpoint (another -o) or drop the surrogate settings")
        log.info("continuing %s after %d steps", out, done_before)
    elif out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --continue to train it further or --force to overwrite it")
    elif args.force:
        _check_replaceable(out)
    enable_compile_cache(args.compile_cache)
    args.state = out.with_name(f"{out.name}.training-state.npz")  # where an interrupted training continues from
    if args.state.is_file():
        log.info("continuing the interrupted training from %s", args.state)
    try:  # --force trains afresh over another training's state
        surrogate, tlog, record = train_surrogate(config, pde, surrogate=surrogate, done_before=done_before,
                                                  progress=not args.quiet, state_file=args.state,
                                                  replace_stale=args.force)
    except StaleTrainingState as err:
        raise CommandError(f"{err.path} holds the state of another training (other settings, equation or starting "
                           "weights); pass --force to train afresh (it is replaced), or remove it") from None
    if previous is not None:
        record["continued_from"] = previous
    record["seconds"] = round(tlog.seconds, 3)
    _save_new(args, out, args.force or args.resume, surrogate, pde, record)
    args.state.unlink(missing_ok=True)  # saved: the state is not needed any more
    print(f"saved {out}: {record['total_steps']} steps in total, final loss {record['final_loss']:.3e} "
          f"({tlog.seconds:.1f} s)")
    return 0


def _fit_gp(args, config, pde, out: Path) -> int:
    from .experiments._compute import fit_gp_surrogate

    if args.resume:
        raise CommandError("--continue: a GP surrogate is fitted in one go, it cannot be trained further")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to overwrite it")
    if args.force:
        _check_replaceable(out)
    enable_compile_cache(args.compile_cache)
    surrogate, fit, record = fit_gp_surrogate(config, pde)
    _save_new(args, out, args.force, surrogate, pde, record)
    print(f"saved {out}: GP with {surrogate.n_centres} centres, residual RMS {record['final_residual_rms']:.3e}, "
          f"terminal RMS {record['final_terminal_rms']:.3e} ({fit.seconds:.1f} s)")
    return 0


def _calibration_surrogate(args):
    """(pde, surrogate) from the CHECKPOINT argument or from --surrogate/--equation/--dim."""
    from . import equations
    from .surrogates import load, read_header

    if args.surrogate is None:
        if args.checkpoint is None:
            raise CommandError("give a CHECKPOINT, or --surrogate python:module:function with --equation and --dim")
        if args.equation is not None or args.dim is not None:
            raise CommandError("--equation and --dim go with --surrogate; a checkpoint names its own PDE")
        header = read_header(args.checkpoint)
        if not header.get("pde"):
            raise CommandError(f"{args.checkpoint} records no PDE; save it with "
                               "scasml.save_surrogate(path, model, pde)")
        pde = equations.from_parameters(header["pde"])
        return pde, load(args.checkpoint, pde)
    from .experiments import ConfigError
    from .experiments._schema import surrogate_family
    from .experiments._user import load_user_surrogate, resolve_kind

    if args.checkpoint is not None:
        raise CommandError(f"give either a CHECKPOINT ({args.checkpoint}) or --surrogate, not both")
    missing = [flag for flag, value in (("--equation", args.equation), ("--dim", args.dim)) if value is None]
    if missing:
        raise CommandError(f"--surrogate needs {' and '.join(missing)} (the PDE it approximates)")
    try:
        if surrogate_family(args.surrogate) != "python":
            raise ValueError("expected python:module:function or python:path/to/file.py:function")
    except ValueError as err:
        raise CommandError(f"--surrogate {args.surrogate!r}: {err} (a checkpoint is given as CHECKPOINT)") from None
    if args.dim < 1:
        raise CommandError(f"--dim must be positive, got {args.dim}")
    from .experiments import points_dim

    width = points_dim(args.points)  # before the PDE and the surrogate are built (and checked) at that size
    if width is not None and width != args.dim:
        raise CommandError(f"--dim {args.dim}, but the points in {args.points} are {width}-dimensional (t and "
                           f"{width} coordinates); give --dim {width} or other points")
    if args.equation.startswith("python:"):
        from .experiments._user import load_user_pde

        try:
            pde = load_user_pde(resolve_kind(args.equation), args.dim)
        except (ConfigError, ValueError) as err:
            message = str(err).replace("equation.name:", "--equation:", 1).replace("equation.dim:", "--dim:", 1)
            raise CommandError(message) from None
    elif args.equation.lower() not in equations.available():
        raise CommandError(f"--equation {args.equation!r}: unknown; available: {', '.join(equations.available())}; "
                           "or your own PDE as python:path/to/file.py:pde")
    else:
        pde = equations.get(args.equation, dim=args.dim)
    try:
        return pde, load_user_surrogate(resolve_kind(args.surrogate), pde)
    except ConfigError as err:
        raise CommandError(str(err).replace("surrogate.kind:", "--surrogate:", 1)) from None


# calibrate's defaults where a flag is not given (argparse's default is None, to tell a given flag from a default)
DEFAULT_PATHS, DEFAULT_LEVELS, DEFAULT_BASE, DEFAULT_PROBES = 1000, 2, 10, 4
_PICARD_ONLY = ("levels", "base", "variant", "clip", "terminal_factor", "min_top_samples", "qmc_sets", "qmc_points",
                "inner_base", "next_correction")
_NONFINITE = "calibrate: the Monte Carlo estimate is not finite"  # its warning names a chunk's points: held back


def _check_surrogate_values(surrogate, pde, t, x) -> None:
    """Refuse a surrogate that is not finite at some of the points, naming the file's point (calibrate checks each
    chunk, with the chunk's indices and padding)."""
    import numpy as np

    from ._calibrate import surrogate_values
    from .surrogates import check_surrogate

    bad = ~np.isfinite(surrogate_values(check_surrogate(surrogate, pde), t, x))
    if bad.any():
        first = int(np.argmax(bad))
        raise CommandError(f"the surrogate returned non-finite values at {int(bad.sum())} of the {len(t)} points "
                           f"(first: point {first}, t = {float(t[first]):g}); check it there")


def _warn_nonfinite(finite, t, estimator) -> None:
    """One warning for the points (of the file, all chunks together) whose estimate is not finite."""
    import numpy as np

    from .estimators import MultilevelPicard

    bad = int(np.sum(~finite))
    if bad:
        first = int(np.argmin(finite))
        remedy = "--clip C, fewer --levels, or " if isinstance(estimator, MultilevelPicard) else ""
        log.warning("calibrate: the Monte Carlo estimate is not finite at %d of the %d points (u, z, a standard "
                    "error or the 95%% interval; first: point %d, t = %g); they are 0 in the finite column. "
                    "Consider %schecking the surrogate and equation there (does a solution exist?).",
                    bad, len(finite), first, float(t[first]), remedy)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def cmd_calibrate(args) -> int:
    import jax
    import numpy as np

    from ._calibrate import CPU_LANES, calibrate, truncation_estimate, truncation_message
    from ._defect import law_of_defect
    from ._progress import ProgressBar
    from ._shrinkage import shrunk_prediction
    from ._widen import widened_bounds
    from .estimators import FeynmanKac, MultilevelPicard, default_estimator
    from .estimators._picard import REDUCED_OPTIONS, next_correction_applies
    from .experiments import read_points, write_predictions
    from .experiments._compute import chunk_layout, chunk_slice, make_trace

    _check_points_file(args.points, "--points")
    pde, surrogate = _calibration_surrogate(args)
    t, x = read_points(args.points, pde.dim, pde.horizon)
    t, x = t.astype(np.dtype(pde.dtype)), x.astype(np.dtype(pde.dtype))
    points = Path(args.points)
    out = Path(args.out) if args.out else points.with_name(points.stem + ".calibrated.csv")
    if out.suffix.lower() not in (".csv", ".npz"):
        raise CommandError(f"--out {out}: use a .csv or .npz file name")
    _check_output(out, "--out")
    if out.resolve() == points.resolve() or (out.exists() and os.path.samefile(out, points)):
        raise CommandError(f"--out {out} is the points file itself; choose another name (it would be replaced)")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to overwrite it")
    try:
        clip = None if args.clip in (None, "none") else float(args.clip)
    except ValueError:
        raise CommandError(f"--clip must be a number or 'none', got {args.clip!r}") from None
    if args.probes is not None and args.trace != "hutchinson":
        raise CommandError("--probes applies to --trace hutchinson; the exact trace uses no probes")
    if args.probes is not None and args.probes < 1:
        raise CommandError(f"--probes must be positive, got {args.probes}")
    # multilevel Picard options given on the command line; the others keep MultilevelPicard's defaults
    options = ("antithetic", "terminal_factor", "min_top_samples", "qmc_sets", "qmc_points", "inner_base",
               "next_correction")
    given = {key: getattr(args, key) for key in options if getattr(args, key) is not None}
    candidates = None  # --recommend: the estimators it chooses among
    defect = law_of_defect(pde, surrogate)  # what the estimator solves (for the default and the truncation warning)
    try:
        if args.estimator == "feynman-kac":
            picard_only = [_flag(key) for key in _PICARD_ONLY if getattr(args, key) is not None]
            if picard_only:
                raise CommandError(f"{', '.join(picard_only)} appl{'ies' if len(picard_only) == 1 else 'y'} to "
                                   "--estimator picard (multilevel Picard), not feynman-kac")
            if args.recommend:
                raise CommandError("--recommend chooses multilevel Picard's levels and base; it does not apply to "
                                   "--estimator feynman-kac (set its --paths, or use a target or budget alone)")
            if not pde.is_linear:
                raise CommandError(f"--estimator feynman-kac needs a linear PDE (f independent of u and z), but "
                                   f"{pde.name} is semilinear; use --estimator picard")
            paths = DEFAULT_PATHS if args.paths is None else args.paths
            if paths < 1:
                raise CommandError(f"--paths must be positive, got {paths}")
            antithetic = bool(args.antithetic)
            estimator = FeynmanKac(paths=paths, antithetic=antithetic)
            described = f"FeynmanKac(paths={paths}{', antithetic=True' if antithetic else ''})"
        else:
            if args.paths is not None:
                raise CommandError("--paths applies to --estimator feynman-kac; multilevel Picard's samples are set "
                                   "by --levels and --base")
            if args.variant is not None:
                given = {"variant": args.variant, **given}
            if clip is not None:
                given = {"clip": clip, **given}
            if args.recommend:
                fixed = [flag for flag, v in (("--levels", args.levels), ("--base", args.base)) if v is not None]
                if fixed:
                    raise CommandError(f"--recommend chooses levels and base; drop {' and '.join(fixed)}")
                from ._recommend import DEFAULT_CANDIDATES

                candidates = tuple(MultilevelPicard(c.levels, c.base, **given) for c in DEFAULT_CANDIDATES)
                estimator, described = None, None
            else:
                chosen = args.levels is not None or args.base is not None or given
                levels = DEFAULT_LEVELS if args.levels is None else args.levels
                base = DEFAULT_BASE if args.base is None else args.base
                if not chosen:  # nothing chosen: the API's default, by its options
                    default = default_estimator(defect)
                    levels, base = default.levels, default.base
                    given = {key: getattr(default, key) for key in REDUCED_OPTIONS
                             if getattr(default, key) != getattr(MultilevelPicard(), key)}
                estimator = MultilevelPicard(levels=levels, base=base, **given)
                extra = "".join(f", {key}={value!r}" for key, value in given.items())
                described = f"MultilevelPicard(levels={levels}, base={base}{extra}){'' if chosen else ' (the default)'}"
    except ValueError as err:
        raise CommandError(str(err)) from None
    enable_compile_cache(args.compile_cache)
    if args.chunk_points < 1:
        raise CommandError(f"--chunk-points must be positive, got {args.chunk_points}")
    if not 0 <= args.seed < 2**32:
        raise CommandError(f"--seed must lie in [0, 2³²) (jax.random.key keeps 32 bits), got {args.seed}")
    key = jax.random.key(args.seed)
    allocation = _allocation(args)
    trace = make_trace(args.trace, DEFAULT_PROBES if args.probes is None else args.probes)
    if args.recommend and allocation is None:
        raise CommandError("--recommend chooses (levels, base) for a target or a budget: give --target-stderr, "
                           "--target-relative or --budget")
    with warnings.catch_warnings():
        # a chunk's (or the pilot's) warnings of the truncation and of non-finite estimates count and index the
        # points of that call (padded chunks): the warnings over all points follow
        warnings.filterwarnings("ignore", "calibrate: the Picard truncation", RuntimeWarning)
        warnings.filterwarnings("ignore", _NONFINITE, RuntimeWarning)
        if args.recommend:
            from ._recommend import recommend

            recommendation = recommend(surrogate, pde, t, x, allocation, key=jax.random.fold_in(key, 2**31 - 1),
                                       trace=trace, candidates=candidates)
            print(recommendation)
            estimator = recommendation.estimator
            described = repr(estimator)
        start = time.perf_counter()
        if allocation is not None:  # one call: the allocation is decided over all points (a budget is shared)
            prediction = calibrate(surrogate, pde, t, x, estimator, key=key, trace=trace, allocation=allocation,
                                   progress=not args.quiet)
            parts = [jax.tree.map(np.asarray, prediction)]
        else:
            size, _ = chunk_layout(len(t), -(-len(t) // args.chunk_points))
            size = -(-size // CPU_LANES) * CPU_LANES  # chunks start at multiples of the vector width (see calibrate)
            n_chunks = -(-len(t) // size)
            _check_surrogate_values(surrogate, pde, t, x)  # over all points: a chunk's check counts its own
            parts = []
            bar = ProgressBar("calibrate", n_chunks, not args.quiet)
            for c in range(n_chunks):  # point i uses fold_in(key(seed), i), whatever --chunk-points
                tc, xc, valid = chunk_slice(t, x, c, size)  # equal chunk shapes: one compilation
                prediction = calibrate(surrogate, pde, tc, xc, estimator, key=key, index_offset=c * size,
                                       trace=trace)
                parts.append(jax.tree.map(lambda a, valid=valid: np.asarray(a)[:valid], prediction))
                bar.update(c + 1)
            bar.close()
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    _warn_nonfinite(cat("finite"), t, estimator)
    # the truncation estimate pools all points, whatever --chunk-points: calibrate's estimate over them at once
    truncation, spread = truncation_estimate(cat("picard_corrections"), t, pde.horizon, cat("stderr").dtype)
    message = truncation_message("scasml calibrate", estimator, truncation, cat("stderr"), t < pde.horizon,
                                 remedy="--widen adds it to the intervals",
                                 next_correction_applies=next_correction_applies(defect))
    if message and not args.widen:
        log.warning(message)
    columns = {"t": t, "surrogate": cat("surrogate"), "defect": cat("defect"), "u": cat("u"),
               "stderr": cat("stderr"), "lower": cat("lower"), "upper": cat("upper"), "finite": cat("finite")}
    if args.widen and truncation is not None:  # over all points at once (the estimate pools the batch)
        columns["truncation"] = spread
        columns["lower"], columns["upper"] = widened_bounds(columns["lower"], columns["upper"], columns["stderr"],
                                                            columns["truncation"], cat("dof"))
    if allocation is not None:
        columns["replicas"] = cat("replicas")
        if prediction.met is not None:
            columns["met"] = cat("met")
    shrunk = ""
    if args.shrinkage == "sure":  # over all points at once (the threshold is chosen per batch)
        columns["u"], columns["defect"], threshold = shrunk_prediction(columns["surrogate"], columns["defect"],
                                                                      columns["stderr"], columns["finite"])
        shrunk = f"; SURE shrinkage threshold {threshold:.3g} standard errors"
    if pde.has_exact:
        columns["exact"] = np.asarray(jax.vmap(pde.exact)(t, x))
    try:
        write_predictions(out, columns, x, overwrite=args.force)
        args.written = out
    except FileExistsError:
        raise CommandError(f"{out} was created while calibrating; it is left as it is (pass --force to overwrite "
                           "it, or choose another --out)") from None
    inside = "in the intervals: --widen" if args.widen else "not in the intervals"
    truncated = "" if truncation is None else f"; Picard truncation ≈ {truncation:.2e} (RMS, {inside})"
    if args.widen and truncation is None:
        truncated = ("; --widen: no Picard truncation estimate (Feynman-Kac, n = 1, a linear PDE or fewer than 32 "
                     "points), intervals unchanged")
    print(f"calibrated {len(t)} points with {described} in {time.perf_counter() - start:.1f} s; mean stderr "
          f"{np.nanmean(columns['stderr']):.2e}{truncated}{shrunk}; wrote {out}")
    if allocation is not None:
        print(prediction.summary)
    return 0


def _allocation(args):
    """The per-point budget rule of --target-stderr/--target-relative/--max-replicas/--budget, or None."""
    import math

    from ._adaptive import Budget, TargetStderr

    for flag, value in (("--target-stderr", args.target_stderr), ("--target-relative", args.target_relative),
                        ("--budget", args.budget)):
        if value is not None and not 0 < value < math.inf:
            raise CommandError(f"{flag} must be a positive finite number, got {value}")
    if args.max_replicas is not None and args.max_replicas < 1:
        raise CommandError(f"--max-replicas must be at least 1 (the pilot is one replica), got {args.max_replicas}")
    targets = args.target_stderr is not None or args.target_relative is not None
    if args.budget is not None and targets:
        raise CommandError("give either --budget or a target (--target-stderr/--target-relative), not both")
    if args.max_replicas is not None and not targets:
        raise CommandError("--max-replicas caps a target: give --target-stderr and/or --target-relative")
    if args.budget is not None:
        return Budget(evaluations=args.budget)
    if targets:
        cap = {} if args.max_replicas is None else {"max_replicas": args.max_replicas}
        return TargetStderr(absolute=args.target_stderr, relative=args.target_relative, **cap)
    return None


def cmd_list(args) -> int:
    from . import equations
    from .experiments import ConfigError, config_dirs, load_config

    if args.configs and args.keys:
        raise CommandError("--configs lists the configs of a directory; --keys prints the config keys: give one")
    if args.configs:
        kind = _file_kind(args.configs)
        if kind != "a directory":
            what = ": no such directory" if kind == "missing" else f" is {kind or 'a file'}"
            raise CommandError(f"--configs {args.configs}{what}; give a directory of config files")
    if args.keys:
        from .experiments._schema import config_reference

        print(config_reference())
        return 0
    print("equations:")
    for name in equations.available():
        pde = equations.get(name, dim=2)
        solution = "exact solution" if pde.has_exact else "Monte Carlo reference" if hasattr(pde, "reference") \
            else "u(0, x₀) at d = 100" if equations.get(name, dim=100).recorded_reference() is not None \
            else "no reference"
        doc = (type(pde).__doc__ or "").strip().splitlines()[0]
        doc = doc if len(doc) <= 80 else doc[:79] + "…"
        print(f"  {name:<6} {f'T = {pde.horizon:g}':<8} {solution:<22} {doc}")
    dirs = [Path(args.configs)] if args.configs else config_dirs()
    for d in dirs:
        print(f"\nconfigs in {d}:")
        files = sorted(d.glob("*.toml"))
        if not files:
            print("  (none)")
        for path in files:
            kind = _file_kind(path)
            if kind is not None:  # never opened: reading a FIFO would block
                print(f"  {path.stem:<16} SKIPPED: {path.name} is {kind}")
                continue
            try:
                c = load_config(path)
                label, dim = c.equation_label.lower(), f"d={c.equation.dim}"
                print(f"  {path.stem:<16} {label:<4} {dim:<6} {c.experiment.description}")
            except ConfigError as err:
                print(f"  {path.stem:<16} INVALID: {err}")
    return 0


# ---- parser -----------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, cache: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars; only warnings on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    if cache:
        p.add_argument("--compile-cache", metavar="DIR", default=None,
                       help="persistent XLA compilation cache (default: $SCASML_COMPILE_CACHE or ~/.cache/scasml/xla;"
                            " 'none' disables)")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config value, e.g. --set training.steps=500 --set methods.scasml.clip=none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scasml", description="Simulation-calibrated scientific machine learning: "
                                     "train surrogates, calibrate them by Monte Carlo, run reproducible experiments.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"scasml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run (or resume) a whole experiment from a config",
                       description="Train, evaluate every method, compute statistics, draw figures and write "
                       "report.md in a run directory. Re-running resumes an interrupted run; nothing finished "
                       "is recomputed.")
    p.add_argument("config", help="a config file, or a config's name as `scasml list` shows it (e.g. quickstart)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<experiment name>)")
    p.add_argument("--force", action="store_true", help="delete an existing run of a different config in DIR "
                   "(only if DIR holds nothing else; a run of the same config resumes)")
    _overrides(p)
    _common(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("report", help="re-render tables, figures and report.md of a finished run",
                       description="Recompute metrics.json, timings.json, results/, figures/ and report.md from the "
                       "saved stage results of DIR, without training or Monte Carlo.")
    p.add_argument("dir", help="a run directory")
    _common(p, cache=False)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("train", help="train (or continue training) a surrogate and save its checkpoint",
                       description="Train the config's surrogate with its training budget and save a checkpoint. "
                       "While it trains, its state after every block of training.log_every steps is kept in "
                       "PATH.training-state.npz: an interrupted training run again with the same command continues "
                       "from there (to the same weights as an uninterrupted one).")
    p.add_argument("config", help="a config file or config name")
    p.add_argument("-o", "--output", metavar="PATH", help="checkpoint path (default: <experiment name>.scasml)")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="load the checkpoint at --output and train it for another training.steps steps, with a "
                   "fresh optimizer state and learning-rate schedule (a second training run from the saved weights, "
                   "not the resumption of an interrupted one: N + N steps differ from 2N)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    _overrides(p)
    _common(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("calibrate", help="SCaSML-corrected predictions at your own points",
                       description="Load a checkpoint (its header names the PDE) or a Python function (--surrogate "
                       "with --equation and --dim), read points (CSV with columns t, "
                       "x0..x{d-1} or d+1 unnamed columns; .npy of shape (N, d+1); .npz with t and x) and write "
                       "surrogate, defect, corrected u, stderr and the 95% interval [lower, upper] as CSV or NPZ.")
    p.add_argument("checkpoint", nargs="?", help="a .scasml checkpoint (or use --surrogate)")
    p.add_argument("--surrogate", metavar="python:MODULE:FUNCTION",
                   help="instead of a checkpoint: a function u(t, x) or factory f(pde) returning one, as "
                   "python:module:function or python:path/to/file.py:function (needs --equation and --dim)")
    p.add_argument("--equation", metavar="NAME", help="with --surrogate: the equation (see `scasml list`), or your "
                   "own PDE as python:module:name or python:path/to/file.py:name (a PDE, or a factory f(dim))")
    p.add_argument("--dim", type=int, metavar="D", help="with --surrogate: its dimension d")
    p.add_argument("--points", required=True, metavar="FILE", help="points file (.csv, .npy or .npz)")
    p.add_argument("--out", metavar="FILE", help="output .csv or .npz (default: <points>.calibrated.csv)")
    p.add_argument("--estimator", default="picard", choices=("picard", "feynman-kac"),
                   help="picard: multilevel Picard (any PDE); feynman-kac: plain Monte Carlo of the Feynman–Kac "
                   "formula (linear PDEs only; the defect PDE of a linear PDE is linear)")
    p.add_argument("--paths", type=int, default=None, help="Feynman–Kac paths per point (default 1000)")
    p.add_argument("--levels", type=int, default=None, help="multilevel Picard levels n (default 2). With none of "
                   "--levels, --base, --variant, --clip and the options below: scasml.default_estimator (n = 2, "
                   "M = 10, with antithetic pairs, 8 nets of 32, 40 top samples and 4 next-correction bridge points "
                   "under Brownian or geometric Brownian dynamics; else plain); with any of them, the others keep "
                   "MultilevelPicard's defaults (no variance reduction)")
    p.add_argument("--base", type=int, default=None, help="multilevel Picard base M (default 10)")
    p.add_argument("--variant", default=None, choices=("full_history", "quadrature"),
                   help="multilevel Picard: random times (full_history, default) or Gauss–Legendre nodes (quadrature)")
    p.add_argument("--clip", default=None, help="multilevel Picard: clip (u, z) at every level to [-c, c] "
                   "(default: none)")
    p.add_argument("--antithetic", action=argparse.BooleanOptionalAction, default=None,
                   help="antithetic pairs (N, -N) of path samples (default: off)")
    p.add_argument("--terminal-factor", type=int, default=None, metavar="K",
                   help="multilevel Picard: K x M^l terminal paths (cheap surrogate values; default 1)")
    p.add_argument("--min-top-samples", type=int, default=None, metavar="S",
                   help="multilevel Picard: at least S samples in every block of the reported estimate (default 1)")
    p.add_argument("--qmc-sets", type=int, default=None, metavar="R",
                   help="multilevel Picard: terminal paths and level-0 samples as R randomly shifted Sobol' nets "
                   "(randomised quasi-Monte Carlo; standard error over the nets; default 0: off)")
    p.add_argument("--qmc-points", type=int, default=None, metavar="P",
                   help="multilevel Picard: at least P points (a power of two) in each net of --qmc-sets (default 1)")
    p.add_argument("--inner-base", type=int, default=None, metavar="B",
                   help="multilevel Picard: base of the nested estimates inside the reported one (default: --base)")
    p.add_argument("--next-correction", type=int, default=None, metavar="K",
                   help="multilevel Picard, full history, n >= 2: add the linearised next Picard correction, "
                   "estimated from the last level's samples with K Brownian-bridge points each (removes most of the "
                   "truncation u - u_n; default 0: off)")
    p.add_argument("--shrinkage", default="none", choices=("none", "sure"),
                   help="sure: shrink the defect estimates toward the surrogate, threshold chosen by SURE over all "
                   "points (lower summed error where many corrections are within noise; see scasml.shrink)")
    p.add_argument("--widen", action="store_true",
                   help="multilevel Picard, n >= 2: add the Picard truncation, estimated over all points and spread "
                   "over them in proportion to T - t, to the 95%% intervals (see scasml.widen); adds a truncation "
                   "column")
    p.add_argument("--target-stderr", type=float, metavar="S",
                   help="adaptive: replicas per point until the standard error of u is at most S")
    p.add_argument("--target-relative", type=float, metavar="R",
                   help="adaptive: ... or at most R·|u| (either target suffices)")
    p.add_argument("--max-replicas", type=int, metavar="K", help="adaptive: at most K replicas per point (default 64)")
    p.add_argument("--budget", type=float, metavar="EVALS",
                   help="adaptive: EVALS function evaluations in all, spent where the pilot's errors are largest")
    p.add_argument("--recommend", action="store_true",
                   help="adaptive, multilevel Picard: choose levels and base for the target or budget from a "
                   "pilot (prints why); the other estimator options apply to every candidate")
    p.add_argument("--trace", default="exact", choices=("exact", "hutchinson"), help="Laplacian of the residual")
    p.add_argument("--probes", type=int, default=None, help="with --trace hutchinson: probes (default 4)")
    p.add_argument("--seed", type=int, default=0,
                   help="Monte Carlo key jax.random.key(SEED); point i draws from fold_in(key, i) (default 0)")
    p.add_argument("--chunk-points", type=int, default=256,
                   help="points per chunk, rounded up to a multiple of 4 (progress and memory; the results do not "
                   "depend on it)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    _common(p)
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("list", help="available equations and configs")
    p.add_argument("--configs", metavar="DIR", help="list the configs in DIR instead of ./configs")
    p.add_argument("--keys", action="store_true", help="print every config key with its default and meaning")
    _common(p, cache=False)
    p.set_defaults(handler=cmd_list)
    return parser


def _interrupted(args) -> str:
    """What an interruption of ``args.command`` left behind (only `run` resumes)."""
    written = getattr(args, "written", None)
    if args.command == "run":
        return "run the same command again to resume"
    if args.command == "report":
        return "the report may be partly re-rendered; run the same command again to render it in full"
    if args.command in ("train", "calibrate"):  # both write their one output atomically at the end
        if written is not None:
            return f"{written} was written"
        state = getattr(args, "state", None)
        if state is not None and state.is_file():
            return (f"the training's state after its last finished block is in {state}; run the same command again "
                    "to continue from there")
        kept = " (the checkpoint is as it was)" if getattr(args, "resume", False) else ""
        return f"nothing was written{kept}"
    return "nothing was changed"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(args.verbose, args.quiet)
    from jax.errors import JaxRuntimeError

    from .experiments import ConfigError, PointsFileError, RunDirectoryError
    from .surrogates import CheckpointError

    try:
        return args.handler(args)
    except (CommandError, ConfigError, PointsFileError, RunDirectoryError, CheckpointError) as err:
        print(f"scasml {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, ArithmeticError, EOFError, OSError) as err:  # bad input met further in
        log.debug("traceback", exc_info=True)
        print(f"scasml {args.command}: error: {type(err).__name__}: {err} (-v shows where)", file=sys.stderr)
        return 2
    except (MemoryError, JaxRuntimeError) as err:  # sizes beyond this machine (or a failure of the device)
        log.debug("traceback", exc_info=True)
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        what = "out of memory" if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in detail else \
            "the JAX runtime failed"
        print(f"scasml {args.command}: error: {what}{': ' + detail if detail else ''} (smaller sizes may fit: "
              "dimension, points, levels/base, --chunk-points; -v shows where)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nscasml {args.command}: interrupted; {_interrupted(args)}", file=sys.stderr)
        return 130
    finally:
        teardown_logging()


def console() -> int:
    """The ``scasml`` command: one JAX device per CPU core (``SCASML_CPU_DEVICES=1`` keeps one), then ``main``."""
    from ._devices import use_every_cpu_core

    try:
        use_every_cpu_core()
    except ValueError as err:
        print(f"scasml: error: {err}", file=sys.stderr)
        return 2
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
