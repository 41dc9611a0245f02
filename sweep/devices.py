"""Running the kernel on several local devices: a one-axis mesh over whole micro-batches.

A kernel call holds a multiple of ``devices`` micro-batches. With more than one device, the
call's network axis is sharded over a ``Mesh`` with one explicit axis, ``"net"``, and
``jax.shard_map`` gives each device a contiguous run of whole micro-batches, which it runs
with the unchanged single-device kernel. No network is ever split between devices and each
micro-batch is computed by the same compiled per-micro-batch code as on one device, so a
network's numbers are bit-identical between 1 and N devices; the kernel has no collectives,
and devices work independently.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sweep import kernel
from sweep.errors import SpecError
from sweep.network import Architecture

AXIS = "net"


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


def make_kernel(arch: Architecture, probe: kernel.Probe, micro_batch: int, mesh: jax.sharding.Mesh) -> Callable:
    """``kernel.make_kernel`` on every device of ``mesh``, each running whole micro-batches.

    Args:
      arch: the architecture.
      probe: what to measure.
      micro_batch: networks ``vmap``-ed together.
      mesh: from ``local_mesh``.

    Returns:
      ``call(rng_seed, indices, gains, bias_stds) -> dict`` as ``kernel.make_kernel``'s, taking
      host arrays whose length is a multiple of ``micro_batch * mesh.size``; it returns
      without waiting for the devices.
    """
    single = kernel.make_kernel(arch, probe, micro_batch)
    if mesh.size == 1:
        # A one-device mesh is always the first local device, JAX's default: called exactly as
        # the engine always has, the kernel compiles to the very same executable.
        return lambda rng_seed, *arrays: single(jnp.uint32(rng_seed), *(jnp.asarray(a) for a in arrays))
    # check_vma is off because the kernel's scan carries start as constants; it is only a
    # type check of collectives, and the kernel has none.
    spec = PartitionSpec(AXIS)
    sharded = jax.jit(jax.shard_map(
        single, mesh=mesh, in_specs=(PartitionSpec(), spec, spec, spec), out_specs=spec, check_vma=False
    ))
    placement = NamedSharding(mesh, spec)
    return lambda rng_seed, *arrays: sharded(rng_seed, *(jax.device_put(np.asarray(a), placement) for a in arrays))


def describe(mesh: jax.sharding.Mesh, processes: int = 1) -> str:
    """The devices a sweep runs on, for the dataset's ``device_kind`` attribute."""
    device = mesh.devices.flat[0]
    return f"{device.platform}: {device.device_kind} x{mesh.size * processes}"
