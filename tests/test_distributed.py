"""Two processes (jax.distributed over localhost, CPU) give the same results as one process, bit for bit."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np

WORKER = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    out_path, port, process_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if process_id >= 0:
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id,
                                   initialization_timeout=60)
        assert jax.process_count() == 2 and jax.process_index() == process_id
    import jax.numpy as jnp, numpy as np
    import scasml

    pde = scasml.equations.get("vb", dim=5)
    t, x = pde.sample_domain(jax.random.key(0), 21)  # 21 points: uneven shares (11 + 10, one padded)
    sur = scasml.FunctionSurrogate(lambda t, x: pde.exact(t, x) + 0.05 * jnp.cos(jnp.sum(x)))
    est = scasml.MultilevelPicard(1, 4)  # one level: quick to compile
    cal = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), index_offset=3)
    sol = scasml.solve(pde, t[5], x[5], est, key=jax.random.key(1), index_offset=5)  # one point: a share is empty
    target = scasml.TargetStderr(absolute=float(jnp.median(cal.stderr)), max_replicas=3)  # top-ups on some points
    ada = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), index_offset=3, allocation=target)
    assert 1 < int(ada.replicas.max())
    if process_id >= 0:  # processes passing different keys must fail loudly, not return a mixture
        try:
            scasml.solve(pde, t, x, est, key=jax.random.key(1 + process_id))
            raise SystemExit("mismatched keys were not detected")
        except ValueError as err:
            assert "same call" in str(err), err
        jax.distributed.shutdown()
    np.savez(out_path, cal_u=cal.u, cal_stderr=cal.stderr, cal_defect_z=cal.defect_z, cal_surrogate=cal.surrogate,
             sol_u=sol.u, sol_z=sol.z, sol_stderr=sol.stderr, sol_z_stderr=sol.z_stderr, ada_u=ada.u,
             ada_stderr=ada.stderr, ada_replicas=ada.replicas)
    print("OK")
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(tmp_path, name, port, process_id):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")
    args = [sys.executable, "-c", WORKER, str(tmp_path / f"{name}.npz"), str(port), str(process_id)]
    log = open(tmp_path / f"{name}.log", "w")  # a file, not a pipe: a chatty process can never block on it
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _wait(procs, timeout):
    """Wait for all processes; kill them all as soon as one fails (its peer would wait for it) or on timeout."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return time.monotonic() <= deadline


def test_two_processes_equal_one(tmp_path):
    port = _free_port()
    names = {"proc0": port, "proc1": port, "single": 0}  # two processes of one run, and the one-process reference
    started = {name: _start(tmp_path, name, p, i if name != "single" else -1)
               for i, (name, p) in enumerate(names.items())}
    in_time = _wait([p for p, _ in started.values()], timeout=180)
    failed = []
    for name, (p, log) in started.items():
        log.close()
        text = (tmp_path / f"{name}.log").read_text()
        if p.returncode != 0 or not text.strip().endswith("OK"):
            failed.append(f"--- {name} (rc {p.returncode}):\n{text[-2000:]}")
    assert in_time and not failed, ("timed out after 180 s\n" if not in_time else "") + "\n".join(failed)
    ref = np.load(tmp_path / "single.npz")
    for i in range(2):
        got = np.load(tmp_path / f"proc{i}.npz")
        assert set(got.files) == set(ref.files)
        for name in ref.files:
            assert got[name].shape == ref[name].shape, name
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)  # bit-identical, every process
