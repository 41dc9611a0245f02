"""The dataset contract and its storage: xarray datasets in zarr stores, netCDF export.

Dims are every grid axis, each with its coordinate even when of length 1, then ``seed`` and
``layer`` (1..max(depth); NaN beyond a network's own depth). Each variable carries its
``long_name``, ``units`` and a ``definition``; the dataset carries the spec and provenance.
Stores are written to a sibling temporary folder and moved into place only when complete,
so an existing store is never lost to a failed or interrupted run.

A sweep is written incrementally (``template``, ``create``, ``TileWriter``, ``finalise``): the
whole store is laid out first, every measured variable NaN-filled (False for ``overflow``)
with no chunk written, chunked as 1 along the five static axes, by the plan's tile shape
along ``(gain, bias_std, seed)`` and whole along ``layer`` and ``singular_value``. Each tile is
then written as whole zarr chunks, which no other tile touches, so processes can write
their tiles concurrently and a tile is rewritten whole if its writing was interrupted.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import jax
import numpy as np
import xarray as xr
import zarr

from sweep import profiles
from sweep.errors import SpecError
from sweep.kernel import LAYER_STATS
from sweep.spec import GRID_AXES, Spec

ZARR_FORMAT = 2  # format 3 has no stable specification for string coordinates yet

NETWORK_DIMS = GRID_AXES + ("seed",)
LAYER_DIMS = NETWORK_DIMS + ("layer",)
LAYER_STATS_AND_FLAGS = LAYER_STATS + ("overflow",)

VARIABLES: dict[str, tuple[str, str]] = {
    "preact_mean": ("mean pre-activation", "mean over units and batch of z_l = W_l x_{l-1} + b_l"),
    "preact_meansq": ("pre-activation second moment", "mean over units and batch of z_l²"),
    "preact_var": ("pre-activation variance", "variance of z_l over units and batch, pooled"),
    "act_mean": ("mean activation", "mean over units and batch of x_l = φ(z_l)"),
    "act_meansq": ("activation second moment", "mean over units and batch of x_l²"),
    "act_var": ("activation variance", "variance of x_l over units and batch, pooled"),
    "grad_preact_meansq": ("pre-activation gradient second moment",
                           "mean over units and batch of (∂ℓ/∂z_l)², ℓ each example's own loss"),
    "grad_act_meansq": ("activation gradient second moment",
                        "mean over units and batch of (∂ℓ/∂x_l)², ℓ each example's own loss"),
    "grad_weight_meansq": ("weight gradient second moment",
                           "mean over entries of (∂C/∂W_l)², C the batch-mean loss"),
    "dead_fraction": ("dead unit fraction", "fraction of units with φ'(z_l) = 0 on every example"),
    "overflow": ("overflow", "a statistic of this layer exceeded the float range and is not finite"),
    "loss": ("loss", "batch-mean loss C at initialisation"),
    "jacobian_singular_values": ("Jacobian singular values",
                                 "singular values of ∂x_L/∂x_0 at the first input, descending"),
    "layer_width": ("layer width", "n_l, the width of hidden layer l; 0 beyond the depth"),
}


def measured_variables(spec: Spec) -> dict[str, tuple[tuple[int, ...], type, object]]:
    """``name: (shape, dtype, fill value)`` of each variable the kernel measures."""
    shape = spec.grid.shape + (spec.seeds,)
    layers = (max(spec.grid.depth),)
    out = {k: (shape + layers, np.float64, np.nan) for k in LAYER_STATS}
    out["overflow"] = (shape + layers, np.bool_, False)
    out["loss"] = (shape, np.float64, np.nan)
    if spec.jacobian:
        out["jacobian_singular_values"] = (shape + (max(spec.grid.width),), np.float64, np.nan)
    return out


def empty_arrays(spec: Spec) -> dict[str, np.ndarray]:
    """Result arrays of the dataset's full shape, filled with NaN (False for ``overflow``)."""
    return {k: np.full(shape, fill, dtype) for k, (shape, dtype, fill) in measured_variables(spec).items()}


def to_dataset(spec: Spec, arrays: dict[str, np.ndarray], extra_attrs: dict | None = None) -> xr.Dataset:
    """Wraps result arrays (from ``empty_arrays``, filled) into the contract's dataset."""
    g = spec.grid
    coords = {axis: list(getattr(g, axis)) for axis in GRID_AXES}
    coords["seed"] = np.arange(spec.seeds)
    coords["layer"] = np.arange(1, max(g.depth) + 1)
    data = {}
    for name, values in arrays.items():
        dims = LAYER_DIMS if values.ndim == len(LAYER_DIMS) else NETWORK_DIMS
        if name == "jacobian_singular_values":
            dims = NETWORK_DIMS + ("singular_value",)
            coords["singular_value"] = np.arange(1, values.shape[-1] + 1)
        data[name] = (dims, values, _attrs(name))
    data["layer_width"] = (("profile", "depth", "width", "layer"), _layer_widths(spec), _attrs("layer_width"))
    ds = xr.Dataset(data, coords=coords)
    for axis, (long_name, units) in _COORD_ATTRS.items():
        if axis in ds.coords:
            ds[axis].attrs.update(long_name=long_name, units=units)
    ds.attrs.update(provenance(spec))
    ds.attrs.update(extra_attrs or {})
    return ds


