"""Networks trained elsewhere: weight files written by the safetensors library and by numpy.savez (and, when
installed, by PyTorch itself) load into surrogates that match a NumPy re-implementation of the same network."""

import io
import json
import os
import pickle
import struct
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scasml
from scasml.surrogates import MLPSurrogate, WeightFileError, load_mlp_weights, read_tensors


def save_file(tensors, path):
    """Write ``tensors`` with the safetensors library (the test is skipped where it is not installed)."""
    pytest.importorskip("safetensors.numpy").save_file(tensors, path)


NUMPY_ACTIVATIONS = {"tanh": np.tanh, "sin": np.sin, "softplus": lambda a: np.logaddexp(0.0, a)}


def make_layers(sizes, seed=0):
    """Random float32 (weight (out, in), bias (out,)) pairs, scaled like a trained network (O(1) activations)."""
    rng = np.random.default_rng(seed)
    return [
        ((rng.normal(size=(n_out, n_in)) * 1.5 / np.sqrt(n_in)).astype(np.float32),
         rng.normal(scale=0.5, size=n_out).astype(np.float32))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def state_dict(layers, stem="linears", step=1):
    """PyTorch names: DeepXDE's FNN (``linears.i``) or nn.Sequential (``i`` in steps of 2, ``net.i``)."""
    out = {}
    for j, (w, b) in enumerate(layers):
        key = f"{stem}.{j * step}" if stem else str(j * step)
        out[f"{key}.weight"], out[f"{key}.bias"] = w, b
    return out


def reference(layers, activation, t, x, order="xt"):
    """The network in float64 NumPy on the inputs [x, t] (or [t, x]); t: (N,), x: (N, d) -> (N,)."""
    t, x = np.asarray(t, np.float64), np.asarray(x, np.float64)
    h = np.concatenate([x, t[:, None]], 1) if order == "xt" else np.concatenate([t[:, None], x], 1)
    for w, b in layers[:-1]:
        h = NUMPY_ACTIVATIONS[activation](h @ w.T.astype(np.float64) + b)
    w, b = layers[-1]
    return (h @ w.T.astype(np.float64) + b)[:, 0]


def points(dim, n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, n).astype(np.float32), rng.normal(size=(n, dim)).astype(np.float32)


def values(surrogate, t, x):
    return np.asarray(jax.jit(jax.vmap(surrogate))(jnp.asarray(t), jnp.asarray(x)))


def scale(u):
    return float(np.max(np.abs(u))) + 1.0


@pytest.mark.parametrize("activation", ["tanh", "sin", "softplus"])
def test_deepxde_fnn_safetensors_loads_as_pinn(tmp_path, activation):
    dim, layers = 4, make_layers([5, 16, 16, 16, 1])
    path = tmp_path / "u.safetensors"
    save_file(state_dict(layers), str(path))
    u_hat = load_mlp_weights(path, activation=activation, dim=dim)
    assert isinstance(u_hat, scasml.PINN)
    assert (u_hat.dim, u_hat.width, u_hat.depth, u_hat.activation) == (dim, 16, 3, activation)
    t, x = points(dim)
    want = reference(layers, activation, t, x)
    np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_sequential_npz_with_ragged_widths_loads_as_mlp(tmp_path, activation):
    dim, layers = 3, make_layers([4, 32, 8, 1], seed=2)
    path = tmp_path / "u.npz"
    np.savez(path, **state_dict(layers, stem="net", step=2))  # net.0, net.2, net.4 (activations in between)
    u_hat = load_mlp_weights(path, activation=activation, dim=dim)
    assert isinstance(u_hat, MLPSurrogate)
    assert u_hat.widths == (4, 32, 8, 1)
    t, x = points(dim)
    want = reference(layers, activation, t, x)
    np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))


