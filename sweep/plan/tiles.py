"""Tiles: the stored chunks, the unit of work between processes and of crash-safe progress.

Within a group the networks form a rectangle over the vmapped axes (statistics:
``(gain, bias_std, seed)``; training: ``(gain, bias_std, seed, learning_rate)``), and their
*flat position* is their index in it in C order. A tile is a block of that rectangle that is
also contiguous in flat order, of one shape for the whole grid, so that tiles are exactly the
cells of the zarr chunk grid and every tile is written as whole zarr chunks. Trailing axes
that a tile must hold whole (training's ``learning_rate``: the initial networks' statistics
have no such dim, and each of their chunks must be written by one tile) are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Tile(NamedTuple):
    """One stored chunk: a block of one group, a rectangle that is contiguous in flat order.

    Attributes:
      id: position in ``Plan.tiles``: group-major, then flat order within the group.
      group: index into ``Plan.groups``.
      start: first flat position of the block within the group.
      stop: one past its last flat position.
      region: a slice along each vmapped axis, by name.
    """

    id: int
    group: int
    start: int
    stop: int
    region: dict[str, slice]

    @property
    def size(self) -> int:
        return self.stop - self.start


def choose_tile_shape(local_shape: tuple[int, ...], networks: int, whole: int = 0) -> tuple[int, ...]:
    """The tile shape nearest ``networks`` per tile whose cells are contiguous in flat order.

    Only shapes that cut one axis and hold every later axis whole qualify. The last ``whole``
    axes are never cut. Cells are balanced so that the last one along the cut axis is as full
    as the others.

    Args:
      local_shape: the extent of each vmapped axis, in flat order.
      networks: the target number of networks per tile, at least 1.
      whole: how many trailing axes a tile always holds whole.

    Returns:
      The tile's extent along each axis.
    """
    balanced = lambda n, per: -(-n // -(-n // max(1, min(per, n))))
    cuttable = len(local_shape) - whole
    for axis in range(cuttable):
        inner = int(np.prod(local_shape[axis + 1:]))
        if networks >= inner or axis == cuttable - 1:
            cut = balanced(local_shape[axis], max(1, networks // inner))
            return (1,) * axis + (cut,) + tuple(local_shape[axis + 1:])
    return tuple(local_shape)


def cells(axes: Sequence[str], local_shape: tuple[int, ...], tile_shape: tuple[int, ...]) -> list[tuple[int, int, dict]]:
    """``(start, stop, region)`` of each tile of one group, in flat order."""
    out = []
    for starts in np.ndindex(*(-(-n // c) for n, c in zip(local_shape, tile_shape))):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(starts, tile_shape, local_shape))
        first = np.ravel_multi_index(tuple(r.start for r in region), local_shape)
        last = np.ravel_multi_index(tuple(r.stop - 1 for r in region), local_shape)
        out.append((int(first), int(last) + 1, dict(zip(axes, region))))
    return out


def assign(tiles: Sequence[Tile], cost: Sequence[float], processes: int) -> list[list[Tile]]:
    """Shares tiles among processes: contiguous runs in tile order, balanced by estimated cost.

    Contiguous runs keep each process to few groups, and only the micro-batches at
    the boundaries between processes are computed twice.

    Args:
      tiles: the tiles to share, in ascending id.
      cost: each tile's estimated cost.
      processes: how many processes share them.

    Returns:
      Each process's tiles, in ascending id.
    """
    shares: list[list[Tile]] = [[] for _ in range(processes)]
    if not tiles:
        return shares
    cost = np.asarray(cost, np.float64)
    middle = np.cumsum(cost) - cost / 2
    owner = np.minimum((middle * processes / cost.sum()).astype(np.int64), processes - 1)
    for tile, p in zip(tiles, owner):
        shares[p].append(tile)
    return shares
