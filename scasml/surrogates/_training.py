"""Physics-informed training of a surrogate with optax."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .._checks import check_key, is_integer, is_real
from .._derivatives import AbstractTraceEstimator, ExactTrace, residual
from .._io import atomic_write_bytes
from .._pde import AbstractSemilinearPDE
from .._progress import ProgressBar
from ._base import AbstractSurrogate


@dataclasses.dataclass(frozen=True)
class TrainingLog:
    """Loss curve of a training run (one row every ``log_every`` steps)."""

    steps: np.ndarray
    loss: np.ndarray
    residual_loss: np.ndarray
    terminal_loss: np.ndarray
    seconds: float

    def summary(self) -> dict:
        return {
            "steps": int(self.steps[-1]) if len(self.steps) else 0,
            "final_loss": float(self.loss[-1]) if len(self.loss) else None,
            "seconds": round(self.seconds, 3),
        }


SAMPLINGS = ("domain", "paths")


def sample_along_paths(pde, key, n: int, terminal: bool = False):
    """n points (s, X_s) reached by the equation's diffusion X started at (t, x) drawn from its domain:
    s uniform on [t, T] (s = T if ``terminal``), X_s a sample of the equation's dynamics. These are the points where
    the Monte Carlo estimators evaluate a surrogate and its residual. Returns (s (n,), X_s (n, d))."""
    dkey, skey, wkey = jax.random.split(key, 3)
    t, x = pde.sample_domain(dkey, n)
    horizon = jnp.asarray(pde.horizon, t.dtype)
    s = jnp.full_like(t, horizon) if terminal else t + (horizon - t) * jax.random.uniform(skey, t.shape, t.dtype)
    noise = jax.random.normal(wkey, (x.shape[0], pde.dynamics.noise_rows, x.shape[1]), x.dtype)
    # s = t (no time left) gives X_s = x: sample a positive elapsed time and keep x where it is zero
    elapsed = s - t
    safe = jnp.where(elapsed > 0, elapsed, jnp.ones_like(elapsed))
    moved = jax.vmap(lambda ti, xi, tau, n: pde.dynamics.sample(ti, xi, tau, n)[0])(t, x, safe, noise)
    xs = jnp.where((elapsed > 0)[:, None], moved, x)
    return s, xs


def training_points(pde, dkey, tkey, collocation: int, terminal_points: int, sampling: str = "domain"):
    """Collocation points (t (n,), x (n, d)) from ``dkey`` and terminal points (m, d) from ``tkey``.
    ``sampling = "domain"``: all from the equation's domain; ``"paths"``: the second half of each set from
    ``sample_along_paths`` instead."""
    t, x = pde.sample_domain(dkey, collocation)
    xt = pde.sample_terminal(tkey, terminal_points)
    if sampling == "paths":
        k, j = collocation // 2, terminal_points // 2
        tp, xp = sample_along_paths(pde, jax.random.fold_in(dkey, 1), k)
        t, x = t.at[collocation - k:].set(tp), x.at[collocation - k:].set(xp)
        xt = xt.at[terminal_points - j:].set(sample_along_paths(pde, jax.random.fold_in(tkey, 1), j, True)[1])
    return t, x, xt


def physics_loss(surrogate, pde, key, collocation: int, terminal_points: int, terminal_weight: float, trace,
                 sampling: str = "domain"):
    """(total, residual part, terminal part) on freshly drawn collocation and terminal points."""
    dkey, tkey, hkey = jax.random.split(key, 3)
    t, x, xt = training_points(pde, dkey, tkey, collocation, terminal_points, sampling)
    hkeys = jax.random.split(hkey, collocation)
    eps = jax.vmap(lambda ti, xi, ki: residual(pde, surrogate, ti, xi, trace, ki))(t, x, hkeys)
    res_loss = jnp.mean(eps**2)
    mismatch = jax.vmap(lambda xi: surrogate(jnp.asarray(pde.horizon, xi.dtype), xi) - pde.terminal(xi))(xt)
    term_loss = jnp.mean(mismatch**2)
    return res_loss + terminal_weight * term_loss, (res_loss, term_loss)


@dataclasses.dataclass(frozen=True)
class _Hyper:
    steps: int
    collocation: int
    terminal_points: int
    terminal_weight: float
    learning_rate: float
    final_learning_rate: float
    sampling: str = "domain"


def _optimiser(hyper: _Hyper):
    alpha = hyper.final_learning_rate / hyper.learning_rate
    return optax.adam(optax.cosine_decay_schedule(hyper.learning_rate, hyper.steps, alpha=alpha))


@eqx.filter_jit
def _train_block(params, static, opt_state, key, start, pde, trace, hyper: _Hyper, n: int):
    """``n`` Adam steps (a module-level jit, so repeated ``train`` calls reuse the compiled program)."""
    optimiser = _optimiser(hyper)

    def loss_fn(p, k):
        surrogate = eqx.combine(p, static)
        return physics_loss(surrogate, pde, k, hyper.collocation, hyper.terminal_points, hyper.terminal_weight, trace,
                            hyper.sampling)

    def step(carry, i):
        p, state = carry
        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, jax.random.fold_in(key, i))
        updates, state = optimiser.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), (loss, *parts)

    (params, opt_state), hist = jax.lax.scan(step, (params, opt_state), start + jnp.arange(n))
    return params, opt_state, jax.tree.map(lambda h: h[-1], hist)


def train(
    surrogate: AbstractSurrogate,
    pde: AbstractSemilinearPDE,
    key: PRNGKeyArray,
    *,
    steps: int = 2000,
    collocation: int = 1000,
    terminal_points: int = 500,
    terminal_weight: float = 1.0,
    learning_rate: float = 1e-3,
    final_learning_rate: float = 1e-5,
    trace: AbstractTraceEstimator = ExactTrace(),
    log_every: int = 100,
    progress: bool = True,
    sampling: str = "domain",
    state_file: str | os.PathLike | None = None,
) -> tuple[AbstractSurrogate, TrainingLog]:
    """Train by minimising mean ε² on collocation points (resampled every step) + terminal mismatch².

    ``sampling``: ``"domain"`` draws all points from the equation's domain; ``"paths"`` draws half of them
    where the diffusion started in the domain goes (``sample_along_paths``): SCaSML evaluates the surrogate's
    residual there, and a parabolic solution inside the domain depends on the data outside it.

    Adam with a cosine decay from ``learning_rate`` to ``final_learning_rate``. Deterministic given ``key``
    (step k uses ``fold_in(key, k)``). Returns the trained surrogate and its loss curve.

    ``state_file``: a path where the training state (weights, Adam's moments, steps done, the loss curve so far)
    is written atomically after every block of ``log_every`` steps and at the end (a NumPy ``.npz`` of arrays, no
    pickle). A call that finds there the state of this same training continues from it (at the end: returns its
    result at once), with the weights an uninterrupted call gives, bit for bit. "The same training": the same
    starting weights and architecture, PDE (its parameters, arrays, dynamics and domain; the code of a
    ``SemilinearPDE``'s functions cannot be compared), key, trace estimator and settings. A training state of
    another training raises ``StaleTrainingState`` and any other file ``ValueError``; both are left as they are.
    The file stays when training ends: remove it once the result is saved. If it cannot be written (a full disk),
    training goes on without it, with a warning.
    """
    from ._adapters import check_surrogate

    counts = {"steps": steps, "collocation": collocation, "terminal_points": terminal_points, "log_every": log_every}
    for label, value in counts.items():
        if not (is_integer(value) and value >= 1):
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    rates = {"terminal_weight": terminal_weight, "learning_rate": learning_rate,
             "final_learning_rate": final_learning_rate}
    for label, value in rates.items():
        if not (is_real(value) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} must be a finite non-negative number, got {value!r}")
    if not 0 < final_learning_rate <= learning_rate:
        raise ValueError(f"need 0 < final_learning_rate ≤ learning_rate, got {final_learning_rate}, {learning_rate}")
    key = check_key(key)
    surrogate = check_surrogate(surrogate, pde)  # dimension, one value per point, traceable, twice differentiable
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    hyper = _Hyper(steps, collocation, terminal_points, float(terminal_weight), float(learning_rate),
                   float(final_learning_rate), sampling)
    params, static = eqx.partition(surrogate, eqx.is_inexact_array)
    opt_state = _optimiser(hyper).init(params)
    rows, start_time, done = [], time.perf_counter(), 0
    if state_file is not None:
        state_file = Path(state_file)
        fingerprint = _training_fingerprint(params, static, pde, key, trace, hyper, log_every)
        resumed = _read_training_state(state_file, fingerprint, (params, opt_state), steps, log_every)
        if resumed is not None:
            (params, opt_state), done, rows = resumed
    with ProgressBar("train", steps, progress, skipped=done) as bar:  # a live bar on a terminal, lines in a log
        while done < steps:
            n = min(log_every, steps - done)
            params, opt_state, last = _train_block(params, static, opt_state, key, jnp.asarray(done), pde, trace,
                                                   hyper, n)
            done += n
            loss, res_loss, term_loss = (float(v) for v in last)
            rows.append((done, loss, res_loss, term_loss))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged: the loss is {loss} after {done} steps (residual part {res_loss}, terminal "
                    f"part {term_loss}); lower the learning rate (now {learning_rate}) or check the equation"
                )
            if state_file is not None and not _write_training_state(state_file, fingerprint, (params, opt_state),
                                                                    done, rows):
                state_file = None
            bar.update(done, note=f"loss {loss:.3e}")
    arr = np.asarray(rows, dtype=np.float64)
    log = TrainingLog(arr[:, 0].astype(int), arr[:, 1], arr[:, 2], arr[:, 3], time.perf_counter() - start_time)
    return eqx.combine(params, static), log


_STATE_FORMAT = "scasml training state 1"


class StaleTrainingState(ValueError):
    """The ``state_file`` given to ``train`` holds the state of another training (other weights, PDE, key or
    settings); ``path`` names it."""

    def __init__(self, path: Path):
        super().__init__(f"state_file {path} holds the state of another training (another surrogate, PDE, key or "
                         "settings); remove it to start afresh, or name another file")
        self.path = path


def _description(obj) -> dict:
    """The type and fields of a module (an equinox dataclass), as text: static fields included (their repr
    leaves some out), arrays hashed apart."""
    fields = dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ()
    return {"type": type(obj).__name__,
            **{f.name: str(getattr(obj, f.name, None)) for f in fields if not callable(getattr(obj, f.name, None))}}


def _training_fingerprint(params, static, pde, key, trace, hyper: _Hyper, log_every: int) -> str:
    """A hash of what decides a training run: the starting weights and the surrogate's architecture, the PDE
    (parameters, arrays, dynamics, domain, dtype), the key, the trace estimator and the settings (the block size
    too: blocks are compiled programs, so the same blocks give the same bits). Nothing whose text holds a memory
    address (a function's repr) goes in: the same training in another process has the same fingerprint."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params) + jax.tree.leaves(eqx.filter(pde, eqx.is_array)):
        array = np.asarray(leaf)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    surrogate = eqx.combine(params, static)
    architecture = surrogate.architecture() if hasattr(surrogate, "architecture") else {}
    settings = {"format": _STATE_FORMAT, "surrogate": type(surrogate).__name__, "architecture": architecture,
                "pde": pde.parameters(), "pde_type": type(pde).__name__, "dtype": str(pde.dtype),
                "dynamics": _description(pde.dynamics), "domain": _description(pde.domain),
                "key": np.asarray(jax.random.key_data(key)).tolist(), "trace": _description(trace),
                "hyper": dataclasses.asdict(hyper), "log_every": log_every}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _write_training_state(path: Path, fingerprint: str, state, done: int, rows) -> bool:
    """The training state after ``done`` steps, written atomically (replacing the previous one); False (with a
    warning) where it cannot be written."""
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    buffer = io.BytesIO()
    np.savez(buffer, format=np.asarray(_STATE_FORMAT), fingerprint=np.asarray(fingerprint), done=np.asarray(done),
             rows=np.asarray(rows, np.float64).reshape(-1, 4), **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        warnings.warn(f"train: cannot write the training state to {path} ({err.strerror or err}); training goes on "
                      "without it (an interruption would start it over)", RuntimeWarning, stacklevel=3)
        return False
    return True


def _read_training_state(path: Path, fingerprint: str, like, steps: int, log_every: int):
    """(state shaped like ``like``, steps done, loss rows) from the state file at ``path``; None when there is
    none. Raises, touching nothing, ``StaleTrainingState`` for the state of another training and ``ValueError``
    for any other file (or a symbolic link: the state is written as a regular file in its place)."""
    if path.is_symlink():
        raise ValueError(f"state_file {path} is a symbolic link; name a regular file (it is left as it is)")
    if not path.exists():
        return None
    unusable = f"state_file {path} exists and is not a readable scasml training state; it is left as it is"
    if not path.is_file():
        raise ValueError(unusable)
    leaves, structure = jax.tree.flatten(like)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile) or "format" not in data.files \
                    or str(data["format"]) != _STATE_FORMAT:
                raise ValueError(unusable)
            if str(data["fingerprint"]) != fingerprint:
                raise StaleTrainingState(path)
            names = sorted(n for n in data.files if n.startswith("leaf_"))
            stored = [data[f"leaf_{i:05d}"] for i in range(len(leaves))]
            done, rows = data["done"], data["rows"]
    except StaleTrainingState:
        raise
    except Exception as err:  # a truncated or foreign file: zipfile, numpy and OS errors alike
        if str(err) == unusable:
            raise
        raise ValueError(f"{unusable} ({type(err).__name__}: {err})") from None
    blocks = -(-int(done) // log_every) if done.shape == () and done.dtype.kind in "iu" else -1
    if (len(names) != len(leaves) or not 0 < blocks or not (int(done) == steps or int(done) % log_every == 0)
            or int(done) > steps or rows.shape != (blocks, 4)):
        raise ValueError(unusable)
    for new, old in zip(stored, leaves, strict=True):
        if new.shape != np.shape(old) or new.dtype != np.asarray(old).dtype:
            raise ValueError(unusable)
    return (jax.tree.unflatten(structure, [jnp.asarray(a) for a in stored]), int(done),
            [tuple(row) for row in rows.tolist()])