_COORD_ATTRS = {
    "activation": ("activation function φ", ""), "init": ("weight initialisation", ""),
    "profile": ("width profile", ""), "depth": ("number of hidden layers L", "1"),
    "width": ("base width n (input dimension)", "1"), "gain": ("weight gain σ_w", "1"),
    "bias_std": ("bias standard deviation σ_b", "1"), "seed": ("network seed", "1"),
    "layer": ("hidden layer l", "1"), "singular_value": ("singular value rank", "1"),
}


def _attrs(name: str) -> dict:
    long_name, definition = VARIABLES[name]
    return {"long_name": long_name, "units": "1", "definition": definition}


def _layer_widths(spec: Spec) -> np.ndarray:
    g = spec.grid
    out = np.zeros((len(g.profile), len(g.depth), len(g.width), max(g.depth)), np.int64)
    for i, p in enumerate(g.profile):
        for j, d in enumerate(g.depth):
            for k, w in enumerate(g.width):
                out[i, j, k, :d] = profiles.widths(p, w, d)[1:]
    return out


def provenance(spec: Spec) -> dict[str, str]:
    """Attributes that say what produced a dataset: spec, versions, device, commit, time.

    ``device_kind`` names this process's default device and JAX's device count; a run on
    fewer devices or several processes overrides it (see ``sweep.devices.describe``).
    """
    packages = ("sweep", "jax", "jaxlib", "flax", "optax", "numpy", "xarray", "zarr")
    versions = {}
    for p in packages:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = "not installed"
    device = jax.devices()[0]
    return {
        "title": f"sweep {spec.kind}: {spec.name}",
        "spec": spec.to_json(),
        "versions": json.dumps(versions, sort_keys=True),
        "device_kind": f"{device.platform}: {device.device_kind} x{jax.device_count()}",
        "matmul_precision": spec.precision,
        "git_commit": _git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=5)
        if result.returncode == 0:
            return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


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


def template(spec: Spec, extra_attrs: dict | None = None) -> xr.Dataset:
    """The full dataset of a sweep with every measured value missing, using no memory for them.

    Args:
      spec: the sweep.
      extra_attrs: attributes that override or add to the provenance.

    Returns:
      The dataset, its measured variables read-only NaN (False) broadcasts.
    """
    arrays = {k: np.broadcast_to(np.asarray(fill, dtype), shape)
              for k, (shape, dtype, fill) in measured_variables(spec).items()}
    return to_dataset(spec, arrays, extra_attrs)