def test_bare_sequential_names_tx_order_and_flax_layout(tmp_path):
    dim, layers = 2, make_layers([3, 8, 8, 1], seed=3)
    t, x = points(dim)
    want = reference(layers, "tanh", t, x, order="tx")
    np.savez(tmp_path / "tx.npz", **state_dict(layers, stem="", step=2))  # 0.weight, 2.weight, 4.weight
    u_tx = load_mlp_weights(tmp_path / "tx.npz", activation="tanh", dim=dim, layout="tx")
    np.testing.assert_allclose(values(u_tx, t, x), want, rtol=0, atol=3e-6 * scale(want))
    kernels = {k: (v.T if k.endswith("weight") else v) for k, v in state_dict(layers).items()}  # (in, out)
    save_file({k: np.ascontiguousarray(v) for k, v in kernels.items()}, str(tmp_path / "flax.safetensors"))
    u_flax = load_mlp_weights(tmp_path / "flax.safetensors", activation="tanh", dim=dim, layout="tx",
                              weight_layout="flax")
    np.testing.assert_allclose(values(u_flax, t, x), values(u_tx, t, x), rtol=0, atol=1e-6 * scale(want))


def test_prefix_and_layer_names_select_the_network(tmp_path):
    dim, layers = 2, make_layers([3, 8, 1], seed=4)
    other = make_layers([3, 4, 1], seed=5)
    tensors = {**state_dict(layers, stem="u_net"), **state_dict(other, stem="v_net"), "log_lambda": np.zeros(1)}
    np.savez(tmp_path / "two.npz", **tensors)
    with pytest.raises(WeightFileError, match=r"several prefixes \['u_net', 'v_net'\].*prefix="):
        load_mlp_weights(tmp_path / "two.npz", activation="tanh", dim=dim)
    u_hat = load_mlp_weights(tmp_path / "two.npz", activation="tanh", dim=dim, prefix="u_net")
    t, x = points(dim)
    want = reference(layers, "tanh", t, x)
    np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))
    named = {"fc1.weight": layers[0][0], "fc1.bias": layers[0][1], "out.weight": layers[1][0], "out.bias": layers[1][1]}
    save_file(named, str(tmp_path / "named.safetensors"))
    with pytest.raises(WeightFileError, match=r"no tensors named like nn.Linear.*layers=\[\.\.\.\]"):
        load_mlp_weights(tmp_path / "named.safetensors", activation="tanh", dim=dim)
    u_named = load_mlp_weights(tmp_path / "named.safetensors", activation="tanh", dim=dim, layers=["fc1", "out"])
    np.testing.assert_allclose(values(u_named, t, x), want, rtol=0, atol=3e-6 * scale(want))


def test_float64_and_float16_files_are_cast_to_the_parameter_dtype(tmp_path):
    dim, layers = 2, make_layers([3, 8, 1], seed=6)
    tensors = state_dict(layers)
    save_file({k: v.astype(np.float64) for k, v in tensors.items()}, str(tmp_path / "f64.safetensors"))
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(tmp_path / "f16.safetensors"))
    t, x = points(dim)
    want = reference(layers, "tanh", t, x)
    u64 = load_mlp_weights(tmp_path / "f64.safetensors", activation="tanh", dim=dim)
    assert u64.mlp.layers[0].weight.dtype == jnp.float32
    np.testing.assert_allclose(values(u64, t, x), want, rtol=0, atol=3e-6 * scale(want))
    u16 = load_mlp_weights(tmp_path / "f16.safetensors", activation="tanh", dim=dim)
    np.testing.assert_allclose(values(u16, t, x), want, rtol=0, atol=3e-2 * scale(want))  # float16 weights


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.int32])
def test_parameter_dtype_must_be_float32_or_float64(tmp_path, dtype):
    np.savez(tmp_path / "u.npz", **state_dict(make_layers([3, 8, 1])))
    with pytest.raises(ValueError, match="load_mlp_weights: dtype must be float32 or float64"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=2, dtype=dtype)
    with pytest.raises(ValueError, match=r"MLPSurrogate: weights and biases must be all float32 or all float64"):
        MLPSurrogate([np.ones((4, 3), dtype), np.ones((1, 4), dtype)], [np.zeros(4, dtype), np.zeros(1, dtype)], "tanh")


