"""The plan: a spec's grid split into compile groups, micro-batches, kernel calls and tiles.

A compile group is one architecture (activation, init, profile, depth, width): everything
``jit`` specialises on. Within a group the networks differ only in gain, bias std and seed,
which are ``vmap``-ed. Their *flat position* is their index over ``(gain, bias_std, seed)``
in C order, and three ways of cutting that flat order serve three purposes:

* Micro-batches: flat positions ``[m·µ, (m+1)·µ)``, the last one padded with the group's final
  network. ``µ`` is fixed by the architecture alone, and a network is always computed inside
  the same micro-batch, hence the same compiled shape: this is what makes results
  bit-identical whatever the memory budget, device count, process count or resumption.
* Kernel calls: runs of whole micro-batches, as many as the memory budget allows per device,
  so that device memory does not grow with the number of networks.
* Tiles: the stored chunks. A tile is a block of the group's ``(gain, bias_std, seed)``
  rectangle that is also contiguous in flat order, of one shape for the whole grid, so that
  tiles are exactly the cells of the zarr chunk grid and every tile is written as whole zarr
  chunks. Tiles are the unit of work between processes and of crash-safe progress. They need
  not align with micro-batches: a micro-batch that straddles two tiles is computed once per
  run and feeds both.

Every network has a global index, its position in the full grid
``(activation, init, profile, depth, width, gain, bias_std, seed)`` in C order; its random
draws depend only on ``rng_seed`` and that index, never on the chunking.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from sweep import scaled_copies
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
_CHUNK_BYTES = 2**20  # a stored chunk of one float64 per-layer variable: zarr's sweet spot


class Tile(NamedTuple):
    """One stored chunk: a block of one group, a rectangle that is contiguous in flat order.

    Attributes:
      id: position in ``Plan.tiles``: group-major, then flat order within the group.
      group: index into ``Plan.groups``.
      start: first flat position of the block within the group.
      stop: one past its last flat position.
      region: slices along ``(gain, bias_std, seed)``.
    """

    id: int
    group: int
    start: int
    stop: int
    region: tuple[slice, slice, slice]

    @property
    def size(self) -> int:
        return self.stop - self.start


class Group(NamedTuple):
    """One compile group.

    Attributes:
      position: index along each of ``STATIC_AXES``.
      arch: the architecture.
      micro_batch: networks ``vmap``-ed together; fixed by the architecture alone.
      chunk_size: networks per kernel call on one device, a multiple of ``micro_batch``.
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
      memory_bytes: the memory budget used to size kernel calls, per device.
      tile_shape: the stored chunk's extent along ``(gain, bias_std, seed)``.
    """

    spec: Spec
    probe: Probe
    groups: tuple[Group, ...]
    memory_bytes: int
    tile_shape: tuple[int, int, int]

    @property
    def networks_per_group(self) -> int:
        g = self.spec.grid
        return len(g.gain) * len(g.bias_std) * self.spec.seeds

    @property
    def local_shape(self) -> tuple[int, int, int]:
        """The ``(gain, bias_std, seed)`` rectangle of one group."""
        g = self.spec.grid
        return len(g.gain), len(g.bias_std), self.spec.seeds

    @property
    def tiles(self) -> tuple[Tile, ...]:
        """Every tile of the grid; the same cells in every group."""
        cells = _tile_cells(self.local_shape, self.tile_shape)
        return tuple(
            Tile(g * len(cells) + i, g, start, stop, region)
            for g in range(len(self.groups))
            for i, (start, stop, region) in enumerate(cells)
        )

    def micro_batches(self, group: Group) -> int:
        """Number of micro-batches of a group."""
        return -(-self.networks_per_group // group.micro_batch)

    def call_size(self, group: Group, devices: int = 1) -> int:
        """Micro-batches per kernel call on ``devices`` devices: a multiple of ``devices``.

        At most the budget's share per device, balanced so that the last call of the whole
        group is padded as little as possible. It depends on the group, not on which of its
        micro-batches a run still needs, so a resumed run reuses the same compiled shape.
        """
        per_device = max(1, self.memory_bytes // (group.micro_batch * bytes_per_network(group.arch, self.probe)))
        total = self.micro_batches(group)
        calls = -(-total // (devices * per_device))
        return devices * -(-total // (calls * devices))

    def calls(self, group: Group, micro_batch_ids: np.ndarray, devices: int = 1) -> Iterator[np.ndarray]:
        """Cuts a group's micro-batches (ascending ids) into kernel calls of ``call_size``.

        The last call is padded by repeating its last micro-batch, to keep the compiled shape.
        """
        size = self.call_size(group, devices)
        for start in range(0, len(micro_batch_ids), size):
            ids = micro_batch_ids[start : start + size]
            yield np.concatenate([ids, np.repeat(ids[-1:], size - ids.size)])

    @property
    def gains_per_draw(self) -> int:
        """Networks per draw of random numbers: the number of gains with common random numbers, else 1."""
        return self.probe.gains_per_draw

    def positions(self, group: Group, micro_batch_ids: np.ndarray) -> np.ndarray:
        """The flat positions computed by a run of micro-batches, ``(len(ids) * µ,)`` int64.

        Micro-batch m holds kernel slots ``m·µ .. m·µ + µ - 1``. Slot k is flat position k,
        except with common random numbers (G gains per draw): then slot k is gain ``k mod G``
        of the ``(bias_std, seed)`` pair ``k div G``, so that the G networks of a draw sit
        side by side (``kernel.make_kernel``). Slots past the group's end repeat its final
        draw, which computes exactly the same numbers as that draw does.
        """
        mu, n, per_draw = group.micro_batch, self.networks_per_group, self.gains_per_draw
        slots = np.asarray(micro_batch_ids, np.int64)[:, None] * mu + np.arange(mu)
        slots = np.where(slots < n, slots, n - per_draw + slots % per_draw).reshape(-1)
        draw, gain = np.divmod(slots, per_draw)
        return gain * (n // per_draw) + draw

    def slots(self, positions: np.ndarray) -> np.ndarray:
        """The kernel slots of flat positions: the inverse of ``positions``' slot order."""
        per_draw = self.gains_per_draw
        gain, draw = np.divmod(np.asarray(positions, np.int64), self.networks_per_group // per_draw)
        return draw * per_draw + gain

    def describe(self, group: Group) -> str:
        """The group's grid point, e.g. ``activation=relu, init=fan_in, ..., width=64``."""
        values = (getattr(self.spec.grid, axis)[i] for axis, i in zip(STATIC_AXES, group.position))
        return ", ".join(f"{axis}={value}" for axis, value in zip(STATIC_AXES, values))

    def call_flops(self, group: Group, devices: int = 1) -> float:
        """An estimate of the floating-point work of one kernel call on one device."""
        per_device = self.call_size(group, devices) // devices * group.micro_batch
        return float(per_device * flops_per_network(group.arch, self.probe))

    def global_indices(self, group: Group, positions: np.ndarray) -> np.ndarray:
        """Global network indices of a group's flat positions."""
        offset = int(np.ravel_multi_index(group.position, self.spec.grid.shape[:5])) * self.networks_per_group
        return offset + positions

    def tile_micro_batches(self, group: Group, tiles: Sequence[Tile]) -> np.ndarray:
        """The ascending, distinct micro-batches that cover ``tiles`` of one group."""
        mu = group.micro_batch
        if self.gains_per_draw == 1:
            ids = [np.arange(t.start // mu, (t.stop - 1) // mu + 1) for t in tiles]
        else:
            ids = [np.unique(self.slots(np.arange(t.start, t.stop)) // mu) for t in tiles]
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)


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
    ``probe.gains_per_draw`` networks of a draw; where these are scaled copies of one network
    (``scaled_copies.applies``), everything but the per-gain outputs is shared, and the
    backward pass carries two cotangents.
    """
    shapes, b = arch.shapes, probe.batch
    weights = sum(i * o + o for i, o in shapes)
    residuals = b * sum(i + o for i, o in shapes)
    temporaries = max(i * o for i, o in shapes) + 6 * b * max(arch.widths) + b * probe.outputs
    jacobian = 0
    if probe.jacobian:
        n0, widest = arch.widths[0], max(arch.widths)
        jacobian = 4 * n0 * widest + n0 * arch.widths[-1]
    if scaled_copies.applies(arch, probe):
        shared = weights + residuals + 2 * temporaries + jacobian
        return int(4 * _WORKSPACE_FACTOR * shared / probe.gains_per_draw)
    shared = weights / probe.gains_per_draw
    return int(4 * _WORKSPACE_FACTOR * (shared + residuals + temporaries + jacobian))


def flops_per_network(arch: Architecture, probe: Probe) -> int:
    """The GEMM FLOPs of one network: forward, backward and weight gradient, and the Jacobian's tangents."""
    layer = sum(2 * i * o for i, o in arch.shapes)
    jacobian = arch.widths[0] * layer if probe.jacobian else 0
    return 3 * probe.batch * layer + jacobian


def micro_batch(arch: Architecture, probe: Probe, platform: str | None = None) -> int:
    """How many networks the kernel ``vmap``s together, set by the architecture.

    A power of two of draws, each of ``probe.gains_per_draw`` networks. It must not depend on
    the memory budget or on the number of networks, since a network's numbers are
    bit-identical only within the same compiled shape (see ``sweep.batching``).
    """
    per_draw = probe.gains_per_draw
    draws = fitting_power_of_two(per_draw * bytes_per_network(arch, probe), max(1, _MAX_MICRO_BATCH // per_draw), platform)
    return per_draw * draws


def fitting_power_of_two(bytes_each: int, most: int, platform: str | None = None) -> int:
    """The largest power of two of items, at most ``most``, that fit the platform's reference size.

    The reference (64 MiB on a CPU, 2 GiB on an accelerator) sizes micro-batches from what
    one item needs, never from the budget; at least one item.

    Args:
      bytes_each: memory of one item.
      most: the most items.
      platform: the JAX backend (default: the current one).
    """
    reference = _MICRO_BATCH_BYTES.get(_platform(platform), _ACCELERATOR_BYTES)
    fits = max(1, reference // bytes_each)
    return 2 ** int(math.log2(min(most, fits)))


def _platform(platform: str | None) -> str:
    """``platform``, or by default the JAX backend's."""
    if platform is None:
        import jax

        platform = jax.default_backend()
    return platform


def bytes_of_result(spec: Spec) -> int:
    """Size of the stored dataset, uncompressed: an upper bound of the store on disk."""
    g = spec.grid
    networks = spec.num_networks
    layer_values = networks * max(g.depth) * (8 * len(LAYER_STATS) + 1)
    jacobian = networks * max(g.width) * 2 * 8 if spec.jacobian else 0
    return layer_values + networks * 8 + jacobian


def make_plan(
    spec: Spec,
    memory: str | int | None = None,
    chunk_networks: int | None = None,
    micro_batches: Sequence[int] | None = None,
    tile_shape: Sequence[int] | None = None,
) -> Plan:
    """Splits a spec into compile groups, kernel calls and tiles.

    Args:
      spec: the sweep.
      memory: the device memory budget per device (see ``parse_memory``).
      chunk_networks: about how many networks a tile (stored chunk) holds; by default, as
        many as make about 1 MiB per chunk of a per-layer variable.
      micro_batches: each group's micro-batch, as recorded by a run being resumed; by
        default from the architecture and this machine's platform.
      tile_shape: the tile shape recorded by a run being resumed; overrides ``chunk_networks``.

    Returns:
      The plan.

    Raises:
      SpecError: for ``memory`` when one micro-batch of some group does not fit the budget,
        or ``chunk_networks`` when it is not a positive integer.
    """
    budget = parse_memory(memory)
    if spec.num_networks >= 2**32:
        raise SpecError("seeds", f"a sweep holds at most 2^32 networks; this one has {spec.num_networks}")
    per_draw = len(spec.grid.gain) if spec.common_random_numbers else 1
    g = spec.grid
    scaled = spec.scaled_copies and min(g.gain) > 0 and max(g.bias_std) == 0
    probe = Probe(spec.batch, spec.loss, spec.outputs, spec.precision, spec.jacobian, per_draw, scaled,
                  jacobian_on_host=spec.jacobian and _platform(None) == "cpu")
    per_group = len(g.gain) * len(g.bias_std) * spec.seeds
    groups = []
    for n, position in enumerate(np.ndindex(*g.shape[:5])):
        values = [getattr(g, axis)[i] for axis, i in zip(STATIC_AXES, position)]
        arch = Architecture.from_grid(*values)
        micro = micro_batch(arch, probe) if micro_batches is None else int(micro_batches[n])
        need = micro * bytes_per_network(arch, probe)
        if need > budget:
            raise SpecError(
                "memory",
                f"the smallest chunk of {dict(zip(STATIC_AXES, values))} ({micro} networks) needs about "
                f"{need / 1e6:.0f} MB; the budget is {budget / 1e6:.0f} MB (raise --memory or lower batch/width/depth)",
            )
        # Balance the chunks so that the last one is padded as little as possible.
        micro_count = math.ceil(per_group / micro)
        per_chunk = min(micro_count, budget // need)
        chunks = math.ceil(micro_count / per_chunk)
        groups.append(Group(tuple(position), arch, micro, micro * math.ceil(micro_count / chunks)))
    if tile_shape is None:
        if chunk_networks is None:
            chunk_networks = max(1, _CHUNK_BYTES // (8 * max(g.depth)))
        elif isinstance(chunk_networks, bool) or not isinstance(chunk_networks, int) or chunk_networks < 1:
            raise SpecError("chunk_networks", f"must be a positive integer, got {chunk_networks!r}")
        tile_shape = choose_tile_shape((len(g.gain), len(g.bias_std), spec.seeds), chunk_networks)
    return Plan(spec, probe, tuple(groups), budget, tuple(int(t) for t in tile_shape))


def choose_tile_shape(local_shape: tuple[int, int, int], networks: int) -> tuple[int, int, int]:
    """The tile shape over ``(gain, bias_std, seed)`` nearest ``networks`` per tile.

    Only shapes whose every cell is contiguous in flat order qualify: whole seed rows of
    several bias stds, whole ``(bias_std, seed)`` blocks of several gains, or a run of seeds.
    Cells are balanced so that the last one along the cut axis is as full as the others.

    Args:
      local_shape: ``(gains, bias_stds, seeds)``.
      networks: the target number of networks per tile, at least 1.

    Returns:
      ``(cg, cb, cs)``.
    """
    gains, biases, seeds = local_shape
    balanced = lambda n, per: -(-n // -(-n // max(1, min(per, n))))
    if networks >= biases * seeds:
        return balanced(gains, networks // (biases * seeds)), biases, seeds
    if networks >= seeds:
        return 1, balanced(biases, networks // seeds), seeds
    return 1, 1, balanced(seeds, networks)


def _tile_cells(local_shape, tile_shape) -> list[tuple[int, int, tuple[slice, slice, slice]]]:
    """``(start, stop, region)`` of each tile of one group, in flat order."""
    cells = []
    for starts in np.ndindex(*(-(-n // c) for n, c in zip(local_shape, tile_shape))):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(starts, tile_shape, local_shape))
        first = np.ravel_multi_index(tuple(r.start for r in region), local_shape)
        last = np.ravel_multi_index(tuple(r.stop - 1 for r in region), local_shape)
        cells.append((int(first), int(last) + 1, region))
    return cells


def assign(plan: Plan, tiles: Sequence[Tile], processes: int) -> list[list[Tile]]:
    """Shares tiles among processes: contiguous runs in tile order, balanced by estimated cost.

    Contiguous runs keep each process to few compile groups, and only the micro-batches at
    the boundaries between processes are computed twice.

    Args:
      plan: the plan.
      tiles: the tiles to share, in ascending id.
      processes: how many processes share them.

    Returns:
      Each process's tiles, in ascending id.
    """
    shares: list[list[Tile]] = [[] for _ in range(processes)]
    if not tiles:
        return shares
    cost = np.array([t.size * bytes_per_network(plan.groups[t.group].arch, plan.probe) for t in tiles], np.float64)
    middle = np.cumsum(cost) - cost / 2
    owner = np.minimum((middle * processes / cost.sum()).astype(np.int64), processes - 1)
    for tile, p in zip(tiles, owner):
        shares[p].append(tile)
    return shares


def check_disk(spec: Spec, out: str | Path) -> None:
    """Raises ``SpecError`` for ``out`` when the result would not fit the free disk space."""
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    need = bytes_of_result(spec)
    if need > free:
        raise SpecError("out", f"the result needs up to {need / 1e9:.2f} GB but {parent} has {free / 1e9:.2f} GB free")