def chunking(spec: Spec, tile_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Zarr chunks of each measured variable: one tile of one compile group each."""
    out = {}
    for name, (shape, _, _) in measured_variables(spec).items():
        out[name] = (1,) * 5 + tuple(tile_shape) + tuple(shape[len(NETWORK_DIMS):])
    return out


def create(ds: xr.Dataset, path: str | Path, tile_shape: tuple[int, int, int]) -> None:
    """Lays out a new store at ``path`` from ``template``'s dataset: metadata, coordinates and
    every variable that is not measured; measured values are left to ``TileWriter``."""
    spec = Spec.from_json(ds.attrs["spec"])
    encoding = {name: {"chunks": chunks} for name, chunks in chunking(spec, tile_shape).items()}
    ds.to_zarr(path, mode="w-", zarr_format=ZARR_FORMAT, consolidated=False, encoding=encoding)


def check_layout(path: str | Path, spec: Spec, tile_shape: tuple[int, int, int]) -> str | None:
    """What is wrong with the measured arrays of a store made by ``create``, or None."""
    try:
        group = zarr.open_group(path, mode="r", zarr_format=ZARR_FORMAT, use_consolidated=False)
        for name, chunks in chunking(spec, tile_shape).items():
            shape, dtype, _ = measured_variables(spec)[name]
            if name not in group:
                return f"no array {name!r}"
            array = group[name]
            if array.shape != shape or array.chunks != chunks or array.dtype != dtype:
                return f"array {name!r} is {array.dtype}{list(array.shape)} in chunks {list(array.chunks)}"
    except Exception as e:  # zarr raises many kinds of errors for broken metadata
        return f"unreadable zarr metadata: {type(e).__name__}: {e}"
    return None


class TileWriter:
    """Writes tiles into a store laid out by ``create``.

    Args:
      path: the store.
    """

    def __init__(self, path: str | Path):
        self._group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT, use_consolidated=False)
        self._arrays = {}

    def write(self, position: tuple[int, ...], region: tuple[slice, slice, slice], values: dict[str, np.ndarray]) -> None:
        """Writes one tile of measured variables.

        Args:
          position: the compile group's index along the five static axes.
          region: the tile's slices along ``(gain, bias_std, seed)``.
          values: each measured variable's values for the tile, shaped
            ``(gains, bias_stds, seeds, ...)``, padded to the variable's full trailing extent.
        """
        for name, block in values.items():
            if name not in self._arrays:
                self._arrays[name] = self._group[name]
            self._arrays[name][tuple(position) + tuple(region)] = block


def finalise(partial: str | Path, out: str | Path) -> Path:
    """Consolidates a complete store's metadata and moves it to ``out``, replacing what is there.

    Returns:
      ``out``.
    """
    partial, out = Path(partial), Path(out)
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


def export_netcdf(ds: xr.Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Writes ``ds`` as a netCDF-4 file (booleans stored as int8, as netCDF requires)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SpecError("netcdf", f"{str(path)!r} exists; pass --overwrite to replace it")
    ds = ds.copy()
    for name in ds.data_vars:
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype(np.int8)
    partial = path.with_name(f".{path.name}.partial")
    ds.to_netcdf(partial, engine="netcdf4")
    partial.replace(path)
    return path


def describe(ds: xr.Dataset) -> str:
    """A readable summary of a stored sweep: what was swept, on what, and a few key numbers."""
    spec = Spec.from_json(ds.attrs["spec"])
    lines = [ds.attrs.get("title", "sweep"), ""]
    lines.append(f"  networks : {spec.num_networks} ({spec.grid.size} grid points x {spec.seeds} seeds)")
    if spec.kind == "train":
        lines.append(f"  training : {spec.dataset}, {spec.optimizer}, {spec.steps} steps of batch {spec.batch}")
    else:
        lines.append(f"  batch    : {spec.batch} inputs, loss {spec.loss}, precision {spec.precision}")
    axes = GRID_AXES + (("learning_rate",) if spec.kind == "train" else ())
    for axis in axes:
        values = list(ds[axis].values)
        text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:8])
        lines.append(f"  {axis:<9}: {text}{' ...' if len(values) > 8 else ''} ({len(values)})")
    lines.append(f"  device   : {ds.attrs.get('device_kind', '?')}; created {ds.attrs.get('created', '?')}")
    lines.append(f"  commit   : {ds.attrs.get('git_commit', '?')}")
    if spec.kind == "train":
        return "\n".join(lines + _describe_training(ds))
    overflow = int(ds["overflow"].any("layer").sum())
    lines.append(f"  overflow : {overflow} of {spec.num_networks} networks left the float range")
    lines.append("")
    lines.append("  last layer, median over seeds (first bias_std):")
    last = ds.isel(bias_std=0).sel(layer=ds["depth"])  # each network's own last layer
    header = f"    {'activation':<16}{'init':<18}{'profile':<12}{'depth':>6}{'width':>6}{'gain':>8}"
    header += f"{'preact_ms':>12}{'grad_w_ms':>12}"
    lines.append(header)
    for point in _first_points(last, 12):
        row = last.sel(point)
        z = float(row["preact_meansq"].median("seed"))
        w = float(row["grad_weight_meansq"].median("seed"))
        lines.append(
            f"    {point['activation']:<16}{point['init']:<18}{point['profile']:<12}{point['depth']:>6}"
            f"{point['width']:>6}{point['gain']:>8.3g}{z:>12.4g}{w:>12.4g}"
        )
    return "\n".join(lines)


def _describe_training(ds: xr.Dataset) -> list[str]:
    final = ds.isel(eval_step=-1)
    lines = [f"  diverged : {int(ds['diverged'].sum())} networks", "",
             f"  after {int(final.eval_step)} steps, median over seeds:"]
    header = f"    {'activation':<16}{'init':<14}{'depth':>6}{'width':>6}{'gain':>8}{'lr':>9}{'test_loss':>11}{'test_acc':>10}"
    lines.append(header)
    axes = [a for a in GRID_AXES + ("learning_rate",) if a not in ("profile", "bias_std")]
    table = final[["test_loss", "test_accuracy"]].isel(profile=0, bias_std=0).median("seed")
    for values in table["test_loss"].stack(point=axes).point.values[:16]:
        point = dict(zip(axes, values))
        row = table.sel(point)
        lines.append(f"    {point['activation']:<16}{point['init']:<14}{point['depth']:>6}{point['width']:>6}"
                     f"{point['gain']:>8.3g}{point['learning_rate']:>9.3g}{float(row.test_loss):>11.4g}"
                     f"{float(row.test_accuracy):>10.3f}")
    return lines


def _first_points(ds: xr.Dataset, limit: int):
    axes = [a for a in GRID_AXES if a != "bias_std"]
    stacked = ds["loss"].stack(point=axes).point.values[:limit]
    for values in stacked:
        yield {a: (v.item() if hasattr(v, "item") else v) for a, v in zip(axes, values)}