def _numpy_fd_gradient(layers, activation, t, x, h=1e-5):
    """Central differences of the float64 reference: (∂_t u, ∇_x u) at each point."""
    t64, x64 = t.astype(np.float64), x.astype(np.float64)
    dt = (reference(layers, activation, t64 + h, x64) - reference(layers, activation, t64 - h, x64)) / (2 * h)
    dx = np.stack([
        (reference(layers, activation, t64, x64 + h * e) - reference(layers, activation, t64, x64 - h * e)) / (2 * h)
        for e in np.eye(x.shape[1])
    ], 1)
    return dt, dx


def _numpy_fd_laplacian(layers, activation, t, x, h=1e-3):
    t64, x64 = t.astype(np.float64), x.astype(np.float64)
    centre = reference(layers, activation, t64, x64)
    return sum(
        (reference(layers, activation, t64, x64 + h * e) - 2 * centre + reference(layers, activation, t64, x64 - h * e))
        / h**2
        for e in np.eye(x.shape[1])
    )


@pytest.mark.parametrize("sizes", [[4, 16, 16, 1], [4, 24, 12, 1]], ids=["pinn", "mlp"])
def test_gradient_and_laplacian_match_finite_differences(tmp_path, sizes):
    dim, layers = 3, make_layers(sizes, seed=7)
    save_file(state_dict(layers), str(tmp_path / "u.safetensors"))
    u_hat = load_mlp_weights(tmp_path / "u.safetensors", activation="sin", dim=dim)
    t, x = points(dim, n=8)
    dt_want, dx_want = _numpy_fd_gradient(layers, "sin", t, x)
    lap_want = _numpy_fd_laplacian(layers, "sin", t, x)
    tj, xj = jnp.asarray(t), jnp.asarray(x)
    _, dx = jax.vmap(lambda ti, xi: scasml.value_and_gradient(u_hat, ti, xi))(tj, xj)
    dt = jax.vmap(lambda ti, xi: scasml.time_derivative(u_hat, ti, xi))(tj, xj)
    lap = jax.vmap(lambda ti, xi: scasml.laplacian(u_hat, ti, xi))(tj, xj)
    np.testing.assert_allclose(np.asarray(dx), dx_want, rtol=0, atol=2e-5 * scale(dx_want))
    np.testing.assert_allclose(np.asarray(dt), dt_want, rtol=0, atol=2e-5 * scale(dt_want))
    np.testing.assert_allclose(np.asarray(lap), lap_want, rtol=0, atol=1e-4 * scale(lap_want))


def test_pinn_residual_sweep_matches_autodiff_of_a_jax_reference(tmp_path):
    """The loaded PINN's fast residual (one forward sweep) equals autodiff of an independent JAX forward pass."""
    pde = scasml.equations.get("heat", dim=3)
    layers = make_layers([4, 16, 16, 1], seed=8)
    save_file(state_dict(layers), str(tmp_path / "u.safetensors"))
    u_hat = load_mlp_weights(tmp_path / "u.safetensors", activation="softplus", pde=pde)
    assert u_hat.residual_terms(jnp.float32(0.5), jnp.zeros(3), pde.dynamics.mu, pde.dynamics.sigma) is not None

    def jax_reference(t, x):
        h = jnp.concatenate([x, jnp.reshape(t, (1,))])
        for w, b in layers[:-1]:
            h = jax.nn.softplus(jnp.asarray(w) @ h + b)
        return (jnp.asarray(layers[-1][0]) @ h + layers[-1][1])[0]

    t, x = points(3, n=8)
    residual = jax.jit(jax.vmap(lambda ti, xi: scasml.residual(pde, u_hat, ti, xi)))
    want = jax.jit(jax.vmap(lambda ti, xi: scasml.residual(pde, scasml.FunctionSurrogate(jax_reference), ti, xi)))
    got, ref = np.asarray(residual(t, x)), np.asarray(want(t, x))
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * scale(ref))


