"""User code named in a config: a surrogate (``surrogate.kind = "python:module:function"`` or
``"python:file.py:function"``) or a PDE (``equation.name``, written the same way).

The named object is either a factory ``function(pde)`` returning û (called once), or û itself, ``u(t, x)``: a
callable whose signature takes one argument is a factory, one taking two is used as it is. The result is wrapped by
``scasml.surrogates.as_surrogate`` and checked by ``check_surrogate`` (JAX-traceable, scalar, twice differentiable,
finite at a few domain points). Every problem is a ``ConfigError`` for ``surrogate.kind``.

A PDE is named the same way: either an ``AbstractSemilinearPDE`` itself (``equation.dim`` must match, and
``equation.parameters`` must be empty) or a factory called as ``f(dim=equation.dim, **equation.parameters)``
returning one. Every problem is a ``ConfigError`` for ``equation.name``.

A dotted module is imported with ``importlib.import_module`` (the current directory is tried after ``sys.path``);
a ``.py`` file (its path made absolute when the config is loaded) is executed with
``importlib.util.spec_from_file_location``, its own folder importable while it runs. A file is executed again
only when it changed since it was last loaded in this process.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from ._schema import ConfigError, parse_python_kind

KEY = "surrogate.kind"
EQUATION_KEY = "equation.name"
_FILE_MODULES: dict[tuple[str, int, int], object] = {}


def _bad(kind: str, message: str, key: str = KEY) -> ConfigError:
    return ConfigError(f"{key}: {kind!r}: {message}")


def resolve_kind(kind: str, base_dir=None) -> str:
    """``kind`` with a relative ``.py`` path made absolute against ``base_dir`` (default: the current directory)."""
    target, attribute, is_file = parse_python_kind(kind)
    path = os.path.expanduser(target)
    if not is_file or os.path.isabs(path):
        return kind if path == target else f"python:{path}:{attribute}"
    base = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.getcwd())
    return f"python:{os.path.normpath(os.path.join(base, path))}:{attribute}"


@contextlib.contextmanager
def _importable(folder: str):
    """Append ``folder`` to ``sys.path`` while the context is open (if it is not there already)."""
    folder = os.path.abspath(folder)
    added = folder not in [os.path.abspath(p or ".") for p in sys.path]
    if added:
        sys.path.append(folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _load_file(kind: str, target: str, key: str = KEY):
    path = Path(target)
    if not path.is_file():
        raise _bad(kind, f"no such file {str(path)!r}", key)
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if cache_key in _FILE_MODULES:
        return _FILE_MODULES[cache_key]
    name = "_scasml_user_" + hashlib.sha256(cache_key[0].encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always gets a source loader
        raise _bad(kind, f"cannot load {str(path)!r} as a Python module", key)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _importable(str(path.parent)):
            spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise _bad(kind, f"executing {str(path)!r} failed: {type(err).__name__}: {err}", key) from err
    _FILE_MODULES[cache_key] = module
    return module


def _import_module(kind: str, target: str, key: str = KEY):
    def missing(err):
        return isinstance(err, ModuleNotFoundError) and err.name is not None and (
            target == err.name or target.startswith(err.name + "."))

    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if not missing(err):
            raise _bad(kind, f"importing module {target!r} failed: {err}", key) from err
    except Exception as err:
        raise _bad(kind, f"importing module {target!r} failed: {type(err).__name__}: {err}", key) from err
    try:  # the `scasml` script does not put the current directory on sys.path: try it last
        with _importable(os.getcwd()):
            return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if missing(err):
            raise _bad(kind, f"no module named {err.name!r} (not on sys.path nor in the current directory; "
                       "for a file write 'python:path/to/file.py:name')", key) from None
        raise _bad(kind, f"importing module {target!r} failed: {err}", key) from err
    except Exception as err:
        raise _bad(kind, f"importing module {target!r} failed: {type(err).__name__}: {err}", key) from err


def _named_object(kind: str, key: str):
    """Import the module (or file) of ``kind`` and return the named object; ``ConfigError`` for ``key`` if missing."""
    try:
        target, attribute, is_file = parse_python_kind(kind)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}; got {kind!r}") from None
    module = _load_file(kind, target, key) if is_file else _import_module(kind, target, key)
    obj, where = module, (f"file {target!r}" if is_file else f"module {target!r}")
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            owner = where if i == 0 else repr(".".join(attribute.split(".")[:i]))
            raise _bad(kind, f"{owner} has no attribute {part!r}{hint}", key)
        obj = getattr(obj, part)
    return obj


def resolve_object(kind: str):
    """The user surrogate's function or factory named by ``kind``; ``ConfigError`` if missing or not callable."""
    obj = _named_object(kind, KEY)
    attribute = kind.rpartition(":")[2]
    if not callable(obj):
        raise _bad(kind, f"{attribute!r} is a {type(obj).__name__}, not a function u(t, x) or a factory f(pde)")
    return obj


