"""Checkpoints: one file = magic line, JSON header, raw little-endian parameter bytes. No pickle.

Layout:  b"SCASML-CHECKPOINT\\n" | uint64 header length (little endian) | UTF-8 JSON header | payload.
The header records the format version, the architecture, the PDE's parameters, the dtype, a training summary,
the package version, every leaf's shape and dtype, the payload length and its SHA-256.

A surrogate with its terminal condition built in (``terminal_transform``) stores the function itself as code, not
data: ``load`` rebuilds it from the given PDE, ``pde.smoothed_terminal(terminal_smoothing)``. So that a PDE with the
same parameters but another g is refused rather than silently substituted, such a header also holds
``terminal_fingerprint``: ``{"rule": ..., "values": [g(x_1), …, g(x_4)]}`` of the surrogate's own g at
x_k = c + s · 0.5 sin(k · (1, 2, …, d)) (c, s: the architecture's ``input_offset`` and ``input_scale``, default 0
and 1), evaluated in the checkpoint's dtype (null for a non-finite value). ``load`` compares the given PDE's g at
the same points (|Δ| ≤ 1e-5 (1 + |g|)). Headers without it (written before it existed) load unchecked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import struct
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._io import atomic_write_bytes
from ._base import AbstractSurrogate
from ._pinn import PINN

MAGIC = b"SCASML-CHECKPOINT\n"
FORMAT_VERSION = 1
_MAX_HEADER = 16 * 2**20
_MAX_FILE = 64 * 2**30  # bytes; refused unread beyond (a mistaken path to a huge file)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (corrupt, truncated, newer format, or made for another PDE)."""


_FINGERPRINT_RULE = "c + s * 0.5 sin(k * (1..d)), k = 1..4"
_FINGERPRINT_RTOL = 1e-5


def _terminal_fingerprint(terminal, arch: dict, dtype: str) -> list[float | None]:
    """The values of ``terminal`` at the four fixed points of ``_FINGERPRINT_RULE`` (None where not finite)."""
    k, j = np.arange(1.0, 5.0)[:, None], np.arange(1.0, int(arch["dim"]) + 1.0)[None, :]
    points = arch.get("input_offset", 0.0) + arch.get("input_scale", 1.0) * 0.5 * np.sin(k * j)
    values = np.asarray(jax.vmap(terminal)(jnp.asarray(points, dtype)), np.float64).reshape(-1)
    return [float(v) if math.isfinite(v) else None for v in values]


def _check_terminal(header: dict, pde, path) -> None:
    """Refuse a PDE whose (smoothed) g differs from the one the checkpoint's surrogate was built with."""
    arch, saved = header["architecture"], header.get("terminal_fingerprint")
    if pde is None or not arch.get("terminal_transform") or saved is None:
        return
    rule, values = (saved.get("rule"), saved.get("values")) if isinstance(saved, dict) else (None, None)
    if not (rule == _FINGERPRINT_RULE and isinstance(values, list) and len(values) == 4
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)):
        raise CheckpointError(f"{path!r} has a corrupt header: terminal_fingerprint must be {{'rule': "
                              f"{_FINGERPRINT_RULE!r}, 'values': [4 numbers or null]}}")
    try:
        given = _terminal_fingerprint(pde.smoothed_terminal(arch.get("terminal_smoothing", 0.0)), arch, header["dtype"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path!r}: the given PDE's terminal condition cannot be evaluated for this "
                              f"checkpoint: {type(err).__name__}: {err}") from None
    for i, (a, b) in enumerate(zip(values, given, strict=True)):
        if (a is None) != (b is None) or (a is not None and abs(a - b) > _FINGERPRINT_RTOL * (1 + abs(a))):
            raise CheckpointError(
                f"{path!r}: this checkpoint was trained for a terminal condition g that differs from the given PDE's "
                f"at x_{i + 1} (x_k = c + s·0.5 sin(k·(1, …, d))): g = {a} in the checkpoint, {b} for the given PDE; "
                "load it with the PDE it was trained for"
            )


def built_in_terminal(arch: dict, pde, kind: str):
    """g of ``pde`` when ``arch`` has the terminal transform built in (None otherwise); the PDE is then required."""
    if not arch.get("terminal_transform"):
        return None
    if pde is None:
        raise CheckpointError(f"this {kind} has the terminal transform built in: pass the PDE to load it (pde=...)")
    return pde.smoothed_terminal(arch.get("terminal_smoothing", 0.0))


def _build_pinn(arch: dict, pde, dtype) -> PINN:
    terminal = built_in_terminal(arch, pde, "PINN")
    return PINN(
        arch["dim"], arch["horizon"], jax.random.PRNGKey(0), width=arch["width"], depth=arch["depth"],
        activation=arch["activation"], terminal=terminal, dtype=dtype,
        **{k: arch[k] for k in ("input_offset", "input_scale", "output_scale", "terminal_smoothing") if k in arch},
    )


_BUILDERS: dict[str, Callable] = {"pinn": _build_pinn}


