"""User point files for ``scasml calibrate``: read (t, x) from CSV/.npy/.npz, write predictions to CSV/.npz.

Input formats (d = the checkpoint's dimension):
* CSV with a header naming ``t`` and ``x0 … x{d-1}`` (any column order, extra columns ignored), or without a
  header: d + 1 numeric columns, t first. Lines starting with ``#`` are comments.
* ``.npy``: a float array of shape (N, d + 1), t in column 0.
* ``.npz``: arrays ``t`` (N,) and ``x`` (N, d).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text


class PointsFileError(ValueError):
    """A points file cannot be read (wrong format, shape, non-numeric or non-finite values, t outside [0, T])."""


def _parse_float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PointsFileError(f"{where}: {text.strip()!r} is not a number") from None


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


def _csv_rows(lines):
    """(line number, cells) of the CSV rows that hold data or a header (blank lines and # comments skipped)."""
    return ((i + 1, r) for i, r in enumerate(csv.reader(lines))
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#"))


def _read_csv(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not a name
    except UnicodeDecodeError:
        raise PointsFileError(f"{path}: not a text (CSV) file") from None
    rows = list(_csv_rows(io.StringIO(text)))
    if not rows:
        raise PointsFileError(f"{path}: no points found")
    columns = None
    if not _numeric(rows[0][1]):
        names = [c.strip() for c in rows[0][1]]
        wanted = ["t"] + [f"x{i}" for i in range(dim)]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise PointsFileError(
                f"{path}: header must name columns t, x0 … x{dim - 1} for this {dim}-d equation; "
                f"missing {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}"
            )
        extra = [n for n in names if re.fullmatch(r"x\d+", n) and int(n[1:]) >= dim]
        if extra:
            raise PointsFileError(
                f"{path}: the header names coordinate {extra[0]}, but this equation has {dim} dimensions "
                f"(x0 … x{dim - 1}); the points belong to another dimension"
            )
        repeated = sorted({w for w in wanted if names.count(w) > 1})
        if repeated:
            raise PointsFileError(f"{path}: the header names {', '.join(repeated)} more than once")
        columns = [names.index(w) for w in wanted]
        rows = rows[1:]
        if not rows:
            raise PointsFileError(f"{path}: a header but no points")
    width = len(rows[0][1]) if columns is None else None
    if columns is None and width != dim + 1:
        raise PointsFileError(f"{path}: line {rows[0][0]} has {width} columns; expected {dim + 1} (t, then {dim} "
                              "coordinates) or a header naming t, x0, …")
    data = np.empty((len(rows), dim + 1))
    for k, (line, row) in enumerate(rows):
        if columns is None and len(row) != width:
            raise PointsFileError(f"{path}: line {line} has {len(row)} columns, expected {width}")
        if columns is not None and len(row) <= max(columns):
            raise PointsFileError(f"{path}: line {line} has only {len(row)} columns")
        cells = row if columns is None else [row[c] for c in columns]
        data[k] = [_parse_float(c, f"{path}: line {line}") for c in cells]
    return data[:, 0], data[:, 1:]


def _real(dtype) -> bool:
    """Real floating or integer (not bool, complex, strings or objects)."""
    return np.issubdtype(dtype, np.floating) or (np.issubdtype(dtype, np.integer) and dtype != np.bool_)


def _read_npy(path: Path, dim: int):
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise PointsFileError(f"{path}: not a readable .npy array without pickle: {err}") from None
    if data.ndim != 2 or data.shape[1] != dim + 1 or not _real(data.dtype):
        raise PointsFileError(f"{path}: expected a real (float or integer) array of shape (N, {dim + 1}) (t, then x); "
                              f"got {data.dtype} {data.shape}")
    return data[:, 0].astype(float), data[:, 1:].astype(float)


def _read_npz(path: Path, dim: int):
    try:
        with np.load(path, allow_pickle=False) as data:
            if "t" not in data.files or "x" not in data.files:
                raise PointsFileError(f"{path}: an .npz points file needs arrays 't' and 'x'; found {data.files}")
            t, x = data["t"], data["x"]
    except ValueError as err:
        raise PointsFileError(f"{path}: not a readable .npz archive without pickle: {err}") from None
    if x.ndim != 2 or x.shape[1] != dim or t.shape != (x.shape[0],):
        raise PointsFileError(f"{path}: expected t of shape (N,) and x of shape (N, {dim}); got {t.shape}, {x.shape}")
    for label, arr in (("t", t), ("x", x)):
        if not _real(arr.dtype):
            raise PointsFileError(f"{path}: {label} must be a real (float or integer) array; got {arr.dtype}")
    return t.astype(float), x.astype(float)


def points_dim(path) -> int | None:
    """The dimension d of the points in the file ``path``, read cheaply (a .npy's shape, an .npz's x, a CSV's first
    row or header) so that it can be checked before anything is built at that size; None where it cannot be told
    (``read_points`` then says why)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return shape[1] - 1 if len(shape) == 2 and shape[1] >= 2 else None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                shape = data["x"].shape if "x" in data.files else ()
            return shape[1] if len(shape) == 2 and shape[1] >= 1 else None
        if suffix in (".csv", ".txt"):
            with open(path, encoding="utf-8-sig", newline="") as lines:
                for _, row in _csv_rows(lines):
                    if _numeric(row):
                        return len(row) - 1 if len(row) >= 2 else None
                    names = [int(c.strip()[1:]) for c in row if re.fullmatch(r"x\d+", c.strip())]
                    return max(names) + 1 if names else None
    except Exception:  # unreadable: read_points says why
        return None
    return None


def read_points(path, dim: int, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """(t (N,), x (N, d)) from a points file; ``PointsFileError`` with the file (and line) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise PointsFileError(f"{path}: no such points file")
    readers = {".csv": _read_csv, ".txt": _read_csv, ".npy": _read_npy, ".npz": _read_npz}
    if path.suffix.lower() not in readers:
        raise PointsFileError(f"{path}: unknown points format {path.suffix!r}; use .csv, .npy or .npz")
    t, x = readers[path.suffix.lower()](path, dim)
    if len(t) == 0:
        raise PointsFileError(f"{path}: no points found")
    for label, arr in (("t", t), ("x", x)):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise PointsFileError(f"{path}: {label} is not finite at point {first}")
    outside = (t < 0) | (t > horizon)
    if outside.any():
        first = int(np.argmax(outside))
        raise PointsFileError(f"{path}: t must lie in [0, T] = [0, {horizon:g}]; point {first} has t = {t[first]:g}")
    return t, x


def write_predictions(path, columns: dict[str, np.ndarray], x: np.ndarray, overwrite: bool = True) -> None:
    """CSV (t, x0…, then one column per entry) or .npz (x as one array), written atomically (``overwrite=False``:
    ``FileExistsError`` if ``path`` exists when it is written)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=x, **columns)
        atomic_write_bytes(path, buffer.getvalue(), overwrite)
        return
    names = list(columns)
    header = ["t"] + [f"x{i}" for i in range(x.shape[1])] + [n for n in names if n != "t"]
    lines = [",".join(header)]
    for i in range(x.shape[0]):
        vals = [columns["t"][i], *x[i], *(columns[n][i] for n in names if n != "t")]
        lines.append(",".join(_cell(v) for v in vals))
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite)


def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    v = float(v)
    return "nan" if math.isnan(v) else f"{v:.9g}"
