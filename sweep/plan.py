"""The plan: a spec's grid split into compile groups and memory-sized chunks of networks.

A compile group is one architecture (activation, init, profile, depth, width): everything
``jit`` specialises on. Within a group the networks differ only in gain, bias std and seed,
which are ``vmap``-ed; they are cut into chunks of equal size, sized from a memory budget, so
that device memory does not grow with the number of networks.

Every network has a global index, its position in the full grid
``(activation, init, profile, depth, width, gain, bias_std, seed)`` in C order; its random
draws depend only on ``rng_seed`` and that index, never on the chunking.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from sweep.errors import SpecError
from sweep.kernel import LAYER_STATS, Probe
from sweep.network import Architecture
from sweep.spec import GRID_AXES, Spec

STATIC_AXES = GRID_AXES[:5]
"""Axes that ``jit`` specialises on: one compile group per combination."""

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "t": 10**12, "tb": 10**12}
_WORKSPACE_FACTOR = 2.0  # XLA's temporaries beside the arrays counted below
_MICRO_BATCH_BYTES = {"cpu": 64 * 2**20}  # per platform; accelerators get _ACCELERATOR_BYTES
_ACCELERATOR_BYTES = 2 * 2**30
_MAX_MICRO_BATCH = 256


class Chunk(NamedTuple):
    """Networks run in one kernel call.

    Attributes:
      indices: global network indices, ``(size,)`` int64; the last chunk of a group repeats its
        final network to keep the compiled shape, and ``valid`` says how many are real.
      valid: number of real networks at the front of ``indices``.
      local: positions of the real networks within the group's ``(gain, bias_std, seed)`` block.
    """

    indices: np.ndarray
    valid: int
    local: np.ndarray


class Group(NamedTuple):
    """One compile group.

    Attributes:
      position: index along each of ``STATIC_AXES``.
      arch: the architecture.
      micro_batch: networks ``vmap``-ed together; fixed by the architecture alone.
      chunk_size: networks per kernel call, a multiple of ``micro_batch``.
    """

    position: tuple[int, ...]
    arch: Architecture
    micro_batch: int
    chunk_size: int


class Plan(NamedTuple):
    """How a spec will run.

    Attributes:
      spec: the spec.
      probe: the kernel's static measurement settings.
      groups: compile groups, in grid order.
      memory_bytes: the memory budget used to size chunks.
    """

    spec: Spec
    probe: Probe
    groups: tuple[Group, ...]
    memory_bytes: int

    @property
    def networks_per_group(self) -> int:
        g = self.spec.grid
        return len(g.gain) * len(g.bias_std) * self.spec.seeds

    def chunks(self, group: Group) -> Iterator[Chunk]:
        """The chunks of one group, each of exactly ``group.chunk_size`` networks."""
        spec, n = self.spec, self.networks_per_group
        dims = spec.grid.shape + (spec.seeds,)
        local = kernel_order(self.spec)
        tail = np.unravel_index(local, dims[5:])
        head = [np.full(n, p) for p in group.position]
        indices = np.ravel_multi_index(tuple(head) + tail, dims)
        for start in range(0, n, group.chunk_size):
            stop = min(start + group.chunk_size, n)
            idx = indices[start:stop]
            pad = group.chunk_size - idx.size
            yield Chunk(np.concatenate([idx, np.repeat(idx[-1:], pad)]), idx.size, local[start:stop])


def kernel_order(spec: Spec) -> np.ndarray:
    """A group's flat positions over ``(gain, bias_std, seed)`` in the order the kernel runs them.

    C order, except with common random numbers: then the gains of one ``(bias_std, seed)``
    are consecutive, first gain first, as ``kernel.make_kernel`` expects of a draw.
    """
    g = spec.grid
    local = np.arange(len(g.gain) * len(g.bias_std) * spec.seeds)
    if spec.common_random_numbers:
        local = local.reshape(len(g.gain), -1).T.reshape(-1)
    return local


def parse_memory(text: str | int | None) -> int:
    """Parses a memory budget such as ``"4GB"``, ``"512MiB"`` or a number of bytes.

    ``None`` or ``"auto"`` gives a quarter of the machine's total memory, at most 4 GB.

    Raises:
      SpecError: for ``memory`` when the text is not a positive size.
    """
    if text is None or text == "auto":
        import psutil

        return int(min(4 * 10**9, psutil.virtual_memory().total // 4))
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise SpecError("memory", f"must be a size such as 4GB, 512MB or 2GiB, got {text!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise SpecError("memory", f"must be positive, got {text!r}")
    return value


def bytes_per_network(arch: Architecture, probe: Probe) -> int:
    """An upper estimate of the device memory one network needs inside the kernel.

    Counts the weights and biases (kept for the backward pass), the forward residuals
    ``x_{l-1}`` and ``z_l`` of every layer, the largest per-layer temporaries (one weight
    gradient, a few activations) and the Jacobian's tangents, all float32, times a workspace
    factor for XLA's temporaries. With common random numbers the weights are shared by the
    ``probe.gains_per_draw`` networks of a draw.
    """
    shapes, b = arch.shapes, probe.batch
    weights = sum(i * o + o for i, o in shapes) / probe.gains_per_draw
    residuals = b * sum(i + o for i, o in shapes)
    temporaries = max(i * o for i, o in shapes) + 6 * b * max(arch.widths) + b * probe.outputs
    jacobian = 0
    if probe.jacobian:
        n0, widest = arch.widths[0], max(arch.widths)
        jacobian = 4 * n0 * widest + n0 * arch.widths[-1]
    return int(4 * _WORKSPACE_FACTOR * (weights + residuals + temporaries + jacobian))


def micro_batch(arch: Architecture, probe: Probe, platform: str | None = None) -> int:
    """How many networks the kernel ``vmap``s together, set by the architecture.

    A power of two of draws, each of ``probe.gains_per_draw`` networks. It must not depend on
    the memory budget or on the number of networks, since a network's numbers are
    bit-identical only within the same compiled shape (see ``kernel.make_kernel``).
    """
    if platform is None:
        import jax

        platform = jax.default_backend()
    reference = _MICRO_BATCH_BYTES.get(platform, _ACCELERATOR_BYTES)
    per_draw = probe.gains_per_draw
    fits = max(1, reference // (per_draw * bytes_per_network(arch, probe)))
    draws = 2 ** int(math.log2(min(max(1, _MAX_MICRO_BATCH // per_draw), fits)))
    return int(per_draw * draws)


def bytes_of_result(spec: Spec) -> int:
    """Size of the stored dataset, uncompressed: an upper bound of the store on disk."""
    g = spec.grid
    networks = spec.num_networks
    layer_values = networks * max(g.depth) * (8 * len(LAYER_STATS) + 1)
    jacobian = networks * max(g.width) * 2 * 8 if spec.jacobian else 0
    return layer_values + networks * 8 + jacobian


def make_plan(spec: Spec, memory: str | int | None = None) -> Plan:
    """Splits a spec into compile groups and chunks.

    Args:
      spec: the sweep.
      memory: the device memory budget (see ``parse_memory``).

    Returns:
      The plan.

    Raises:
      SpecError: for ``memory`` when one network of some group does not fit the budget.
    """
    budget = parse_memory(memory)
    if spec.num_networks >= 2**32:
        raise SpecError("seeds", f"a sweep holds at most 2^32 networks; this one has {spec.num_networks}")
    per_draw = len(spec.grid.gain) if spec.common_random_numbers else 1
    probe = Probe(spec.batch, spec.loss, spec.outputs, spec.precision, spec.jacobian, per_draw)
    g = spec.grid
    per_group = len(g.gain) * len(g.bias_std) * spec.seeds
    groups = []
    for position in np.ndindex(*g.shape[:5]):
        values = [getattr(g, axis)[i] for axis, i in zip(STATIC_AXES, position)]
        arch = Architecture.from_grid(*values)
        micro = micro_batch(arch, probe)
        need = micro * bytes_per_network(arch, probe)
        if need > budget:
            raise SpecError(
                "memory",
                f"the smallest chunk of {dict(zip(STATIC_AXES, values))} ({micro} networks) needs about "
                f"{need / 1e6:.0f} MB; the budget is {budget / 1e6:.0f} MB (raise --memory or lower batch/width/depth)",
            )
        # Balance the chunks so that the last one is padded as little as possible.
        micro_batches = math.ceil(per_group / micro)
        per_chunk = min(micro_batches, budget // need)
        chunks = math.ceil(micro_batches / per_chunk)
        groups.append(Group(tuple(position), arch, micro, micro * math.ceil(micro_batches / chunks)))
    return Plan(spec, probe, tuple(groups), budget)


def check_disk(spec: Spec, out: str | Path) -> None:
    """Raises ``SpecError`` for ``out`` when the result would not fit the free disk space."""
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    need = bytes_of_result(spec)
    if need > free:
        raise SpecError("out", f"the result needs up to {need / 1e9:.2f} GB but {parent} has {free / 1e9:.2f} GB free")