def register_architecture(kind: str, builder: Callable) -> None:
    """Teach ``load`` to rebuild surrogates whose ``architecture()["kind"] == kind``."""
    _BUILDERS[kind] = builder


def save(path, surrogate: AbstractSurrogate, pde=None, training: dict | None = None, overwrite: bool = True) -> None:
    """Write ``surrogate`` (which must define ``architecture()``) to ``path`` atomically (``overwrite=False``:
    ``FileExistsError`` if ``path`` exists when it is written). Refuses, before writing, what ``load`` would
    refuse: array leaves other than float32/float64, or of both, and non-finite values."""
    from .. import __version__

    if not hasattr(surrogate, "architecture"):
        raise TypeError(f"{type(surrogate).__name__} cannot be saved: it defines no architecture()")
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(eqx.filter(surrogate, eqx.is_array))]
    kinds = sorted({str(leaf.dtype) for leaf in leaves})
    if not set(kinds) <= {"float32", "float64"} or len(kinds) > 1:
        raise TypeError(f"{type(surrogate).__name__} cannot be saved: its arrays must all be float32 or all float64, "
                        f"got {', '.join(kinds)} (keep integer or other data as static fields)")
    for i, leaf in enumerate(leaves):
        bad = int(np.sum(~np.isfinite(leaf)))
        if bad:
            raise ValueError(f"{type(surrogate).__name__} cannot be saved: its array {i} {leaf.dtype}"
                             f"{list(leaf.shape)} holds {bad} non-finite (NaN or inf) values (a diverged fit or "
                             "training?)")
    payload = b"".join(np.ascontiguousarray(leaf).astype(leaf.dtype.newbyteorder("<")).tobytes() for leaf in leaves)
    dtypes = {str(leaf.dtype) for leaf in leaves if np.issubdtype(leaf.dtype, np.floating)}
    architecture = surrogate.architecture()
    terminal = getattr(surrogate, "terminal", None)
    fingerprint = None
    if architecture.get("terminal_transform") and callable(terminal) and dtypes:
        fingerprint = {"rule": _FINGERPRINT_RULE,
                       "values": _terminal_fingerprint(terminal, architecture, next(iter(dtypes)))}
    header = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "architecture": architecture,
        "pde": None if pde is None else pde.parameters(),
        "dim": architecture.get("dim"),
        "dtype": dtypes.pop() if dtypes else None,
        "training": training or {},
        "leaves": [{"shape": list(leaf.shape), "dtype": str(leaf.dtype)} for leaf in leaves],
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        **({} if fingerprint is None else {"terminal_fingerprint": fingerprint}),
    }
    raw = json.dumps(header, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, MAGIC + struct.pack("<Q", len(raw)) + raw + payload, overwrite)


def read_header(path) -> dict:
    """The JSON header of a checkpoint (validated), without loading parameters."""
    header, _ = _read(path)
    return header


