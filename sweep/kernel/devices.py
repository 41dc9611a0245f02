"""Running kernels (statistics and training) on several local devices: a one-axis mesh over
whole micro-batches.

A kernel call holds a multiple of ``devices`` micro-batches. With more than one device, the
call's network axis is sharded over a ``Mesh`` with one explicit axis, ``"net"``, and
``jax.shard_map`` gives each device a contiguous run of whole micro-batches, which it runs
with the unchanged single-device kernel. No network is ever split between devices and each
micro-batch is computed by the same compiled per-micro-batch code as on one device, so a
network's numbers are bit-identical between 1 and N devices; the kernel has no collectives,
and devices work independently.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sweep.errors import SpecError
from sweep.kernel import executables
from sweep.kernel.stats import make_kernel as single_device_kernel

AXIS = "net"


def use_cpu_cores() -> int | None:
    """Makes JAX's CPU backend one device per core, if JAX has not started it yet.

    XLA runs the small operations that dominate small networks (and the conditional sampler's
    factorisations) on one thread each, so one CPU device leaves the other cores mostly idle;
    with one device per core the engine shards every kernel call over them
    (``on_devices``), with bit-identical numbers. ``sweep run`` calls this first; from Python,
    call it (``sweep.use_cpu_cores()``) before any JAX work. An explicit ``--xla_force_host_platform_device_count``
    in ``XLA_FLAGS`` or a ``jax_num_cpu_devices`` setting is left as it is.

    Returns:
      The CPU devices it set, or ``None`` when it changed nothing (set already, or JAX's
      backends already started).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices > 0:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # the backends have started: their devices are fixed for this process
        return None
    return cores


def local_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A mesh over the first ``devices`` of this process's devices (default: all of them).

    Raises:
      SpecError: for ``devices`` when it is not between 1 and the number of local devices.
    """
    local = jax.local_devices()
    count = len(local) if devices is None else devices
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(local):
        raise SpecError("devices", f"must be between 1 and {len(local)} (this process's devices), got {devices!r}")
    return jax.make_mesh((count,), (AXIS,), axis_types=(jax.sharding.AxisType.Explicit,), devices=local[:count])


def on_devices(fn: Callable, mesh: jax.sharding.Mesh, batched: tuple[bool, ...], donate: tuple[int, ...] = (),
               description: str | None = None) -> Callable:
    """``fn`` on every device of ``mesh``, each running a contiguous share of the networks.

    Args:
      fn: a jitted function of arrays with a leading network axis (where ``batched``) and
        shared arguments; every output has a leading network axis.
      mesh: from ``local_mesh``.
      batched: per positional argument, whether it has the network axis (a pytree of such
        arrays counts as one argument).
      donate: positional arguments whose buffers the call may reuse.
      description: everything static that ``fn`` closes over, in text: its executables are
        then kept in ``sweep.kernel.executables``' store, which this names them by.

    Returns:
      ``fn``'s equivalent, taking host or device arrays whose network axis is a multiple of
      ``mesh.size`` whole micro-batches; it returns without waiting for the devices.
    """
    if mesh.size == 1:
        # A one-device mesh is always the first local device, JAX's default: called exactly as
        # the engine always has, the function compiles to the very same executable.
        return fn if description is None else executables.stored(fn, description)
    spec = PartitionSpec(AXIS)
    in_specs = tuple(spec if b else PartitionSpec() for b in batched)
    # check_vma is off because the kernels' scans carry start as constants; it is only a type
    # check of collectives, and the kernels have none.
    sharded = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False),
                      donate_argnums=donate)
    if description is not None:
        sharded = executables.stored(sharded, description)
    placement = NamedSharding(mesh, spec)

    def place(a, is_batched):
        if not is_batched:
            return a
        return jax.tree.map(lambda x: x if _placed(x, placement) else jax.device_put(np.asarray(x), placement), a)

    return lambda *args: sharded(*(place(a, b) for a, b in zip(args, batched)))


def _placed(x, placement) -> bool:
    return isinstance(x, jax.Array) and x.sharding == placement


@functools.cache
def make_kernel(program, probe, micro_batch: int, mesh: jax.sharding.Mesh) -> Callable:
    """The statistics kernel on every device of ``mesh``, each running whole micro-batches.

    Cached, so that every group of a program shares one sharded ``jit`` (and one compile) on
    several devices too, as ``sweep.kernel.stats.make_kernel`` shares it on one.

    Args:
      program: the ``network.Program``.
      probe: what to measure.
      micro_batch: networks ``vmap``-ed together.
      mesh: from ``local_mesh``.

    Returns:
      ``call(rng_seed, prefix, indices, gains, bias_stds) -> NetworkStats`` as
      ``sweep.kernel.stats.make_kernel``'s, taking host arrays whose length is a multiple of
      ``micro_batch * mesh.size``; it returns without waiting for the devices.
    """
    single = on_devices(single_device_kernel(program, probe, micro_batch), mesh, (False, False, True, True, True),
                        description=f"statistics kernel {program!r} {probe!r} micro-batch {micro_batch}")
    return lambda rng_seed, prefix, *arrays: single(
        jnp.uint32(rng_seed), jax.tree.map(jnp.asarray, prefix), *(jnp.asarray(a) if mesh.size == 1 else a for a in arrays))


def describe(mesh: jax.sharding.Mesh, processes: int = 1) -> str:
    """The devices a sweep runs on, for the dataset's ``device_kind`` attribute."""
    device = mesh.devices.flat[0]
    return f"{device.platform}: {device.device_kind} x{mesh.size * processes}"