def test_terminal_transform_and_calibrate(tmp_path):
    pde = scasml.equations.get("heat", dim=3)
    layers = make_layers([4, 8, 8, 1], seed=9)
    save_file(state_dict(layers), str(tmp_path / "u.safetensors"))
    u_hat = load_mlp_weights(tmp_path / "u.safetensors", activation="tanh", pde=pde, terminal_transform=True)
    assert isinstance(u_hat, scasml.PINN) and u_hat.terminal is not None
    t, x = points(3, n=6)
    g = np.asarray(jax.vmap(pde.terminal)(jnp.asarray(x)), np.float64)
    want = g + (pde.horizon - t) / pde.horizon * reference(layers, "tanh", t, x)
    np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))
    out = scasml.calibrate(u_hat, pde, t, x, scasml.FeynmanKac(paths=64), key=jax.random.key(0))
    assert np.isfinite(np.asarray(out.u)).all() and np.isfinite(np.asarray(out.stderr)).all()
    np.testing.assert_allclose(np.asarray(out.surrogate), want, rtol=0, atol=3e-6 * scale(want))


def test_mlp_surrogate_checkpoint_round_trip(tmp_path):
    layers = make_layers([3, 6, 4, 1], seed=10)
    np.savez(tmp_path / "u.npz", **state_dict(layers))
    u_hat = load_mlp_weights(tmp_path / "u.npz", activation="sin", dim=2)
    scasml.save_surrogate(tmp_path / "u.scasml", u_hat)
    back = scasml.load_surrogate(tmp_path / "u.scasml")
    assert isinstance(back, MLPSurrogate) and back.architecture() == u_hat.architecture()
    t, x = points(2, n=4)
    np.testing.assert_array_equal(values(back, t, x), values(u_hat, t, x))


# --- bad files -----------------------------------------------------------------------------------------------


def _good(tmp_path, sizes=(4, 8, 8, 1)):
    return state_dict(make_layers(list(sizes), seed=11))


def _load_npz(tmp_path, tensors, name="u.npz", **kwargs):
    path = tmp_path / name
    np.savez(path, **tensors)
    kwargs.setdefault("dim", 3)
    return load_mlp_weights(path, activation="tanh", **kwargs)


def test_missing_tensor(tmp_path):
    tensors = _good(tmp_path)
    del tensors["linears.1.bias"]
    with pytest.raises(WeightFileError, match=r"u\.npz.*missing tensor 'linears\.1\.bias'.*bias=False"):
        _load_npz(tmp_path, tensors)
    tensors = _good(tmp_path)
    del tensors["linears.2.weight"]
    with pytest.raises(WeightFileError, match=r"missing tensor 'linears\.2\.weight'"):
        _load_npz(tmp_path, tensors)
    with pytest.raises(WeightFileError, match=r"missing tensor 'fc9\.weight'"):
        _load_npz(tmp_path, _good(tmp_path), layers=["linears.0", "fc9"])


def test_wrong_input_dimension_names_the_tensor(tmp_path):
    with pytest.raises(WeightFileError, match=r"u\.npz.*'linears\.0\.weight' of shape \(8, 4\) \(out, in\) takes 4 "
                                               r"inputs, expected dim \+ 1 = 6"):
        _load_npz(tmp_path, _good(tmp_path), dim=5)


def test_inconsistent_widths(tmp_path):
    tensors = _good(tmp_path)
    tensors["linears.1.weight"] = np.ones((8, 7), np.float32)
    with pytest.raises(WeightFileError, match=r"inconsistent widths: tensor 'linears\.1\.weight' of shape \(8, 7\).*"
                                               r"'linears\.0\.weight', has 8 outputs"):
        _load_npz(tmp_path, tensors)
    tensors = _good(tmp_path)
    tensors["linears.1.bias"] = np.ones(5, np.float32)
    with pytest.raises(WeightFileError, match=r"'linears\.1\.bias' has shape \(5,\), expected \(8,\)"):
        _load_npz(tmp_path, tensors)
    tensors = _good(tmp_path, sizes=(4, 8, 8, 2))
    with pytest.raises(WeightFileError, match=r"last layer 'linears\.2\.weight' has 2 outputs.*scalar"):
        _load_npz(tmp_path, tensors)
    tensors = _good(tmp_path)
    tensors["linears.1.weight"] = np.ones(8, np.float32)  # e.g. a LayerNorm's weight in an nn.Sequential
    with pytest.raises(WeightFileError, match=r"'linears\.1\.weight' has shape \(8,\).*2-D.*not supported"):
        _load_npz(tmp_path, tensors)


