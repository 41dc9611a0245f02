"""Selecting from a paper store by label: one network's setting, its theory, its spec's keys, its worst deviation."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr


def at(ds: xr.Dataset, **sel) -> xr.Dataset:
    """``ds`` at the labels ``sel``, with the dims of length 1 dropped."""
    return ds.sel(sel).squeeze(drop=True)


def max_deviation(dev: xr.Dataset, names, **sel) -> float:
    """The largest |deviation| in standard errors among ``names`` of ``dev`` at ``sel`` (NaN if none)."""
    values = [np.abs(dev[n].sel(sel)).max().item() for n in names if n in dev]
    return float(np.nanmax(values)) if values else float("nan")


def theory_of(ds: xr.Dataset) -> xr.Dataset:
    """The ``theory_*`` variables of a statistics store."""
    return ds[[v for v in ds.data_vars if str(v).startswith("theory_")]]


def spec_value(ds: xr.Dataset, key: str):
    """A key of the spec a store was written from (``None`` where it was left at its default)."""
    return json.loads(ds.attrs["spec"]).get(key)
