import hashlib
import json
import struct

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_training_blocks

import scasml
from scasml.surrogates import CheckpointError, read_header

VB = scasml.equations.get("vb", dim=5)


def _arrays(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


@pytest.fixture(scope="module")
def trained():
    pinn = scasml.PINN(5, VB.horizon, jax.random.key(0), width=16, depth=2)
    return scasml.train(pinn, VB, jax.random.key(1), steps=150, collocation=64, terminal_points=64,
                        log_every=50, progress=False)


def test_training_is_deterministic_and_reduces_loss(trained):
    pinn, log = trained
    again, log2 = scasml.train(scasml.PINN(5, VB.horizon, jax.random.key(0), width=16, depth=2), VB,
                               jax.random.key(1), steps=150, collocation=64, terminal_points=64,
                               log_every=50, progress=False)
    for a, b in zip(_arrays(pinn), _arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(log.loss, log2.loss)
    assert list(log.steps) == [50, 100, 150]
    first_loss = float(scasml.surrogates.physics_loss(
        scasml.PINN(5, VB.horizon, jax.random.key(0), width=16, depth=2), VB, jax.random.key(9), 256, 256, 1.0,
        scasml.ExactTrace())[0])
    assert log.loss[-1] < 0.1 * first_loss


def test_interrupted_training_continues_from_its_state_file_to_the_same_bits(trained, tmp_path, monkeypatch):
    """A training interrupted in its third block (of three) and called again with the same ``state_file``
    continues at step 100 and ends with the weights and loss curve of the uninterrupted run; the file then holds
    the finished state, and a third call returns it without a step. The state of another training raises
    ``StaleTrainingState``, any other file ``ValueError``; both are left untouched."""
    pinn, log = trained
    state = tmp_path / "vb.state"
    settings = {"steps": 150, "collocation": 64, "terminal_points": 64, "log_every": 50, "progress": False}
    fresh = lambda: scasml.PINN(5, VB.horizon, jax.random.key(0), width=16, depth=2)
    calls = count_training_blocks(monkeypatch, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        scasml.train(fresh(), VB, jax.random.key(1), state_file=state, **settings)
    assert calls == [0, 50, 100] and state.is_file()
    before = state.read_bytes()
    with pytest.raises(scasml.surrogates.StaleTrainingState, match="holds the state of another training"):
        scasml.train(fresh(), VB, jax.random.key(2), state_file=state, **settings)  # another key
    assert state.read_bytes() == before
    for finished_blocks in ([100], []):  # continues; then finished: nothing left to do
        calls = count_training_blocks(monkeypatch)
        again, log2 = scasml.train(fresh(), VB, jax.random.key(1), state_file=state, **settings)
        assert calls == finished_blocks and state.is_file()
        for a, b in zip(_arrays(pinn), _arrays(again), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(log.loss, log2.loss)
        np.testing.assert_array_equal(log.steps, log2.steps)
    truncated = tmp_path / "truncated.state"
    truncated.write_bytes(state.read_bytes()[:200])
    mine = tmp_path / "notes.txt"
    mine.write_text("a user's file")
    link = tmp_path / "link.state"
    link.symlink_to(tmp_path / "nowhere")
    for path, message in ((truncated, "not a readable scasml training state"),
                          (mine, "not a readable scasml training state"), (link, "symbolic link")):
        kept = path.read_bytes() if path.is_file() else None
        with pytest.raises(ValueError, match=message):
            scasml.train(fresh(), VB, jax.random.key(1), state_file=path, **settings)
        assert (path.read_bytes() if path.is_file() else None) == kept and (path.is_symlink() or path.is_file())


def test_training_fingerprint_is_stable_and_sees_the_equation():
    """The same training built twice (a PINN with a terminal transform, whose g is a new function object each
    time) has one fingerprint; a different drift, domain or trace estimator gives another."""
    from scasml.surrogates._training import _Hyper, _training_fingerprint

    hyper = _Hyper(10, 8, 8, 1.0, 1e-3, 1e-5)

    def fingerprint(pde, trace=scasml.ExactTrace()):
        pinn = scasml.PINN(pde.dim, pde.horizon, jax.random.key(0), width=8, depth=1, terminal=pde.terminal)
        params, static = eqx.partition(pinn, eqx.is_inexact_array)
        return _training_fingerprint(params, static, pde, jax.random.key(1), trace, hyper, 5)

    custom = lambda drift=0.0, domain=None: scasml.SemilinearPDE(
        dim=2, horizon=1.0, drift=drift, domain=domain, nonlinearity=lambda t, x, u, z: 0.0 * u,
        terminal=lambda x: x @ x)
    bsb = scasml.equations.get("bsb", dim=3)
    assert fingerprint(bsb) == fingerprint(scasml.equations.get("bsb", dim=3))
    assert fingerprint(custom()) == fingerprint(custom())
    variants = [fingerprint(custom()), fingerprint(custom(drift=0.5)), fingerprint(custom(domain=scasml.Box(-2, 2))),
                fingerprint(custom(), scasml.HutchinsonTrace(4)), fingerprint(custom(), scasml.HutchinsonTrace(8))]
    assert len(set(variants)) == len(variants)


def test_terminal_transform_is_exact():
    pinn = scasml.PINN(5, VB.horizon, jax.random.key(0), terminal=VB.terminal)
    x = jax.random.normal(jax.random.key(1), (10, 5))
    np.testing.assert_allclose(jax.vmap(lambda xi: pinn(VB.horizon, xi))(x), jax.vmap(VB.terminal)(x), rtol=1e-6)


def test_checkpoint_round_trip_is_bit_identical(trained, tmp_path):
    pinn, log = trained
    path = tmp_path / "vb5.scasml"
    scasml.save_surrogate(path, pinn, VB, log.summary())
    loaded = scasml.load_surrogate(path, VB)
    for a, b in zip(_arrays(pinn), _arrays(loaded), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    t, x = VB.sample_domain(jax.random.key(3), 20)
    np.testing.assert_array_equal(jax.vmap(pinn)(t, x), jax.vmap(loaded)(t, x))
    header = read_header(path)
    assert header["pde"] == VB.parameters() and header["training"]["steps"] == 150
    assert header["architecture"]["width"] == 16 and header["dtype"] == "float32"


def test_checkpoint_with_terminal_transform_needs_the_pde(tmp_path):
    pinn = scasml.PINN(5, VB.horizon, jax.random.key(0), terminal=VB.terminal)
    scasml.save_surrogate(tmp_path / "t.scasml", pinn, VB)
    with pytest.raises(CheckpointError, match="pass the PDE"):
        scasml.load_surrogate(tmp_path / "t.scasml")
    loaded = scasml.load_surrogate(tmp_path / "t.scasml", VB)
    x = jnp.ones(5) * 0.1
    assert float(loaded(0.2, x)) == float(pinn(0.2, x))


@pytest.fixture
def saved(trained, tmp_path):
    path = tmp_path / "ok.scasml"
    scasml.save_surrogate(path, trained[0], VB, trained[1].summary())
    return path


def test_mismatched_pde_is_refused(saved):
    with pytest.raises(CheckpointError, match=r"trained for vb \(dim=5\).*lqg \(dim=5\)"):
        scasml.load_surrogate(saved, scasml.equations.get("lqg", dim=5))
    with pytest.raises(CheckpointError, match=r"dim: checkpoint 5 vs given 6"):
        scasml.load_surrogate(saved, scasml.equations.get("vb", dim=6))
    with pytest.raises(CheckpointError, match=r"scale: checkpoint 0.25 vs given 0.5"):
        scasml.load_surrogate(saved, scasml.equations.get("vb", dim=5, scale=0.5))


def test_truncated_checkpoint(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated or corrupt: expected .* bytes of parameters"):
        scasml.load_surrogate(saved, VB)
    saved.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        scasml.load_surrogate(saved, VB)


def test_corrupt_checkpoint(saved):
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        scasml.load_surrogate(saved, VB)


def test_corrupt_header_and_foreign_file(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    start = len(b"SCASML-CHECKPOINT\n") + 8
    data[start] = ord("!")
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt header"):
        scasml.load_surrogate(saved, VB)
    other = tmp_path / "x.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(CheckpointError, match="not a scasml checkpoint"):
        scasml.load_surrogate(other, VB)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        scasml.load_surrogate(tmp_path / "missing.scasml", VB)


def test_newer_format_version_is_refused(saved):
    data = saved.read_bytes()
    start = len(b"SCASML-CHECKPOINT\n")
    (length,) = struct.unpack("<Q", data[start:start + 8])
    header = data[start + 8:start + 8 + length].replace(b'"format_version": 1', b'"format_version": 9')
    saved.write_bytes(data[:start] + struct.pack("<Q", len(header)) + header + data[start + 8 + length:])
    with pytest.raises(CheckpointError, match="format version 9, newer than this scasml understands"):
        scasml.load_surrogate(saved, VB)


def _edit_header(path, edit):
    data = path.read_bytes()
    start = len(b"SCASML-CHECKPOINT\n")
    (length,) = struct.unpack("<Q", data[start:start + 8])
    header = json.dumps(edit(json.loads(data[start + 8:start + 8 + length]))).encode()
    path.write_bytes(data[:start] + struct.pack("<Q", len(header)) + header + data[start + 8 + length:])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: [h], "corrupt header: not a JSON object"),
        (lambda h: {k: v for k, v in h.items() if k != "architecture"}, "architecture must be a table"),
        (lambda h: {**h, "pde": "vb"}, "pde must be a table or null"),
        (lambda h: {**h, "dtype": "int8"}, "dtype must be 'float32' or 'float64'"),
        (lambda h: {**h, "leaves": [{"shape": [-1], "dtype": "float32"}]}, r"leaves\[0\] must give a shape"),
        (lambda h: {**h, "architecture": {**h["architecture"], "width": "wide"}}, "architecture .* cannot be built"),
        (lambda h: {**h, "architecture": {"kind": "pinn"}}, "architecture .* cannot be built: KeyError"),
    ],
)
def test_hand_edited_headers_are_refused_by_name(saved, edit, message):
    _edit_header(saved, edit)
    with pytest.raises(CheckpointError, match=message):
        scasml.load_surrogate(saved)


@pytest.mark.parametrize("terminal", [False, True])
def test_path_sampling_follows_the_diffusion(terminal):
    """X_s = x + μ(s − t) + σ√(s − t)ξ with (t, x) uniform on [0, T] × [0, ½]^d and s uniform on [t, T]
    (s = T for terminal points): per-coordinate mean and variance against their exact values, within 4 SE."""
    from scasml.surrogates._training import sample_along_paths

    pde = scasml.equations.get("lcd", dim=4)  # μ = −1/d, σ = √2, box [0, ½]^d, T = ½
    n, T, mu, sigma2 = 200_000, pde.horizon, -1.0 / pde.dim, 2.0
    s, xs = sample_along_paths(pde, jax.random.key(0), n, terminal=terminal)
    assert np.all(np.asarray(s) <= T) and (np.all(np.asarray(s) == T) if terminal else np.all(np.asarray(s) >= 0))
    gap_mean, gap_square = (T / 2, T**2 / 3) if terminal else (T / 4, T**2 / 9)  # moments of s − t
    mean = 0.25 + mu * gap_mean
    var = 0.5**2 / 12 + mu**2 * (gap_square - gap_mean**2) + sigma2 * gap_mean
    xs = np.asarray(xs, np.float64)
    dev = xs - xs.mean(axis=0)
    np.testing.assert_array_less(np.abs(xs.mean(axis=0) - mean), 4 * xs.std(axis=0) / np.sqrt(n))
    np.testing.assert_array_less(np.abs((dev**2).mean(axis=0) - var), 4 * (dev**2).std(axis=0) / np.sqrt(n))


def test_training_on_paths_is_deterministic_and_rejects_unknown_sampling():
    def run():
        return scasml.train(scasml.PINN(5, VB.horizon, jax.random.key(0), width=8, depth=1), VB, jax.random.key(1),
                            steps=20, collocation=32, terminal_points=16, log_every=10, progress=False,
                            sampling="paths")[0]

    for a, b in zip(_arrays(run()), _arrays(run()), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="sampling"):
        scasml.train(scasml.PINN(5, VB.horizon, jax.random.key(0)), VB, jax.random.key(1), steps=1,
                     sampling="grid", progress=False)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"surrogate": scasml.PINN(3, 1.0, jax.random.key(0), width=8, depth=1)}, ValueError,
         "3-dimensional but the PDE is 5-dimensional"),
        ({"surrogate": lambda t, x: x}, ValueError, "must return a scalar"),
        ({"key": None}, ValueError, "a PRNG key is required"),
        ({"steps": 2.5}, ValueError, "steps must be a positive integer"),
        ({"terminal_weight": -1.0}, ValueError, "terminal_weight must be a finite non-negative number"),
        ({"learning_rate": float("inf")}, ValueError, "learning_rate must be a finite non-negative number"),
    ],
)
def test_train_rejects_bad_input_up_front(options, error, message):
    args = {"surrogate": scasml.PINN(5, VB.horizon, jax.random.key(0), width=8, depth=1), "key": jax.random.key(1),
            "steps": 2}
    args.update(options)
    surrogate, key = args.pop("surrogate"), args.pop("key")
    with pytest.raises(error, match=message):
        scasml.train(surrogate, VB, key, progress=False, **args)


