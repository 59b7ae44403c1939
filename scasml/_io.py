"""Small file helpers: atomic writes and exclusive locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, mode: str, busy: Callable[[], Exception],
                   unopenable: Callable[[OSError], Exception]):
    """Hold ``flock(LOCK_EX)`` on the file ``path`` (opened with ``mode``; released when the context ends or the
    process dies) and yield the open file. Raises ``busy()`` at once where another process holds it, and
    ``unopenable(error)`` where the file cannot be opened."""
    try:
        fh = open(path, mode)  # noqa: SIM115 - held for the duration of the context
    except OSError as err:
        raise unopenable(err) from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield fh
    finally:
        fh.close()


LOCK_MARK = b"scasml lock\n"  # the content of a lock file that transient_lock created (and so may remove)


@contextlib.contextmanager
def transient_lock(path: str | os.PathLike, busy: Callable[[], Exception],
                   unopenable: Callable[[OSError], Exception]):
    """Hold ``flock(LOCK_EX)`` on a lock file ``path`` that exists while it is held: created for the lock (content
    ``LOCK_MARK``) and removed before the lock is released. A file of that name left by a killed process is taken
    over and removed; any other regular file there is locked and left as it is. Raises ``busy()`` at once where
    another process holds the lock, ``unopenable(error)`` where ``path`` cannot be opened or is not a regular
    file (a link, a FIFO)."""
    path = Path(path)
    for _ in range(8):  # retried only where a holder removed the file between our open and our lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            os.write(fd, LOCK_MARK)
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
            except FileNotFoundError:
                continue
            except OSError as err:
                raise unopenable(err) from None
        except OSError as err:
            raise unopenable(err) from None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise unopenable(OSError(errno.EINVAL, "not a regular file", str(path)))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy() from None
            try:
                current = os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                continue
            if current != os.fstat(fd).st_ino:
                continue
            ours = os.pread(fd, len(LOCK_MARK) + 1, 0) == LOCK_MARK
            try:
                yield
            finally:
                if ours:
                    path.unlink(missing_ok=True)
            return
    raise busy()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename. With
    ``overwrite=False`` the file is published only if ``path`` does not exist at that moment (``FileExistsError``
    otherwise, the existing file untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _publish_new(tmp: str, path: Path) -> None:
    """Give the written file ``tmp`` the name ``path`` only if no file has it (no check-then-write window)."""
    try:
        os.link(tmp, path)  # fails if path exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name first, then replace the empty claim
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def json_safe(obj):
    """``obj`` with every non-finite float as None: JSON has no NaN or Infinity (Python writes them, other
    readers refuse them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Strict JSON (non-finite floats written as null), atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")
