"""One JAX device per CPU core (scasml.use_every_cpu_core), checked in fresh processes."""

import os
import subprocess
import sys
import textwrap


def _run(code: str, **env) -> subprocess.CompletedProcess:
    chosen = ("XLA_FLAGS", "SCASML_CPU_DEVICES", "JAX_NUM_CPU_DEVICES")
    environ = {k: v for k, v in os.environ.items() if k not in chosen}
    environ["JAX_PLATFORMS"] = "cpu"  # these are CPU devices, also on a machine with a GPU
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environ, timeout=120)


def test_use_every_cpu_core_sets_the_device_count_and_calibration_uses_them():
    out = _run("""
        import jax, jax.numpy as jnp, numpy as np, scasml
        assert scasml.use_every_cpu_core(3) == 3
        assert len(jax.devices()) == 3, jax.devices()
        pde = scasml.equations.get("vb", dim=4)
        t, x = pde.sample_domain(jax.random.key(0), 7)
        est = scasml.MultilevelPicard(1, 4)
        every = scasml.solve(pde, t, x, est, key=jax.random.key(1))
        one = scasml.solve(pde, t, x, est, key=jax.random.key(1), devices=jax.devices()[:1])
        np.testing.assert_array_equal(every.u, one.u)
        print("ok")
    """)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_use_every_cpu_core_defaults_and_errors():
    out = _run("""
        import jax, scasml
        assert scasml.use_every_cpu_core() == 1          # SCASML_CPU_DEVICES=1
        assert len(jax.devices()) == 1
        try:
            scasml.use_every_cpu_core(2)                  # too late: JAX has started
        except RuntimeError as err:
            assert "before any JAX operation" in str(err), err
        else:
            raise AssertionError("no error after JAX started")
        try:
            scasml.use_every_cpu_core(0)
        except ValueError as err:
            assert "positive integer" in str(err)
        else:
            raise AssertionError("count 0 accepted")
        print("ok")
    """, SCASML_CPU_DEVICES="1")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
    flagged = _run("import jax, scasml; assert scasml.use_every_cpu_core() == 2; print(len(jax.devices()))",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert flagged.returncode == 0 and flagged.stdout.strip() == "2", flagged.stderr[-2000:]
    by_jax = _run("import jax, scasml; assert scasml.use_every_cpu_core() == 3; print(len(jax.devices()))",
                  JAX_NUM_CPU_DEVICES="3")
    assert by_jax.returncode == 0 and by_jax.stdout.strip() == "3", by_jax.stderr[-2000:]
    zero = _run("import scasml\ntry:\n    scasml.use_every_cpu_core()\nexcept ValueError as err:\n    print(err)",
                XLA_FLAGS="--xla_force_host_platform_device_count=0")  # refused here, not deep in a later call
    assert "must be a positive integer, got '0'" in zero.stdout, (zero.stdout, zero.stderr[-2000:])
    bad = subprocess.run([sys.executable, "-m", "scasml.cli", "list"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SCASML_CPU_DEVICES": "many", "JAX_PLATFORMS": "cpu"})
    assert bad.returncode == 2 and "SCASML_CPU_DEVICES must be a positive integer" in bad.stderr, bad.stderr[-2000:]
