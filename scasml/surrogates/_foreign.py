"""Networks trained elsewhere: load a plain MLP û(t, x) from a safetensors or NumPy ``.npz`` state dict.

Most PINNs are trained in PyTorch (DeepXDE's default backend). ``load_mlp_weights`` reads the weights of a
fully connected network — ``Linear → φ → Linear → φ → … → Linear`` with one scalar output and the same
activation φ (``"tanh"``, ``"sin"`` or ``"softplus"``) after every hidden layer — from a file written without
pickle, and returns a scasml surrogate:

* a ``scasml.PINN`` when every hidden layer has the same width (DeepXDE's ``[d + 1] + [width] * depth + [1]``),
  so the PINN's forward-Laplacian sweep computes the residual;
* an ``MLPSurrogate`` (autodiff derivatives) for any other widths, or no hidden layer at all.

Input order. DeepXDE feeds a time-dependent network the columns ``[x_1, …, x_d, t]`` (``GeometryXTime`` stacks
the spatial coordinates first and time last), which is also ``scasml.PINN``'s order: ``layout="xt"``, the
default. A network trained on ``[t, x_1, …, x_d]`` loads with ``layout="tx"``. Time means the same as in the
scasml PDE (a terminal-value problem on [0, T]); a network trained in forward time τ = T − t must be
re-expressed in t first.

Export from PyTorch (``torch.nn.Sequential``; keys ``0.weight``, ``0.bias``, ``2.weight``, …; inside a module
as ``self.net``: ``net.0.weight``, …)::

    from safetensors.torch import save_file
    net = torch.nn.Sequential(torch.nn.Linear(d + 1, 50), torch.nn.Tanh(), torch.nn.Linear(50, 50),
                              torch.nn.Tanh(), torch.nn.Linear(50, 1))   # trained on torch.cat([x, t], 1)
    save_file(net.state_dict(), "u.safetensors")
    # or, without safetensors:
    np.savez("u.npz", **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})

Export from DeepXDE (PyTorch backend; ``dde.nn.FNN`` keeps its layers in ``linears``: keys
``linears.0.weight``, ``linears.0.bias``, …)::

    net = dde.nn.FNN([d + 1] + [50] * 5 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net); model.compile("adam", lr=1e-3); model.train(iterations=10000)
    save_file(model.net.state_dict(), "u.safetensors")

A checkpoint written by ``model.save(...)`` is a pickle: convert it once in PyTorch,
``save_file(torch.load("model-10000.pt", weights_only=True)["model_state_dict"], "u.safetensors")``.
(TensorFlow backend, without dropout: Keras kernels are (in, out),
``np.savez("u.npz", **{f"{i}.{k}": v.numpy() for i, dense in enumerate(model.net.denses)
for k, v in (("weight", dense.kernel), ("bias", dense.bias))})``, loaded with ``weight_layout="flax"``.)
DeepXDE's ``apply_output_transform`` / ``apply_feature_transform`` are Python functions, not weights, and are
not in the state dict: the file holds the bare network. The one output transform rebuilt here is scasml's PINN
form û = g(x) + (T − t)/T · N(x, t) (``terminal_transform=True`` with ``pde`` given). Per-layer activation
lists and adaptive (LAAF) activations are not supported.

Load::

    from scasml.surrogates import load_mlp_weights
    u_hat = load_mlp_weights("u.safetensors", activation="tanh", pde=pde)   # or dim=10 instead of pde
    out = scasml.calibrate(u_hat, pde, t, x, scasml.MultilevelPicard(2, 10), key=jax.random.key(1))

Files are read without pickle: a PyTorch ``.pt``/``.pth`` file (a pickle) is refused with the conversion recipe.
Every problem (a missing tensor, a shape that does not chain, a non-finite weight, a truncated file) raises a
``WeightFileError`` that names the file and the tensor.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import zipfile
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import is_integer, is_real
from ._base import AbstractSurrogate
from ._checkpoint import register_architecture
from ._pinn import _ACTIVATIONS, PINN, parameter_dtype

ACTIVATIONS = ("tanh", "sin", "softplus")
_LAYER_NAME = re.compile(r"^(?:(?P<stem>.+)\.)?(?P<index>\d+)\.(?P<kind>weight|bias)$")
_MAX_BYTES = 8 * 2**30  # a weight file larger than this is refused unread (a mistaken path to a huge file)
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")
_CONVERT = (
    "convert it in PyTorch, where it can be unpickled safely: "
    "`from safetensors.torch import save_file; save_file(torch.load(path, weights_only=True), 'u.safetensors')` "
    "(for a DeepXDE checkpoint: `torch.load(path, weights_only=True)['model_state_dict']`), or "
    "`np.savez('u.npz', **{k: v.numpy() for k, v in state_dict.items()})`"
)


class WeightFileError(ValueError):
    """A weight file cannot be loaded as an MLP (unreadable, pickled, missing or mis-shaped tensors)."""


class MLPSurrogate(AbstractSurrogate):
    """û(t, x) = MLP([x, t]) with any layer widths: ``h ← φ(W h + b)`` per hidden layer, then ``W h + b``.

    ``weights[i]`` has shape (out_i, in_i) (PyTorch's ``nn.Linear`` layout), ``biases[i]`` shape (out_i,);
    ``in_0 = d + 1`` and the last ``out`` is 1. With ``terminal`` (the PDE's g) and ``horizon`` T given,
    û(t, x) = g(x) + (T − t)/T · MLP([x, t]), as for ``scasml.PINN``. Derivatives come from autodiff.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    dim: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    terminal: Callable | None = eqx.field(static=True)

    def __init__(
        self,
        weights: Sequence,
        biases: Sequence,
        activation: str,
        horizon: float = 1.0,
        terminal: Callable | None = None,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {list(ACTIVATIONS)}")
        weights, biases = tuple(jnp.asarray(w) for w in weights), tuple(jnp.asarray(b) for b in biases)
        if not weights or len(weights) != len(biases):
            raise ValueError(
                f"MLPSurrogate needs one bias per weight, got {len(weights)} weights and {len(biases)} biases"
            )
        fan_in = weights[0].shape[-1] if weights[0].ndim == 2 else None
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if w.ndim != 2 or w.shape[1] != fan_in or b.shape != (w.shape[0],):
                raise ValueError(
                    f"MLPSurrogate layer {i}: weight {w.shape} and bias {b.shape} do not chain (expected a weight "
                    f"(out, {fan_in}) and a bias (out,))"
                )
            fan_in = w.shape[0]
        kinds = sorted({str(a.dtype) for a in (*weights, *biases)})
        if len(kinds) != 1 or kinds[0] not in ("float32", "float64"):
            raise ValueError(f"MLPSurrogate: weights and biases must be all float32 or all float64, got {kinds}")
        if weights[-1].shape[0] != 1:
            raise ValueError(f"MLPSurrogate: the last layer has {weights[-1].shape[0]} outputs; û must be scalar")
        if weights[0].shape[1] < 2:
            raise ValueError("MLPSurrogate: the first layer must take [x, t] with x of dimension at least 1")
        if not (is_real(horizon) and math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"MLPSurrogate horizon T must be a positive finite number, got {horizon!r}")
        self.weights, self.biases = weights, biases
        self.dim, self.activation, self.horizon = int(weights[0].shape[1]) - 1, activation, float(horizon)
        self.terminal = None if terminal is None else (lambda x, _g=terminal: _g(x))

    def __call__(self, t, x):
        act = _ACTIVATIONS[self.activation]
        h = jnp.concatenate([x, jnp.reshape(t, (1,)).astype(x.dtype)])
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = act(w @ h + b)
        out = jnp.reshape(self.weights[-1] @ h + self.biases[-1], ())
        if self.terminal is None:
            return out
        return self.terminal(x) + (self.horizon - t) / self.horizon * out

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer sizes (d + 1, hidden widths …, 1), as DeepXDE's ``layer_sizes``."""
        return (self.dim + 1, *(int(w.shape[0]) for w in self.weights))

    def architecture(self) -> dict:
        return {
            "kind": "mlp",
            "dim": self.dim,
            "widths": list(self.widths),
            "activation": self.activation,
            "horizon": self.horizon,
            "terminal_transform": self.terminal is not None,
        }


def _build_mlp(arch: dict, pde, dtype) -> MLPSurrogate:
    """Checkpoint builder: an ``MLPSurrogate`` of ``arch``'s widths (zeros, to be filled by ``load``)."""
    from ._checkpoint import built_in_terminal

    terminal = built_in_terminal(arch, pde, "MLP")
    widths = [int(n) for n in arch["widths"]]
    dtype = dtype if dtype is not None else jnp.result_type(float)
    weights = [jnp.zeros((n_out, n_in), dtype) for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)]
    biases = [jnp.zeros((n_out,), dtype) for n_out in widths[1:]]
    return MLPSurrogate(weights, biases, arch["activation"], horizon=arch["horizon"], terminal=terminal)


register_architecture("mlp", _build_mlp)


def _error(path, message) -> WeightFileError:
    return WeightFileError(f"{path!r}: {message}")


def _read_bytes(path: str) -> bytes:
    """The file's bytes; refuses anything that is not a regular file (a FIFO or device could block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except OSError as err:
        raise _error(path, f"cannot be opened: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a directory" if stat.S_ISDIR(mode)
                else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode)
                else "a special file"
            )
            raise _error(path, f"is {kind}, not a regular file: give the path of a .safetensors or .npz weight file")
        if info.st_size > _MAX_BYTES:
            raise _error(path, f"is {info.st_size / 2**30:.1f} GiB, far more than an MLP's weights; refused unread")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _looks_like_safetensors(data: bytes) -> bool:
    """8-byte little-endian header length, then a JSON header: the safetensors layout."""
    if len(data) < 9:
        return False
    (length,) = struct.unpack("<Q", data[:8])
    return 2 <= length <= len(data) - 8 and data[8:9] == b"{"


def _looks_like_pickle(data: bytes) -> bool:
    """The PROTO opcode of pickle protocols 2 to 5 (legacy torch.save files start with b"\\x80\\x02")."""
    return data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def _read_safetensors(path: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        from safetensors import numpy as st_numpy
    except ImportError:
        raise _error(path, "is a safetensors file (by its name or content); reading it needs the `safetensors` package "
                           "(pip install safetensors)") from None
    try:
        return dict(st_numpy.load(data))
    except KeyError as err:  # a dtype that NumPy lacks (bfloat16, float8)
        raise _error(path, f"holds tensors of dtype {err.args[0]}, which NumPy cannot represent: save float32 "
                           "tensors ({k: v.float() for k, v in state_dict.items()})") from None
    except Exception as err:  # safetensors raises SafetensorError for a truncated or corrupt file
        raise _error(path, f"is not a readable safetensors file (truncated or corrupt?): {err}") from None


def _check_npz_entries(path: str, archive: zipfile.ZipFile) -> None:
    """Refuse, before anything is inflated, an archive that inflates beyond ``_MAX_BYTES`` and a .npy entry whose
    header announces more data than the entry holds (an absurd shape) or object (pickled) arrays."""
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > _MAX_BYTES:
        raise _error(path, f"inflates to {total / 2**30:.1f} GiB, far more than an MLP's weights; refused unread")
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as entry:
            version = np.lib.format.read_magic(entry)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"entry {info.filename!r} has .npy format version {version}, expected 1.0 or 2.0")
            npy = np.lib.format
            shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(entry)
            held = info.file_size - entry.tell()
        if dtype.hasobject:
            raise _error(path, "holds pickled (object) arrays, which scasml does not read: save plain numeric arrays "
                               "with np.savez")
        announced = math.prod(shape) * dtype.itemsize
        if announced > held:
            raise _error(path, f"tensor '{info.filename[:-4]}' announces shape {shape} of {dtype} ({announced} bytes) "
                               f"but its entry holds {held} bytes: the file is corrupt")


def _read_npz(path: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_npz_entries(path, archive)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except WeightFileError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise _error(path, "holds pickled (object) arrays, which scasml does not read: save plain numeric "
                               "arrays with np.savez") from None
        raise _error(path, f"is not a readable .npz file (truncated or corrupt?): {err}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        what = f"{type(err).__name__}: {err}"
        raise _error(path, f"is not a readable .npz file (truncated or corrupt?): {what}") from None


def read_tensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors or NumPy ``.npz`` file, by name (the format is told by content, not suffix).

    Raises ``WeightFileError`` for a path that is not a regular file (a FIFO, directory or device), a PyTorch
    pickle (``torch.save``'s zip or legacy format; the message tells how to convert it), a single ``.npy`` array,
    pickled object arrays, and a truncated or corrupt file.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    suffix = os.path.splitext(path)[1].lower()
    if not data:
        raise _error(path, "is empty (0 bytes): the weight file was not written, or was cut off")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip: .npz, or torch.save's format (which holds data.pkl)
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile as err:
            raise _error(path, f"is a truncated or corrupt zip (.npz) file: {err}") from None
        if any(name.endswith(".pkl") for name in names):
            raise _error(path, f"is a PyTorch file written by torch.save (a pickle), which scasml does not load; "
                               f"{_CONVERT}")
        return _read_npz(path, data)
    # safetensors first: its first byte is the low byte of the header length, 0x80 for 1 header length in 256
    safetensors = _looks_like_safetensors(data)
    if not safetensors and (_looks_like_pickle(data) or suffix in _PICKLE_SUFFIXES):
        raise _error(path, f"is a pickle (e.g. a legacy torch.save file), which scasml does not load; {_CONVERT}")
    if data[:6] == b"\x93NUMPY":
        raise _error(path, "is a single .npy array, not a state dict: save every tensor by name with "
                           "np.savez(path, **tensors)")
    if safetensors or suffix == ".safetensors":
        return _read_safetensors(path, data)
    if suffix == ".npz":
        return _read_npz(path, data)
    raise _error(path, "is neither a safetensors nor a NumPy .npz file")


def _layer_names(path, tensors: dict, prefix: str | None, layers: Sequence[str] | None) -> list[tuple[str, str]]:
    """The (weight name, bias name) of each linear layer, in order."""
    if layers is not None:
        stems = [str(name).rstrip(".") for name in layers]
        pairs = [(f"{stem}.weight", f"{stem}.bias") for stem in stems]
    else:
        groups: dict[str, dict[int, set[str]]] = {}
        strays = []
        for name in tensors:
            match = _LAYER_NAME.match(name)
            if match is None:
                strays.append(name)
                continue
            groups.setdefault(match["stem"] or "", {}).setdefault(int(match["index"]), set()).add(match["kind"])
        if prefix is not None:
            prefix = prefix.rstrip(".")
            if prefix not in groups:
                raise _error(path, f"no tensors named '{prefix}.<i>.weight' / '{prefix}.<i>.bias'; layer prefixes "
                                   f"found: {sorted(groups) or 'none'}")
        else:
            if not groups:
                raise _error(path, "no tensors named like nn.Linear parameters ('<prefix>.<i>.weight' and "
                                   "'<prefix>.<i>.bias', e.g. 'linears.0.weight' or 'net.0.weight'; pass layers=[...] "
                                   f"for other names); found {sorted(tensors)[:10]}")
            if len(groups) > 1:
                raise _error(path, f"holds layers under several prefixes {sorted(groups)}: pass prefix=... to pick "
                                   "the network")
            prefix = next(iter(groups))
            if strays:
                raise _error(path, f"holds tensors that are not nn.Linear weights or biases: {sorted(strays)[:10]}. "
                                   "Only a plain MLP is read, and an extra parameter (a normalisation, a scale, an "
                                   "adaptive activation) would change the function: fold it into the linear layers, "
                                   f"or pass prefix={prefix!r} to read the layers alone")
        stems = [f"{prefix}.{i}" if prefix else str(i) for i in sorted(groups[prefix])]
        pairs = [(f"{stem}.weight", f"{stem}.bias") for stem in stems]
    for wname, bname in pairs:
        if wname not in tensors:
            raise _error(path, f"missing tensor '{wname}'")
        if bname not in tensors:
            raise _error(path, f"missing tensor '{bname}' (for a layer built with bias=False, save a zero bias)")
    return pairs


def _float_array(path, name, array, dtype) -> np.ndarray:
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise _error(path, f"tensor '{name}' has dtype {array.dtype}; weights must be floating point")
    with np.errstate(over="ignore"):
        converted = array.astype(dtype)
    bad = ~np.isfinite(converted)
    if bad.any():
        what = "non-finite (NaN or inf)" if not np.isfinite(array).all() else f"outside the range of {dtype.name}"
        raise _error(path, f"tensor '{name}' has {int(bad.sum())} {what} entries (of {array.size})")
    return converted


def _checked_layers(path, tensors, pairs, dim, weight_layout, dtype):
    """(weight (out, in), bias (out,)) per layer, checked to chain from d + 1 inputs to one output."""
    orient = "(out, in)" if weight_layout == "torch" else "(in, out)"
    weights, biases = [], []
    fan_in, previous = dim + 1, None
    for wname, bname in pairs:
        w = _float_array(path, wname, tensors[wname], dtype)
        b = _float_array(path, bname, tensors[bname], dtype)
        if w.ndim != 2:
            raise _error(path, f"tensor '{wname}' has shape {w.shape}; a linear layer's weight is 2-D {orient}. "
                               "Layers other than nn.Linear (normalisation, convolution) are not supported")
        shape = w.shape
        if weight_layout == "flax":
            w = w.T
        n_out, n_in = w.shape
        if n_in != fan_in:
            if previous is None:
                raise _error(path, f"tensor '{wname}' of shape {shape} {orient} takes {n_in} inputs, expected "
                                   f"dim + 1 = {fan_in} (x of dimension {dim}, and t)")
            raise _error(path, f"inconsistent widths: tensor '{wname}' of shape {shape} {orient} takes {n_in} "
                               f"inputs, but the layer before it, '{previous}', has {fan_in} outputs")
        if b.shape != (n_out,):
            raise _error(path, f"tensor '{bname}' has shape {b.shape}, expected ({n_out},) to match '{wname}'")
        weights.append(w)
        biases.append(b)
        fan_in, previous = n_out, wname
    if fan_in != 1:
        raise _error(path, f"the last layer '{previous}' has {fan_in} outputs; û(t, x) must be scalar (one output)")
    return weights, biases


def load_mlp_weights(
    path,
    *,
    activation: str,
    dim: int | None = None,
    pde=None,
    terminal_transform: bool = False,
    layout: str = "xt",
    weight_layout: str = "torch",
    prefix: str | None = None,
    layers: Sequence[str] | None = None,
    into: str = "auto",
    dtype=None,
) -> PINN | MLPSurrogate:
    """Load a plain MLP û(t, x) from a safetensors or ``.npz`` state dict (recipes: see the module docstring).

    **Arguments:**

    - ``path``: a ``.safetensors`` or ``.npz`` file of tensors named ``<prefix>.<i>.weight`` / ``<prefix>.<i>.bias``
      (``linears.0.weight`` from DeepXDE's ``FNN``; ``0.weight`` or ``net.0.weight`` from ``nn.Sequential``),
      layers taken in the order of ``i``.
    - ``activation``: ``"tanh"``, ``"sin"`` or ``"softplus"`` (PyTorch's ``Softplus()``, β = 1), the same after
      every hidden layer; the output layer is linear. The file does not record it, so it must be given.
    - ``dim``: d, the spatial dimension (the first layer takes d + 1 inputs); or give ``pde``.
    - ``pde``: the ``scasml.SemilinearPDE`` (gives d and T; needed for ``terminal_transform``).
    - ``terminal_transform``: û = g(x) + (T − t)/T · MLP with g = ``pde.terminal``, as ``scasml.PINN(terminal=g)``.
    - ``layout``: input order, ``"xt"`` ([x, t]: DeepXDE's ``GeometryXTime`` and ``scasml.PINN``) or ``"tx"``.
    - ``weight_layout``: ``"torch"`` (weights (out, in), ``nn.Linear``) or ``"flax"`` (kernels (in, out), as
      Flax and Keras store them).
    - ``prefix``: the layers' common name prefix, when the file holds several networks or other tensors.
    - ``layers``: the layers' names in order, for other naming schemes (``["fc1", "fc2", "out"]`` reads
      ``fc1.weight``, ``fc1.bias``, …); other tensors are then ignored.
    - ``into``: ``"auto"`` (a ``PINN`` when all hidden widths are equal, else an ``MLPSurrogate``), ``"pinn"``
      (a ``PINN`` or an error) or ``"mlp"`` (always an ``MLPSurrogate``).
    - ``dtype``: parameter dtype, float32 or float64 (default: JAX's default float, float32 unless x64 is
      enabled; float64 needs x64).

    **Returns:** a ``scasml.PINN`` (equal hidden widths: its forward-Laplacian sweep applies) or an
    ``MLPSurrogate``, computing the file's network on [x, t].

    **Raises:** ``WeightFileError`` naming the file and the tensor (unreadable, pickled or non-regular file,
    missing tensor, shapes that do not chain, non-finite weights); ``ValueError`` for bad arguments.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    if layout not in ("xt", "tx"):
        raise ValueError(f"layout must be 'xt' (inputs [x, t], DeepXDE's order) or 'tx' ([t, x]), got {layout!r}")
    if weight_layout not in ("torch", "flax"):
        raise ValueError(f"weight_layout must be 'torch' ((out, in)) or 'flax' ((in, out)), got {weight_layout!r}")
    if into not in ("auto", "pinn", "mlp"):
        raise ValueError(f"into must be 'auto', 'pinn' or 'mlp', got {into!r}")
    if prefix is not None and layers is not None:
        raise ValueError("give prefix or layers, not both")
    if layers is not None and (isinstance(layers, str) or len(layers) == 0):
        raise ValueError(f"layers must be a non-empty sequence of layer names, got {layers!r}")
    if pde is not None:
        if dim is not None and dim != pde.dim:
            raise ValueError(f"dim={dim!r} does not match the PDE's dimension {pde.dim}")
        dim, horizon, terminal = pde.dim, float(pde.horizon), (pde.terminal if terminal_transform else None)
    else:
        if terminal_transform:
            raise ValueError("terminal_transform=True needs the PDE (pde=...), whose terminal condition g it uses")
        horizon, terminal = 1.0, None
    if not (is_integer(dim) and dim >= 1):
        raise ValueError(f"give the spatial dimension: dim must be a positive integer (or pass pde=), got {dim!r}")
    dim = int(dim)
    dtype = parameter_dtype(dtype, "load_mlp_weights")

    path = os.fspath(path)
    tensors = read_tensors(path)
    pairs = _layer_names(path, tensors, prefix, layers)
    weights, biases = _checked_layers(path, tensors, pairs, dim, weight_layout, dtype)
    if layout == "tx":  # move the t column last: both surrogates take [x, t]
        weights[0] = np.concatenate([weights[0][:, 1:], weights[0][:, :1]], axis=1)

    hidden = [w.shape[0] for w in weights[:-1]]
    uniform = bool(hidden) and len(set(hidden)) == 1
    if into == "pinn" and not uniform:
        raise _error(path, f"hidden widths {hidden}: scasml.PINN needs at least one hidden layer and the same width "
                           "for all of them; use into='auto' or 'mlp' for an MLPSurrogate")
    if into == "mlp" or not uniform:
        return MLPSurrogate(weights, biases, activation, horizon=horizon, terminal=terminal)
    # shapes only: building the PINN abstractly skips its random initialisation
    skeleton = eqx.filter_eval_shape(
        lambda: PINN(dim, horizon, jax.random.key(0), width=hidden[0], depth=len(hidden), activation=activation,
                     terminal=terminal, dtype=dtype)
    )
    targets = [leaf for layer in skeleton.mlp.layers for leaf in (layer.weight, layer.bias)]
    values = [a for w, b in zip(weights, biases, strict=True) for a in (w, b)]
    if [tuple(t.shape) for t in targets] != [a.shape for a in values]:  # equinox: weight (out, in), bias (out,)
        raise RuntimeError(f"PINN parameter shapes {[t.shape for t in targets]} differ from the file's layers")
    where = lambda p: [leaf for layer in p.mlp.layers for leaf in (layer.weight, layer.bias)]
    pinn = eqx.tree_at(where, skeleton, [jnp.asarray(a) for a in values])
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(pinn)):
        raise RuntimeError("scasml.PINN has parameters that load_mlp_weights does not fill")
    return pinn