def test_diverged_training_raises_instead_of_returning_nan():
    with pytest.raises(FloatingPointError, match="training diverged: the loss is (nan|inf) after 2 steps"):
        scasml.train(scasml.PINN(5, VB.horizon, jax.random.key(0), width=8, depth=1), VB, jax.random.key(1),
                     steps=4, log_every=2, learning_rate=1e30, final_learning_rate=1e30, progress=False)


@pytest.mark.parametrize("horizon", [-1.0, 0.0, float("nan"), "1"])
def test_pinn_horizon_must_be_positive_and_finite(horizon):
    with pytest.raises(ValueError, match="PINN horizon T must be a positive finite number"):
        scasml.PINN(5, horizon, jax.random.key(0))


@pytest.mark.parametrize("field", ["dim", "width", "depth"])
@pytest.mark.parametrize("value", [0, True, 2.0])
def test_pinn_sizes_must_be_positive_integers(field, value):
    sizes = {"dim": 3, "width": 8, "depth": 2, field: value}
    with pytest.raises(ValueError, match=f"PINN {field} must be a positive integer"):
        scasml.PINN(sizes["dim"], 1.0, jax.random.key(0), width=sizes["width"], depth=sizes["depth"])


def test_pinn_accepts_numpy_integer_sizes():
    pinn = scasml.PINN(np.int64(3), 1.0, jax.random.key(0), width=np.int32(8), depth=2)
    assert (pinn.dim, pinn.width) == (3, 8) and type(pinn.dim) is int and type(pinn.width) is int


