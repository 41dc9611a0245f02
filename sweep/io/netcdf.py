"""Export of a dataset as netCDF-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from sweep.errors import SpecError


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