def test_ragged_widths_refused_as_pinn(tmp_path):
    with pytest.raises(WeightFileError, match=r"hidden widths \[8, 6\].*into='auto' or 'mlp'"):
        _load_npz(tmp_path, _good(tmp_path, sizes=(4, 8, 6, 1)), into="pinn")
    u = _load_npz(tmp_path, _good(tmp_path), into="mlp")
    assert isinstance(u, MLPSurrogate)
    linear = _load_npz(tmp_path, _good(tmp_path, sizes=(4, 1)))  # no hidden layer: an affine function
    assert isinstance(linear, MLPSurrogate) and linear.widths == (4, 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, bad):
    tensors = _good(tmp_path)
    tensors["linears.1.weight"][2, 3] = bad
    tensors["linears.1.weight"][0, 0] = bad
    with pytest.raises(WeightFileError, match=r"u\.npz.*'linears\.1\.weight' has 2 non-finite \(NaN or inf\) entries "
                                               r"\(of 64\)"):
        _load_npz(tmp_path, tensors)


def test_overflow_to_float32_and_integer_tensors(tmp_path):
    tensors = {k: v.astype(np.float64) for k, v in _good(tmp_path).items()}
    tensors["linears.0.bias"][1] = 1e300
    with pytest.raises(WeightFileError, match=r"'linears\.0\.bias' has 1 outside the range of float32 entries"):
        _load_npz(tmp_path, tensors)
    tensors = _good(tmp_path)
    tensors["linears.0.bias"] = np.zeros(8, np.int64)
    with pytest.raises(WeightFileError, match=r"'linears\.0\.bias' has dtype int64; weights must be floating"):
        _load_npz(tmp_path, tensors)


def test_stray_tensors_refused_unless_a_prefix_is_given(tmp_path):
    tensors = {**_good(tmp_path), "input_scale": np.ones(4, np.float32)}
    with pytest.raises(WeightFileError, match=r"not nn\.Linear weights or biases: \['input_scale'\].*"
                                               r"prefix='linears'"):
        _load_npz(tmp_path, tensors)
    assert isinstance(_load_npz(tmp_path, tensors, prefix="linears"), scasml.PINN)
    with pytest.raises(WeightFileError, match=r"no tensors named 'net\.<i>\.weight'.*found: \['linears'\]"):
        _load_npz(tmp_path, tensors, prefix="net")


def test_pickle_based_torch_files_refused_with_a_conversion_recipe(tmp_path):
    legacy = tmp_path / "model.pt"  # torch.save(..., _use_new_zipfile_serialization=False): a bare pickle
    legacy.write_bytes(pickle.dumps({"linears.0.weight": [[0.0]]}, protocol=2))
    with pytest.raises(WeightFileError, match=r"model\.pt.*is a pickle.*safetensors\.torch import save_file.*"
                                               r"weights_only=True.*np\.savez"):
        load_mlp_weights(legacy, activation="tanh", dim=3)
    zipped = io.BytesIO()  # torch.save's default: a zip archive holding data.pkl
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"w": 1}))
        archive.writestr("model/version", "3\n")
    for name in ("model.pth", "weights.npz"):  # the content decides, not the suffix
        (tmp_path / name).write_bytes(zipped.getvalue())
        with pytest.raises(WeightFileError, match=r"written by torch\.save \(a pickle\).*save_file"):
            load_mlp_weights(tmp_path / name, activation="tanh", dim=3)
    np.savez(tmp_path / "objects.npz", a=np.array([{"w": 1}], dtype=object))
    with pytest.raises(WeightFileError, match=r"objects\.npz.*pickled \(object\) arrays"):
        load_mlp_weights(tmp_path / "objects.npz", activation="tanh", dim=3)