def test_scaled_pinn_sweeps_match_autodiff(x64, tmp_path):
    """û = s_u·MLP([(x − c)/s_x, t]): the forward-Laplacian sweeps (residual terms, Tr(σσᵀ∇²û), Σ vᵀ∇²û v) equal
    autodiff, and a checkpoint rebuilds the scalings and the smoothed payoff it was built with."""
    pde = scasml.equations.get("bsdr", dim=6, dtype=jnp.float64)
    net = scasml.PINN(6, 1.0, jax.random.key(0), width=10, depth=2, input_offset=100.0, input_scale=30.0,
                      output_scale=50.0, dtype=jnp.float64)
    t, x = jnp.float64(0.3), 100.0 + 20.0 * jax.random.normal(jax.random.key(1), (6,), jnp.float64)
    sigma, drift = jnp.diag(0.2 * x), 0.05 * x
    hess, grad = jax.hessian(lambda y: net(t, y))(x), jax.grad(lambda y: net(t, y))(x)
    terms = net.residual_terms(t, x, drift, sigma)
    np.testing.assert_allclose(terms.value, net(t, x), rtol=1e-12)
    np.testing.assert_allclose(terms.transport, jax.grad(lambda s: net(s, x))(t) + drift @ grad, rtol=1e-10)
    np.testing.assert_allclose(terms.second, jnp.trace(sigma @ sigma.T @ hess), rtol=1e-10)
    np.testing.assert_allclose(net.diffusion_hessian_trace(t, x, sigma), jnp.trace(sigma @ sigma.T @ hess), rtol=1e-10)
    np.testing.assert_allclose(net.hessian_quadratic_sum(t, x, jnp.eye(6)), jnp.trace(hess), rtol=1e-10)
    smooth = scasml.PINN(6, 1.0, jax.random.key(0), width=10, depth=2, terminal=pde.smoothed_terminal(2.0),
                         terminal_smoothing=2.0, input_offset=100.0, input_scale=30.0, dtype=jnp.float64)
    for model in (net, smooth):
        scasml.save_surrogate(tmp_path / "m.scasml", model, pde)
        loaded = scasml.load_surrogate(tmp_path / "m.scasml", pde)
        assert loaded.architecture() == model.architecture()
        assert float(loaded(t, x)) == float(model(t, x))
    np.testing.assert_allclose(loaded(1.0, x), pde.smoothed_terminal(2.0)(x), rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    (dict(input_scale=0.0), "input_scale must be a positive finite number"),
    (dict(input_offset=float("nan")), "input_offset must be a finite number"),
    (dict(output_scale=float("inf")), "output_scale must be a positive finite number"),
    (dict(terminal_smoothing=1.0), "terminal_smoothing describes a built-in terminal condition"),
    (dict(terminal_smoothing=-1.0), "terminal_smoothing must be a finite number ≥ 0"),
])
def test_pinn_rejects_bad_scalings(options, message):
    with pytest.raises(ValueError, match=message):
        scasml.PINN(3, 1.0, jax.random.key(0), **options)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32, "half"])