def _read_file(path: str) -> bytes:
    """The bytes of the regular file ``path``. Anything else (a FIFO, a device, a directory) is refused before a
    byte is read: opening a FIFO would block until someone writes to it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks, even on a FIFO
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path!r}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path!r} is a directory, not a checkpoint file") from None
    except OSError as err:
        raise CheckpointError(f"cannot open the checkpoint {path!r}: {err.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
    with os.fdopen(fd, "rb") if stat.S_ISREG(info.st_mode) else contextlib.nullcontext() as fh:
        if stat.S_ISDIR(info.st_mode):
            raise CheckpointError(f"{path!r} is a directory, not a checkpoint file")
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path!r} is not a regular file ({_file_kind(info.st_mode)}); a checkpoint is a "
                                  "file written by scasml.save_surrogate or `scasml train`")
        if info.st_size > _MAX_FILE:
            raise CheckpointError(f"{path!r} is {info.st_size / 2**30:.1f} GiB, more than any scasml checkpoint "
                                  f"({_MAX_FILE // 2**30} GiB at most); not a checkpoint")
        os.set_blocking(fh.fileno(), True)
        return fh.read()


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path) -> bytes:
    """The raw bytes of the checkpoint file ``path``, after checking that it is one (file type, size, header,
    checksum): what a run directory copies."""
    path = os.fspath(path)
    data = _read_file(path)
    _parse(data, path)
    return data


def _read(path):
    path = os.fspath(path)
    return _parse(_read_file(path), path)


def _parse(data: bytes, path: str):
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path!r} is not a scasml checkpoint (bad magic bytes)")
    offset = len(MAGIC)
    if len(data) < offset + 8:
        raise CheckpointError(f"{path!r} is truncated: the header length is missing")
    (length,) = struct.unpack("<Q", data[offset : offset + 8])
    offset += 8
    if length > _MAX_HEADER or len(data) < offset + length:
        raise CheckpointError(f"{path!r} is truncated or corrupt: header of {length} bytes announced")
    try:
        header = json.loads(data[offset : offset + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path!r} has a corrupt header: {err}") from None
    except RecursionError:
        raise CheckpointError(f"{path!r} has a corrupt header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path!r} has a corrupt header: not a JSON object")
    version = header.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path!r} has a corrupt header: no format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} uses checkpoint format version {version}, newer than this scasml understands "
            f"({FORMAT_VERSION}); upgrade scasml (file written by scasml {header.get('package_version')})"
        )
    payload = data[offset + length :]
    if len(payload) != header.get("payload_bytes"):
        raise CheckpointError(
            f"{path!r} is truncated or corrupt: expected {header.get('payload_bytes')} bytes of parameters, "
            f"found {len(payload)}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(f"{path!r} is corrupt: parameter checksum mismatch")
    _check_header_fields(header, path)
    return header, payload


def _check_header_fields(header: dict, path) -> None:
    """The fields ``load`` relies on have the right types (a hand-edited header fails here, by name)."""
    def bad(field, what):
        raise CheckpointError(f"{path!r} has a corrupt header: {field} {what}")

    arch = header.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("kind"), str):
        bad("architecture", "must be a table with a 'kind'")
    if header.get("pde") is not None and not isinstance(header["pde"], dict):
        bad("pde", "must be a table or null")
    dtype = header.get("dtype")
    if dtype is not None and dtype not in ("float32", "float64"):
        bad("dtype", f"must be 'float32' or 'float64', got {dtype!r}")
    leaves = header.get("leaves")
    if not isinstance(leaves, list):
        bad("leaves", "must be a list")
    for i, spec in enumerate(leaves):
        if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
                and all(isinstance(n, int) and n >= 0 for n in spec["shape"])
                and spec.get("dtype") in ("float32", "float64")):
            bad(f"leaves[{i}]", "must give a shape (non-negative integers) and a float32/float64 dtype")


def _check_pde(header: dict, pde, path) -> None:
    saved = header.get("pde")
    if saved is None:
        return
    current = pde.parameters()
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs given {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if saved.get(k) != current.get(k)
    ]
    if diffs:
        raise CheckpointError(
            f"{path!r} was trained for {saved.get('name')} (dim={saved.get('dim')}), which does not match the "
            f"given PDE {current.get('name')} (dim={current.get('dim')}): " + "; ".join(diffs)
        )


def load(path, pde=None) -> AbstractSurrogate:
    """Load a surrogate saved by ``save`` (``scasml.save_surrogate``). With ``pde`` given, refuse a checkpoint
    made for another PDE."""
    header, payload = _read(path)
    if pde is not None:
        _check_pde(header, pde, path)
    arch = header["architecture"]
    kind = arch.get("kind")
    if kind not in _BUILDERS:
        raise CheckpointError(f"{path!r}: unknown surrogate kind {kind!r}; known: {sorted(_BUILDERS)}")
    dtype = header["dtype"] if isinstance(header["dtype"], str) else None
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise CheckpointError(f"{path!r} holds a float64 {kind}: enable x64 before loading it, with "
                              'jax.config.update("jax_enable_x64", True)')
    # shapes only: building the skeleton abstractly skips its random initialisation (seconds of small compiles)
    try:
        skeleton = eqx.filter_eval_shape(lambda: _BUILDERS[kind](arch, pde, dtype))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path!r}: its {kind} architecture {arch} cannot be built: "
                              f"{type(err).__name__}: {err}") from None
    arrays, static = eqx.partition(skeleton, lambda leaf: isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)))
    leaves, treedef = jax.tree.flatten(arrays)
    specs = header["leaves"]
    if len(specs) != len(leaves):
        raise CheckpointError(f"{path!r}: {len(specs)} parameter arrays stored, the architecture has {len(leaves)}")
    for i, (spec, leaf) in enumerate(zip(specs, leaves, strict=True)):  # shapes first, then sizes
        if tuple(spec["shape"]) != leaf.shape or spec["dtype"] != str(leaf.dtype):
            raise CheckpointError(
                f"{path!r}: array {i} is {spec['dtype']}{spec['shape']}, "
                f"architecture expects {leaf.dtype}{list(leaf.shape)}"
            )
    sizes = [math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize for spec in specs]  # Python ints
    if sum(sizes) != len(payload):
        raise CheckpointError(f"{path!r} is corrupt: its header describes {sum(sizes)} bytes of parameters, the file "
                              f"holds {len(payload)}")
    _check_terminal(header, pde, path)  # after the shapes: the architecture's dim is then that of the payload
    new_leaves, offset = [], 0
    for i, spec in enumerate(specs):
        dt = np.dtype(spec["dtype"]).newbyteorder("<")
        count = math.prod(spec["shape"])
        arr = np.frombuffer(payload, dtype=dt, count=count, offset=offset).reshape(spec["shape"])
        bad = int(np.sum(~np.isfinite(arr)))
        if bad:
            raise CheckpointError(f"{path!r}: array {i} {spec['dtype']}{spec['shape']} holds {bad} non-finite (NaN "
                                  "or inf) values; the checkpoint is corrupt or was written from a diverged fit")
        new_leaves.append(jnp.asarray(arr.astype(dt.newbyteorder("="))))
        offset += count * dt.itemsize
    return eqx.combine(jax.tree.unflatten(treedef, new_leaves), static)
