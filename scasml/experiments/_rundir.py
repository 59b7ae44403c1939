"""The run directory: resolved config, cached stages, arrays and a lock.

Layout (everything written atomically: temporary file + rename)::

    scasml-run.json         marks the folder as a run (config fingerprint, scasml version)
    config.toml, config.json  the resolved configuration (rerun with `scasml run DIR/config.toml`)
    run.log                 the log of every invocation
    checkpoint.scasml       the trained PINN or fitted GP; training.csv the PINN's loss curve (a user function,
                            surrogate.kind = 'python:…', has none: stages/surrogate.json records what was imported);
                            checkpoint.training-state.npz while a PINN trains (its state after the last block of
                            training.log_every steps, where an interrupted training continues; removed at the end)
    stages/<id>.json        one marker per finished stage (with its wall-clock seconds)
    raw/<id>.npz            the arrays each stage produced
    results/                per-point results (CSV, NPZ) and sweep tables
    metrics.json            accuracy metrics and statistics (deterministic given the config)
    timings.json            wall-clock seconds (kept apart so that metrics.json is reproducible)
    figures/*.png|pdf, report.md

A stage is finished when its marker exists; the marker is written after the stage's outputs, so a run killed at
any moment resumes at the first unfinished stage. Every process holds ``.lock`` (``flock``) before it touches
anything in the folder; ``scasml-run.json`` is written first, so a folder without it was not made by scasml
and is never overwritten or deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text, exclusive_lock
from ._config import ExperimentConfig, config_from_dict
from ._schema import parse_python_kind

MARKER = "scasml-run.json"
LOCK = ".lock"
# The report's figures, figures/<name>.png and .pdf (the only files a run writes in figures/).
FIGURE_NAMES = ("errors", "scatter", "improvement", "calibration", "band", "scaling", "convergence", "training")
# The folders a run writes below its own, and what it writes in them (relative POSIX paths).
RUN_FOLDERS = frozenset({"stages", "raw", "results", "sweep", "figures"})
_RUN_FILES = re.compile(r"stages/.+\.json|raw/.+\.npz|results/(points\.(csv|npz)|sweeps\.csv)"
                        rf"|figures/({'|'.join(FIGURE_NAMES)})\.(png|pdf)"
                        r"|sweep/surrogate-\d+-steps\.(scasml|training-state\.npz)")
# What a run writes at the top of its folder: --force deletes a run folder only if it holds nothing else.
RUN_ENTRIES = frozenset({MARKER, LOCK, "config.toml", "config.json", "run.log", "checkpoint.scasml", "training.csv",
                         "checkpoint.training-state.npz", "metrics.json", "timings.json", "report.md"}) | RUN_FOLDERS
# The temporary files of ``atomic_write_bytes`` (".<name>.<8 random characters>.tmp"), left by a killed write.
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _creation_leftover(entry: Path) -> bool:
    """What a run killed while creating its folder may leave before its marker: the (empty) lock file and a
    temporary file of the marker itself. Nothing else is taken for a leftover: a user's config.toml is not."""
    if entry.name == LOCK:
        return entry.is_file() and not entry.is_symlink() and entry.stat().st_size == 0
    return entry.name.startswith(f".{MARKER}.") and bool(_TEMPORARY.match(entry.name)) and entry.is_file()


def _foreign_entries(root: Path) -> list[str]:
    """The paths below the run folder ``root`` (relative, sorted) that no run writes: what ``--force`` must not
    delete. Links are judged by their own names, never followed."""
    foreign = []
    for entry in root.iterdir():
        if _TEMPORARY.match(entry.name):
            continue
        real_folder = entry.is_dir() and not entry.is_symlink()
        if entry.name not in RUN_ENTRIES or (real_folder and entry.name not in RUN_FOLDERS):
            foreign.append(entry.name)  # (a folder named like one of the run's files is not the run's)
        elif real_folder:
            for folder, dirs, files in os.walk(entry):  # links to folders are listed in dirs, not followed
                for name in files + [d for d in dirs if Path(folder, d).is_symlink()]:
                    path = Path(folder, name).relative_to(root).as_posix()
                    if not (_TEMPORARY.match(name) or _RUN_FILES.fullmatch(path)):
                        foreign.append(path)
    return sorted(foreign)