def test_pinn_refuses_dtypes_other_than_float32_and_float64(dtype):
    with pytest.raises(ValueError, match="PINN: dtype must be float32 or float64"):
        scasml.PINN(2, 1.0, jax.random.key(0), width=8, depth=2, dtype=dtype)


def test_pinn_float64_needs_x64():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is enabled")
    with pytest.raises(ValueError, match=r'dtype float64 needs jax.config.update\("jax_enable_x64", True\)'):
        scasml.PINN(2, 1.0, jax.random.key(0), width=8, depth=2, dtype=jnp.float64)


def _rewrite(path, header: bytes, payload: bytes | None = None):
    data = path.read_bytes()
    start = len(b"SCASML-CHECKPOINT\n")
    (length,) = struct.unpack("<Q", data[start:start + 8])
    payload = data[start + 8 + length:] if payload is None else payload
    path.write_bytes(data[:start] + struct.pack("<Q", len(header)) + header + payload)


def test_malformed_headers_raise_checkpoint_errors(saved):
    data = saved.read_bytes()
    _rewrite(saved, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(CheckpointError, match="corrupt header: JSON nested too deeply"):
        read_header(saved)
    saved.write_bytes(data)
    _edit_header(saved, lambda h: {**h, "leaves": [{**h["leaves"][0], "shape": [10**30]}, *h["leaves"][1:]]})
    with pytest.raises(CheckpointError, match=r"array 0 is float32\[1000000000000000000000000000000\], "
                                              r"architecture expects float32\[16, 6\]"):
        scasml.load_surrogate(saved)


def test_non_finite_parameters_are_refused_on_save_and_load(tmp_path):
    pinn = scasml.PINN(2, 1.0, jax.random.key(0), width=4, depth=1)
    broken = eqx.tree_at(lambda p: p.mlp.layers[0].bias, pinn, pinn.mlp.layers[0].bias.at[1].set(jnp.nan))
    with pytest.raises(ValueError, match=r"PINN cannot be saved: its array 1 float32\[4\] holds 1 non-finite"):
        scasml.save_surrogate(tmp_path / "nan.scasml", broken)
    assert not (tmp_path / "nan.scasml").exists()
    path = tmp_path / "ok.scasml"
    scasml.save_surrogate(path, pinn)
    header = read_header(path)
    payload = bytearray(path.read_bytes()[-header["payload_bytes"]:])
    payload[-4:] = np.float32(np.inf).tobytes()  # the last leaf's last entry, with a matching checksum
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    _rewrite(path, json.dumps(header).encode(), bytes(payload))
    with pytest.raises(CheckpointError, match=r"array 3 float32\[1\] holds 1 non-finite \(NaN or inf\) values"):
        scasml.load_surrogate(path)


@pytest.mark.parametrize("kind", ["pinn", "mlp"])
def test_float64_checkpoint_without_x64_says_how_to_enable_it(tmp_path, kind):
    if jax.config.jax_enable_x64:
        pytest.skip("x64 is enabled")
    with jax.enable_x64(True):
        if kind == "pinn":
            model = scasml.PINN(2, 1.0, jax.random.key(0), width=4, depth=1, dtype=jnp.float64)
        else:
            model = scasml.surrogates.MLPSurrogate([jnp.ones((4, 3)), jnp.ones((1, 4))], [jnp.zeros(4), jnp.zeros(1)],
                                                   "tanh")
        scasml.save_surrogate(tmp_path / "m.scasml", model)
    with pytest.raises(CheckpointError, match=r'float64 .*enable x64.*jax.config.update\("jax_enable_x64", True\)'):
        scasml.load_surrogate(tmp_path / "m.scasml")


def _custom_pde(terminal):
    return scasml.SemilinearPDE(dim=2, horizon=1.0, drift=0.0, diffusion=1.0,
                                nonlinearity=lambda t, x, u, z: 0.0 * u, terminal=terminal)


def test_checkpoint_refuses_a_pde_with_another_terminal_condition(tmp_path):
    squares, cosine = _custom_pde(lambda x: jnp.sum(x**2)), _custom_pde(lambda x: jnp.cos(x[0]))
    assert squares.parameters() == cosine.parameters()  # the parameters alone cannot tell them apart
    path = tmp_path / "u.scasml"
    pinn = scasml.PINN(2, 1.0, jax.random.key(0), width=8, depth=2, terminal=squares.terminal)
    scasml.save_surrogate(path, pinn, squares)
    assert len(read_header(path)["terminal_fingerprint"]["values"]) == 4
    loaded = scasml.load_surrogate(path, squares)
    x = jnp.array([0.5, -0.25])
    assert float(loaded(0.3, x)) == float(pinn(0.3, x))
    with pytest.raises(CheckpointError, match=r"trained for a terminal condition g that differs from the given "
                                              r"PDE's at x_1 .*: g = .* in the checkpoint, .* for the given PDE"):
        scasml.load_surrogate(path, cosine)
    _edit_header(path, lambda h: {k: v for k, v in h.items() if k != "terminal_fingerprint"})
    assert float(scasml.load_surrogate(path, cosine)(1.0, x)) == pytest.approx(float(jnp.cos(0.5)))  # old format
    _edit_header(path, lambda h: {**h, "terminal_fingerprint": {"rule": "?", "values": [1.0]}})
    with pytest.raises(CheckpointError, match="corrupt header: terminal_fingerprint must be"):
        scasml.load_surrogate(path, squares)


def test_checkpoint_records_the_surrogates_own_terminal_condition(tmp_path):
    squares = _custom_pde(lambda x: jnp.sum(x**2))
    pinn = scasml.PINN(2, 1.0, jax.random.key(0), width=8, depth=2, terminal=lambda x: 2.0 + jnp.sum(x**2))
    scasml.save_surrogate(tmp_path / "u.scasml", pinn, squares)
    with pytest.raises(CheckpointError, match="differs from the given PDE's"):
        scasml.load_surrogate(tmp_path / "u.scasml", squares)
    shifted = _custom_pde(lambda x: 2.0 + jnp.sum(x**2))  # the PDE it was built for
    x = jnp.array([0.5, -0.25])
    assert float(scasml.load_surrogate(tmp_path / "u.scasml", shifted)(0.3, x)) == float(pinn(0.3, x))