def is_factory(obj) -> bool:
    """True when ``obj`` takes one argument (a factory ``f(pde)``), False when it takes two (``u(t, x)``)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False  # no introspectable signature (some builtins and C extensions): use it as u(t, x)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in sig.parameters.values() if p.kind in positional and p.default is p.empty]
    if len(required) in (1, 2):
        return len(required) == 1

    def binds(n):
        try:
            sig.bind(*range(n))
        except TypeError:
            return False
        return True

    return not binds(2) and binds(1)


def load_user_surrogate(kind: str, pde, key=None):
    """The checked surrogate named by ``kind`` for ``pde`` (``ConfigError`` for ``surrogate.kind`` on any problem)."""
    import jax

    from ..surrogates import SurrogateError, check_surrogate

    obj = resolve_object(kind)
    name = kind.rpartition(":")[2]
    if is_factory(obj):
        try:
            obj = obj(pde)
        except Exception as err:
            raise _bad(kind, f"{name}(pde) raised {type(err).__name__}: {err}") from err
    try:
        return check_surrogate(obj, pde, jax.random.key(0) if key is None else key)
    except SurrogateError as err:
        raise _bad(kind, f"{name} is not a usable surrogate: {err}") from None


def load_user_pde(kind: str, dim: int, parameters: dict | None = None):
    """The PDE named by ``equation.name = kind``: an ``AbstractSemilinearPDE``, or a factory called as
    ``f(dim=dim, **parameters)`` returning one (``ConfigError`` for ``equation.name`` on any problem)."""
    from .._pde import AbstractSemilinearPDE

    obj = _named_object(kind, EQUATION_KEY)
    name = kind.rpartition(":")[2]
    parameters = dict(parameters or {})
    if not isinstance(obj, AbstractSemilinearPDE):
        if not callable(obj):
            raise _bad(kind, f"{name!r} is a {type(obj).__name__}, not a PDE (scasml.SemilinearPDE or another "
                       "AbstractSemilinearPDE) nor a factory f(dim, **parameters) returning one", EQUATION_KEY)
        try:
            obj = obj(dim=dim, **parameters)
        except Exception as err:
            raise _bad(kind, f"{name}(dim={dim}, **equation.parameters) raised {type(err).__name__}: {err}",
                       EQUATION_KEY) from err
        if not isinstance(obj, AbstractSemilinearPDE):
            raise _bad(kind, f"{name}(dim={dim}, ...) returned a {type(obj).__name__}, not a PDE "
                       "(scasml.SemilinearPDE or another AbstractSemilinearPDE)", EQUATION_KEY)
    elif parameters:
        raise ConfigError(f"equation.parameters: {name!r} is a PDE object, not a factory: it takes no parameters "
                          f"(got {', '.join(sorted(parameters))})")
    if obj.dim != dim:
        raise ConfigError(f"equation.dim: {dim}, but the PDE {kind!r} has dim={obj.dim}")
    return obj


def _sha256(path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def describe(kind: str) -> dict:
    """What ``kind`` resolved to (for the run directory): the function, its source file and that file's SHA-256."""
    target, attribute, is_file = parse_python_kind(kind)
    if is_file:
        source = target
    else:
        module = sys.modules.get(target)
        source = getattr(module, "__file__", None)
    record = {"kind": kind, "function": attribute, ("file" if is_file else "module"): target}
    if source:
        record["source_file"] = str(source)
        record["source_sha256"] = _sha256(source)
    return record
