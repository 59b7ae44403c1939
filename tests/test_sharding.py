"""Sharded (4 virtual CPU devices) and unsharded calibration give identical estimates, adaptive ones included."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import scasml
    assert len(jax.devices()) == 4, jax.devices()
    pde = scasml.equations.get("vb", dim=5)
    t, x = pde.sample_domain(jax.random.key(0), 21)
    sur = lambda t, x: pde.exact(t, x) + 0.05 * jnp.cos(jnp.sum(x))
    est = scasml.MultilevelPicard(2, 3)
    ref = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), devices=jax.devices()[:1])
    for k in (2, 4):
        out = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), devices=jax.devices()[:k])
        np.testing.assert_array_equal(ref.u, out.u)  # estimates: bit-identical
        # standard errors: identical up to one float32 ulp (XLA fuses the variance reduction per device)
        np.testing.assert_allclose(ref.stderr, out.stderr, rtol=2.4e-7, atol=0)
    plain = scasml.solve(pde, t, x, est, key=jax.random.key(1))  # default: all 4 devices
    single = scasml.solve(pde, t, x, est, key=jax.random.key(1), devices=jax.devices()[:1])
    np.testing.assert_array_equal(plain.u, single.u)
    # adaptive replicas: the top-ups' chunks spread over the devices, the same results as on one device
    target = scasml.TargetStderr(absolute=0.5 * float(np.median(ref.stderr)))
    one = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), devices=jax.devices()[:1], allocation=target)
    four = scasml.calibrate(sur, pde, t, x, est, key=jax.random.key(4), allocation=target)
    assert int(np.max(one.replicas)) > 1
    np.testing.assert_array_equal(one.replicas, four.replicas)
    np.testing.assert_array_equal(one.u, four.u)
    np.testing.assert_allclose(one.stderr, four.stderr, rtol=2.4e-7, atol=0)
    print("OK")
    """
)


def test_sharded_equals_unsharded():
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
