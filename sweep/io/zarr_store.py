"""Zarr stores of sweep datasets, written incrementally and atomically.

A sweep's store is laid out before anything is computed (``create``): every measured
variable of ``sweep.io.schema`` missing (NaN, False), no chunk written, chunked as 1 along the
five static axes (one group), by the plan's tile shape along the vmapped axes, and
whole along every other dim (``layer``, ``step``, ...). Each tile is then written as whole zarr
chunks that no other tile touches (``TileWriter``), so processes can write their tiles
concurrently and a tile is rewritten whole if its writing was interrupted. A store is written
under a temporary name beside its destination and moved into place only when complete
(``finalise``), so an existing store is never lost to a failed or interrupted run.

Stores are zarr format 2 with consolidated metadata (format 3 has no stable encoding for
string coordinates yet).
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from sweep.errors import SpecError
from sweep.io import schema

ZARR_FORMAT = 2

_ABANDONED = re.compile(r"(.+\.[0-9a-f]{32}\.partial|\..+\.[0-9a-f]{32})")
"""The temporary names of a write that was never renamed into place: zarr's (``<key>.<uuid>.partial``) and the
work record's (``.<name>.<uuid>``, ``sweep.engine.checkpoint``)."""


def check_writable(out: str | Path, overwrite: bool) -> Path:
    """Refuses an existing ``out`` unless ``overwrite``; nothing is touched either way.

    Raises:
      SpecError: for ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SpecError("out", f"{str(out)!r} exists; pass --overwrite to replace it")
    if out.exists() and not is_store(out):
        raise SpecError("out", f"{str(out)!r} exists and is not a sweep store; refusing to replace it")
    return out


def is_store(path: str | Path) -> bool:
    """Whether ``path`` looks like a zarr store written by sweep."""
    path = Path(path)
    return path.is_dir() and ((path / ".zgroup").exists() or (path / "zarr.json").exists())


def write(ds: xr.Dataset, out: str | Path, overwrite: bool = False) -> Path:
    """Writes ``ds`` to a zarr store at ``out``, atomically.

    The store is written beside ``out`` under a temporary name and renamed into place when
    complete; an existing store is replaced only with ``overwrite``, and only then.

    Returns:
      The store's path.
    """
    out = check_writable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    if partial.exists():
        shutil.rmtree(partial)
    ds.to_zarr(partial, mode="w", zarr_format=ZARR_FORMAT, consolidated=True)
    _move_into_place(partial, out)
    return out


def partial_path(out: str | Path) -> Path:
    """Where the store for ``out`` is written until it is complete."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def chunking(spec, tile: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Zarr chunks of each measured variable: one tile of one group each.

    Args:
      spec: the sweep.
      tile: the tile's extent along each vmapped axis (``sweep.plan.Plan.tile_shape``).
    """
    n = schema.sizes(spec)
    out = {}
    for name, variable in schema.measured(spec).items():
        out[name] = tuple(1 if d in spec.grid.static_axes else tile.get(d, n[d]) for d in variable.dims)
    return out


def create(ds: xr.Dataset, path: str | Path, chunks: dict[str, tuple[int, ...]]) -> None:
    """Lays out a new store at ``path`` from ``schema.template``'s dataset: metadata,
    coordinates and every variable that is not measured; measured values are left to
    ``TileWriter``.

    Args:
      ds: the template.
      path: where the store goes; must not exist.
      chunks: ``chunking``'s.
    """
    encoding = {name: {"chunks": c} for name, c in chunks.items()}
    ds.to_zarr(path, mode="w-", zarr_format=ZARR_FORMAT, consolidated=False, encoding=encoding)


def check_layout(path: str | Path, spec, chunks: dict[str, tuple[int, ...]]) -> str | None:
    """What is wrong with the measured arrays of a store made by ``create``, or None."""
    try:
        group = zarr.open_group(path, mode="r", zarr_format=ZARR_FORMAT, use_consolidated=False)
        for name, variable in schema.measured(spec).items():
            if name not in group:
                return f"no array {name!r}"
            array = group[name]
            if array.shape != schema.shape(spec, variable) or array.chunks != chunks[name] or array.dtype != variable.dtype:
                return f"array {name!r} is {array.dtype}{list(array.shape)} in chunks {list(array.chunks)}"
    except Exception as e:  # zarr raises many kinds of errors for broken metadata
        return f"unreadable zarr metadata: {type(e).__name__}: {e}"
    return None


class TileWriter:
    """Writes tiles into a store laid out by ``create``.

    Args:
      path: the store.
      spec: its sweep.
    """

    def __init__(self, path: str | Path, spec):
        self._group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT, use_consolidated=False)
        self._variables = schema.measured(spec)
        self._arrays = {}

    def write(self, region: dict[str, slice | int], values: dict[str, np.ndarray]) -> None:
        """Writes one tile.

        Args:
          region: the tile's index along every grid axis and the vmapped axes it covers:
            an int for each static axis, a slice for each vmapped one.
          values: measured variables, each of its region's shape, in its dims' order (only
            the dims it has), padded to its full extent along the others.
        """
        for name, block in values.items():
            if name not in self._arrays:
                self._arrays[name] = self._group[name]
            index = tuple(region.get(d, slice(None)) for d in self._variables[name].dims)
            self._arrays[name][index] = block


def finalise(partial: str | Path, out: str | Path) -> Path:
    """Consolidates a complete store's metadata and moves it to ``out``, replacing what is there.

    A process killed while writing leaves the file it was writing under a temporary name (the
    tile is recomputed and written again by the run that resumes it); those files are removed
    first, so a resumed store holds exactly the files of an uninterrupted one.

    Returns:
      ``out``.
    """
    partial, out = Path(partial), Path(out)
    for path in list(partial.rglob("*")):
        if path.is_file() and _ABANDONED.fullmatch(path.name):
            path.unlink()
    with warnings.catch_warnings():
        # the work record (sweep.checkpoint) sits in the store and has no zarr metadata
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        zarr.consolidate_metadata(str(partial), zarr_format=ZARR_FORMAT)
    _move_into_place(partial, out)
    return out


def _move_into_place(partial: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)


def load(path: str | Path) -> xr.Dataset:
    """Opens a store written by ``sweep run`` (lazily; ``.load()`` reads it into memory).

    Raises:
      SpecError: for ``path`` when it is not a sweep store.
    """
    if not is_store(path):
        raise SpecError("path", f"{str(path)!r} is not a sweep zarr store")
    return xr.open_zarr(path, zarr_format=ZARR_FORMAT, consolidated=True)