def _inputs_inside(config: ExperimentConfig, root: Path) -> list[str]:
    """The configuration's input files (surrogate.checkpoint, a python: surrogate's file) inside ``root``."""
    inputs = [config.surrogate.checkpoint] if config.surrogate.checkpoint else []
    if config.surrogate_family == "python":
        target, _, is_file = parse_python_kind(config.surrogate.kind)
        inputs += [target] if is_file else []
    inside = root.resolve()
    return [p for p in inputs if Path(p).resolve().is_relative_to(inside)]


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None if the file is missing or not a readable JSON object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used (another run's folder, not a run, locked, or incomplete)."""


class RunDirectory:
    """A run folder (see module docstring). Create with ``session`` or ``prepare`` (for running) or ``open``
    (for reporting)."""

    def __init__(self, path):
        self.path = Path(path)

    # ---- creation ---------------------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def session(cls, path, config: ExperimentConfig, force: bool = False):
        """Lock the run folder, then create it or reopen it to resume; yields (run directory, resumed?) with the
        lock held.

        Nothing in the folder is touched before the lock is held, so a live run is never disturbed (``force``
        included). A run of the same configuration resumes (``force`` or not). A folder holding a run of a
        different configuration is refused unless ``force``, which empties it, and only if everything in it, at any
        depth, is something a run writes (``RUN_ENTRIES``, ``_RUN_FILES``) and the new configuration reads no input
        from it. A non-empty folder that is not a run is always refused. Stale temporary files of killed writes
        are removed.
        """
        run = cls(path)
        run._inspect(config, force)  # read-only: a refusal leaves no trace (not even a lock file)
        created = not run.path.exists()
        run.path.mkdir(parents=True, exist_ok=True)
        with run.lock():  # "in use" is raised here and leaves the folder to the process that holds it
            try:
                resumed = run._set_up(config, run._inspect(config, force))  # inspected again, now under the lock
            except RunDirectoryError:
                if created and not (run.path / MARKER).exists():  # refused in a folder made just now: no trace
                    with contextlib.suppress(OSError):
                        (run.path / LOCK).unlink(missing_ok=True)  # ours (held), then the folder if empty
                        run.path.rmdir()
                raise
            yield run, resumed

    @classmethod
    def prepare(cls, path, config: ExperimentConfig, force: bool = False) -> tuple[RunDirectory, bool]:
        """``session`` without keeping the lock: create or reopen the folder. Returns (run directory, resumed?)."""
        with cls.session(path, config, force) as (run, resumed):
            return run, resumed

    def _inspect(self, config: ExperimentConfig, force: bool) -> bool:
        """Whether the folder holds this configuration's run (resume); raises if it may not be used."""
        marker = self.path / MARKER
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"{self.path} exists and is not a directory")
        if not self.path.exists():
            return False
        entries = list(self.path.iterdir())
        if marker.is_file() and not marker.is_symlink():
            stored = read_json(marker)
            if stored is None or not isinstance(stored.get("config_sha256"), str):
                raise RunDirectoryError(f"{marker} is corrupt; choose another --out (or delete the folder)")
            if stored["config_sha256"] == config.fingerprint():
                return True  # the same configuration resumes, with --force too: a finished run is never redone
            if not force:
                raise RunDirectoryError(
                    f"{self.path} holds a run of a different configuration ({stored.get('experiment')!r}); "
                    "choose another --out or pass --force to delete it"
                )
            foreign = _foreign_entries(self.path)
            if foreign:
                shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
                raise RunDirectoryError(
                    f"{self.path} holds a scasml run but also files scasml did not write ({shown}); "
                    "--force deletes only what a run wrote: move them away or choose another --out"
                )
            inputs = _inputs_inside(config, self.path)
            if inputs:
                raise RunDirectoryError(
                    f"{self.path} holds this configuration's input ({', '.join(inputs)}), which --force would "
                    "delete with the old run: copy it out of the folder first or choose another --out"
                )
            return False
        if not all(_creation_leftover(p) for p in entries):
            raise RunDirectoryError(
                f"{self.path} is not empty and is not a scasml run directory (no {MARKER}); choose another --out"
                + (" (--force deletes only run directories)" if force else "")
            )
        return False

    def _set_up(self, config: ExperimentConfig, resumed: bool) -> bool:
        """Under the lock: empty a forced folder, remove stale temporary files, write marker and config."""
        marker = self.path / MARKER
        if not resumed:
            # only RUN_ENTRIES and temporary files (checked by _inspect); the marker stays until it is replaced,
            # so that a kill in the middle leaves a folder that is still provably a run
            for entry in self.path.iterdir():
                if entry.name in (LOCK, MARKER):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.remove_temporary_files()
        if not resumed:  # the marker first: from here on the folder is provably a run, whatever is killed when
            atomic_write_json(marker, {"config_sha256": config.fingerprint(), "experiment": config.name,
                                       "scasml_version": __version__})
        if not resumed or not (self.path / "config.toml").is_file():
            atomic_write_text(self.path / "config.toml", "# resolved configuration; rerun: scasml run config.toml\n"
                              + config.to_toml())
        if not resumed or read_json(self.path / "config.json") is None:
            atomic_write_text(self.path / "config.json", config.to_json())
        return resumed

    def remove_temporary_files(self) -> list[str]:
        """Delete the temporary files that killed atomic writes left in the run folder (call with the lock
        held: then no write is in flight). Returns their paths relative to the folder."""
        removed = []
        for root, dirs, files in os.walk(self.path):  # symbolic links to folders are not followed
            for name in files:
                if _TEMPORARY.match(name):
                    path = Path(root, name)
                    if path.is_symlink() or path.is_file():
                        path.unlink()
                        removed.append(path.relative_to(self.path).as_posix())
            dirs.sort()
        return removed

    @classmethod
    def open(cls, path) -> RunDirectory:
        run = cls(path)
        if not (run.path / MARKER).is_file():
            raise RunDirectoryError(f"{run.path} is not a scasml run directory (no {MARKER})")
        return run

    def config(self) -> ExperimentConfig:
        stored = read_json(self.path / "config.json")
        if stored is None:
            raise RunDirectoryError(f"{self.path}: config.json is missing or corrupt; rerun the experiment from its "
                                    "config.toml with `scasml run config.toml --out <new folder>`")
        return config_from_dict(stored, check_files=False)

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock (released automatically if the process dies)."""
        busy = lambda: RunDirectoryError(f"{self.path} is in use by another scasml process (a live run is never "
                                         "interrupted or deleted, --force included); wait for it to end")
        unopenable = lambda err: RunDirectoryError(f"cannot lock {self.path}: {err.strerror} ({self.path / LOCK})")
        with exclusive_lock(self.path / LOCK, "a", busy, unopenable):
            yield self

    # ---- stages -----------------------------------------------------------------------------------------
    def _marker(self, stage: str) -> Path:
        return self.path / "stages" / f"{stage}.json"

    def arrays_path(self, stage: str) -> Path:
        return self.path / "raw" / f"{stage}.npz"

    def stage_info(self, stage: str) -> dict | None:
        """The marker of a finished stage, or None (also when the marker is unreadable: the stage is redone)."""
        return read_json(self._marker(stage))

    def has_results(self, stage: str) -> bool:
        """Whether ``stage`` is finished and its arrays file is a complete archive (else it is to be redone)."""
        return self.stage_info(stage) is not None and zipfile.is_zipfile(self.arrays_path(stage))

    def stages(self) -> list[str]:
        """Ids of every finished stage (sorted), excluding the report itself."""
        root = self.path / "stages"
        ids = (p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.json"))
        return sorted(i for i in ids if i != "report")

    def stages_digest(self) -> str:
        """SHA-256 over the markers of all finished stages (changes whenever any stage is (re)done)."""
        digest = hashlib.sha256()
        for stage in self.stages():
            digest.update(stage.encode() + b"\0" + self._marker(stage).read_bytes())
        return digest.hexdigest()

    def finish(self, stage: str, info: dict) -> None:
        atomic_write_json(self._marker(stage), {"stage": stage, **info})

    def save_arrays(self, stage: str, **arrays) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self.arrays_path(stage), buffer.getvalue())

    def array_names(self, stage: str) -> set[str]:
        """The names of the arrays ``stage`` stored (empty where it has none or they are unreadable)."""
        try:
            with np.load(self.arrays_path(stage), allow_pickle=False) as data:
                return set(data.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return set()

    def load_arrays(self, stage: str) -> dict[str, np.ndarray]:
        path = self.arrays_path(stage)
        if not path.is_file():
            raise RunDirectoryError(f"{self.path}: stage {stage!r} has no results; finish the run with `scasml run`")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise RunDirectoryError(f"{path} is corrupt ({type(err).__name__}); `scasml run` on this folder redoes "
                                    f"stage {stage!r}") from None

    def file(self, *parts: str) -> Path:
        path = self.path.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def __fspath__(self) -> str:
        return os.fspath(self.path)
