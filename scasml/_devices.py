"""One JAX device per CPU core, so that ``solve``/``calibrate`` run query-point chunks on all cores at once."""

from __future__ import annotations

import os
import re

import jax

from ._checks import is_integer

_FLAG = "xla_force_host_platform_device_count"


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_every_cpu_core(count: int | None = None) -> int:
    """Expose ``count`` CPU devices to JAX (default: ``$SCASML_CPU_DEVICES``, else every available core).

    ``solve``/``calibrate`` shard their chunks over all local devices, and XLA runs one device's chunk stream per
    core: on a 2-core CPU this calibrates VB in 20 d about 25 % faster than one device using both cores through
    intra-op threads (experiments/RESULTS.md). Results are those of one device for u; its standard error
    and z may differ in the last float32 digit. Returns the device count in effect. Call it right after
    ``import scasml``, before any JAX operation; a count already given in ``XLA_FLAGS`` or
    ``JAX_NUM_CPU_DEVICES`` is kept.
    """
    if count is None:
        chosen = re.search(_FLAG + r"=(\d+)", os.environ.get("XLA_FLAGS", ""))
        given = chosen.group(1) if chosen else os.environ.get("JAX_NUM_CPU_DEVICES")
        if given:  # kept as given, but a count JAX cannot use is refused here rather than deep in a later call
            where = f"XLA_FLAGS --{_FLAG}" if chosen else "JAX_NUM_CPU_DEVICES"
            if not (given.isdigit() and int(given) >= 1):
                raise ValueError(f"{where} must be a positive integer, got {given!r}")
            return int(given)
        env = os.environ.get("SCASML_CPU_DEVICES")
        if not env:
            count = available_cores()
        elif env.isdigit():
            count = int(env)
        else:
            raise ValueError(f"SCASML_CPU_DEVICES must be a positive integer, got {env!r}")
    if not (is_integer(count) and count >= 1):
        raise ValueError(f"the CPU device count must be a positive integer, got {count!r}")
    count = int(count)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:
        raise RuntimeError(
            "use_every_cpu_core must be called before any JAX operation (JAX has already started its CPU "
            f"backend with {jax.device_count('cpu')} device(s)); call it right after `import scasml`"
        ) from err
    return count
