"""The run directory: resolved config, cached stages, arrays and a lock.

Layout (everything written atomically: temporary file + rename)::

    scasml-run.json         marks the folder as a run (config fingerprint, scasml version)
    config.toml, config.json  the resolved configuration (rerun with `scasml run DIR/config.toml`)
    run.log                 the log of every invocation
    checkpoint.scasml       the trained PINN or fitted GP; training.csv the PINN's loss curve (a user function,
                            surrogate.kind = 'python:…', has none: stages/surrogate.json records what was imported)
    stages/<id>.json        one marker per finished stage (with its wall-clock seconds)
    raw/<id>.npz            the arrays each stage produced
    results/                per-point results (CSV, NPZ) and sweep tables
    metrics.json            accuracy metrics and statistics (deterministic given the config)
    timings.json            wall-clock seconds (kept apart so that metrics.json is reproducible)
    figures/*.png|pdf, report.md

A stage is finished when its marker exists; the marker is written after the stage's outputs, so a run killed at
any moment resumes at the first unfinished stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ._config import ExperimentConfig, config_from_dict

MARKER = "scasml-run.json"


def _creation_leftover(name: str) -> bool:
    """Files a run killed while creating its folder may leave before the marker (safe to overwrite)."""
    return name in ("config.toml", "config.json", ".lock") or (name.startswith(".") and name.endswith(".tmp"))


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
    """A run folder (see module docstring). Create with ``prepare`` (for running) or ``open`` (for reporting)."""

    def __init__(self, path):
        self.path = Path(path)

    # ---- creation ---------------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, path, config: ExperimentConfig, force: bool = False) -> tuple[RunDirectory, bool]:
        """Create the run folder or reopen it to resume. Returns (run directory, resumed?).

        A folder holding a run of a different configuration is refused unless ``force`` (which deletes it);
        a non-empty folder that is not a run is always refused.
        """
        run = cls(path)
        marker = run.path / MARKER
        if run.path.exists() and not run.path.is_dir():
            raise RunDirectoryError(f"{run.path} exists and is not a directory")
        if marker.is_file():
            stored = read_json(marker)
            if stored is None:
                raise RunDirectoryError(f"{marker} is corrupt; choose another --out (or delete the folder)")
            if stored.get("config_sha256") == config.fingerprint() and not force:
                return run, True
            if not force:
                raise RunDirectoryError(
                    f"{run.path} holds a run of a different configuration ({stored.get('experiment')!r}); "
                    "choose another --out or pass --force to delete it"
                )
            shutil.rmtree(run.path)
        elif run.path.is_dir() and not all(_creation_leftover(p.name) for p in run.path.iterdir()):
            raise RunDirectoryError(
                f"{run.path} is not empty and is not a scasml run directory; choose another --out"
                + (" (--force deletes only run directories)" if force else "")
            )
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.path / "config.toml", "# resolved configuration; rerun: scasml run config.toml\n"
                          + config.to_toml())
        atomic_write_text(run.path / "config.json", config.to_json())
        atomic_write_json(marker, {"config_sha256": config.fingerprint(), "experiment": config.name,
                                   "scasml_version": __version__})
        return run, False

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
        fh = open(self.path / ".lock", "a")  # noqa: SIM115 - held for the duration of the context
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirectoryError(f"{self.path} is in use by another scasml process") from None
            yield self
        finally:
            fh.close()

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