def _padded_safetensors(tensors, header_length):
    """float32 ``tensors`` in the safetensors layout, written by hand: the JSON header is padded with spaces (which
    the format allows) to ``header_length`` bytes."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    assert len(raw) <= header_length
    return struct.pack("<Q", header_length) + raw + b" " * (header_length - len(raw)) + b"".join(blobs)


def test_safetensors_whose_header_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    pytest.importorskip("safetensors.numpy")
    layers = make_layers([4, 8, 8, 1], seed=11)
    length = 256 * 4 + 128  # ≡ 128 (mod 256): the file's first byte is 0x80, as a pickle's PROTO opcode
    data = _padded_safetensors(state_dict(layers), length)
    assert data[:1] == b"\x80"
    (tmp_path / "u.safetensors").write_bytes(data)
    u_hat = load_mlp_weights(tmp_path / "u.safetensors", activation="tanh", dim=3)
    t, x = points(3)
    want = reference(layers, "tanh", t, x)
    np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"linears.0.weight": [[0.0]]}, protocol=4))
    with pytest.raises(WeightFileError, match=r"p\.safetensors.*is a pickle"):  # a real pickle, whatever its name
        load_mlp_weights(tmp_path / "p.safetensors", activation="tanh", dim=3)


def _npy_header(shape):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_npz_entries_are_checked_before_they_are_inflated(tmp_path, monkeypatch):
    path = tmp_path / "huge.npz"  # a header announcing a 4 TB (or 14 GB) array over 16 bytes of data
    for shape in [(10**6, 10**6), (60000, 60000)]:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("0.weight.npy", _npy_header(shape) + bytes(16))
            archive.writestr("0.bias.npy", _npy_header((1,)) + bytes(4))
        with pytest.raises(WeightFileError, match=rf"huge\.npz.*tensor '0\.weight' announces shape "
                                                   rf"\({shape[0]}, {shape[1]}\) of float32.*holds 16 bytes"):
            load_mlp_weights(path, activation="tanh", dim=1)
    # a small file that inflates beyond the size limit (8 GiB; lowered here) is refused unread
    monkeypatch.setattr(scasml.surrogates._foreign, "_MAX_BYTES", 20_000)
    np.savez_compressed(tmp_path / "bomb.npz", **{"0.weight": np.zeros((4000, 2), np.float32),
                                                  "0.bias": np.zeros(4000, np.float32)})
    assert (tmp_path / "bomb.npz").stat().st_size < 20_000
    with pytest.raises(WeightFileError, match=r"bomb\.npz.*inflates to .* GiB.*refused unread"):
        load_mlp_weights(tmp_path / "bomb.npz", activation="tanh", dim=1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_fifo_and_directory_refused_without_blocking(tmp_path):
    fifo = tmp_path / "u.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(WeightFileError, match=r"u\.safetensors.*is a FIFO \(named pipe\), not a regular file"):
        load_mlp_weights(fifo, activation="tanh", dim=3)
    with pytest.raises(WeightFileError, match=r"is a directory, not a regular file"):
        load_mlp_weights(tmp_path, activation="tanh", dim=3)
    with pytest.raises(WeightFileError, match=r"absent\.npz.*no such file"):
        load_mlp_weights(tmp_path / "absent.npz", activation="tanh", dim=3)


def test_truncated_files(tmp_path):
    save_file(_good(tmp_path), str(tmp_path / "full.safetensors"))
    np.savez(tmp_path / "full.npz", **_good(tmp_path))
    for name in ("full.safetensors", "full.npz"):
        data = (tmp_path / name).read_bytes()
        for cut in (4, 40, len(data) - 10):
            cut_path = tmp_path / f"cut{cut}{os.path.splitext(name)[1]}"
            cut_path.write_bytes(data[:cut])
            with pytest.raises(WeightFileError, match=rf"cut{cut}.*(truncated or corrupt|neither a safetensors)"):
                load_mlp_weights(cut_path, activation="tanh", dim=3)


def test_other_unreadable_files(tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(WeightFileError, match=r"empty\.safetensors.*is empty \(0 bytes\)"):
        read_tensors(tmp_path / "empty.safetensors")
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(WeightFileError, match=r"w\.npy.*single \.npy array.*np\.savez"):
        read_tensors(tmp_path / "w.npy")
    (tmp_path / "notes.txt").write_text("weights\n")
    with pytest.raises(WeightFileError, match=r"notes\.txt.*neither a safetensors nor a NumPy \.npz file"):
        read_tensors(tmp_path / "notes.txt")


def test_safetensors_file_without_the_library(tmp_path, monkeypatch):
    save_file(_good(tmp_path), str(tmp_path / "u.safetensors"))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(WeightFileError, match=r"u\.safetensors.*needs the `safetensors` package"):
        load_mlp_weights(tmp_path / "u.safetensors", activation="tanh", dim=3)
    np.savez(tmp_path / "u.npz", **_good(tmp_path))  # .npz files need numpy alone
    assert isinstance(load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=3), scasml.PINN)


def test_bad_arguments(tmp_path):
    np.savez(tmp_path / "u.npz", **_good(tmp_path))
    with pytest.raises(ValueError, match=r"activation must be one of \['tanh', 'sin', 'softplus'\]"):
        load_mlp_weights(tmp_path / "u.npz", activation="relu", dim=3)
    with pytest.raises(ValueError, match=r"dim must be a positive integer"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh")
    with pytest.raises(ValueError, match=r"layout must be 'xt'"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=3, layout="x,t")
    with pytest.raises(ValueError, match=r"weight_layout must be 'torch'"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=3, weight_layout="keras")
    with pytest.raises(ValueError, match=r"terminal_transform=True needs the PDE"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=3, terminal_transform=True)
    with pytest.raises(ValueError, match=r"dim=4 does not match the PDE's dimension 3"):
        load_mlp_weights(tmp_path / "u.npz", activation="tanh", dim=4, pde=scasml.equations.get("heat", dim=3))


# --- files written by PyTorch itself (skipped where torch is not installed) -----------------------------------


def test_torch_sequential_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save_file

    torch.manual_seed(0)
    dim = 3
    for activation, module in (("tanh", torch.nn.Tanh), ("softplus", torch.nn.Softplus)):
        net = torch.nn.Sequential(torch.nn.Linear(dim + 1, 20), module(), torch.nn.Linear(20, 20), module(),
                                  torch.nn.Linear(20, 1))
        torch_save_file(net.state_dict(), str(tmp_path / "u.safetensors"))
        u_hat = load_mlp_weights(tmp_path / "u.safetensors", activation=activation, dim=dim)
        assert isinstance(u_hat, scasml.PINN)
        t, x = points(dim)
        inputs = torch.cat([torch.from_numpy(x), torch.from_numpy(t)[:, None]], 1).requires_grad_(True)
        out = net(inputs)[:, 0]
        (grad,) = torch.autograd.grad(out.sum(), inputs)
        want = out.detach().numpy()
        np.testing.assert_allclose(values(u_hat, t, x), want, rtol=0, atol=3e-6 * scale(want))
        _, dx = jax.vmap(lambda ti, xi, u=u_hat: scasml.value_and_gradient(u, ti, xi))(jnp.asarray(t), jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(dx), grad[:, :dim].numpy(), rtol=0, atol=1e-5 * scale(want))

    class FNN(torch.nn.Module):  # DeepXDE's layout: a ModuleList named `linears`, tanh between layers
        def __init__(self, sizes):
            super().__init__()
            self.linears = torch.nn.ModuleList(
                torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            )

        def forward(self, h):
            for linear in self.linears[:-1]:
                h = torch.tanh(linear(h))
            return self.linears[-1](h)

    fnn = FNN([dim + 1, 12, 7, 1])
    torch_save_file(fnn.state_dict(), str(tmp_path / "fnn.safetensors"))
    u_fnn = load_mlp_weights(tmp_path / "fnn.safetensors", activation="tanh", dim=dim)
    assert isinstance(u_fnn, MLPSurrogate)
    with torch.no_grad():
        want = fnn(torch.cat([torch.from_numpy(x), torch.from_numpy(t)[:, None]], 1))[:, 0].numpy()
    np.testing.assert_allclose(values(u_fnn, t, x), want, rtol=0, atol=3e-6 * scale(want))
    torch.save(net.state_dict(), tmp_path / "u.pt")
    with pytest.raises(WeightFileError, match=r"u\.pt.*written by torch\.save \(a pickle\)"):
        load_mlp_weights(tmp_path / "u.pt", activation="softplus", dim=dim)
