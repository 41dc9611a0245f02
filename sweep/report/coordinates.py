"""The coordinate check's numbers: how each layer's coordinate size scales with width.

The slopes are exponents b of coordinate size ∝ width^b, fitted per seed with the O(1/n)
finite-width term (``numbers.width_slope``); flat (b = 0) is what a parametrisation whose
updates neither grow nor vanish with width gives.
"""

from __future__ import annotations

import itertools

import xarray as xr

from sweep.report.numbers import Estimate, width_slope

READOUT = "readout"
"""The label of the readout's outputs among the layers of ``slopes``."""


def slopes(ds: xr.Dataset, size: str = "act_abs_mean", finite_width: bool = True) -> dict[tuple, Estimate]:
    """Each layer's width exponent of one coordinate size, per parametrisation and step.

    Args:
      ds: a training store with ``coord_*`` variables, at least three widths, and one value
        of every axis but ``width``, ``parametrization`` and ``seed``.
      size: ``"act_abs_mean"``, ``"act_rms"``, ``"preact_abs_mean"`` or ``"preact_rms"``; the
        readout's outputs take the matching ``output_*``.
      finite_width: fit the O(1/n) term with the exponent (``numbers.width_slope``).

    Returns:
      ``{(parametrization, coord_step, layer): Estimate}``, ``layer`` an int or ``READOUT``;
      the readout only where its outputs are positive for every network (not at a zero start).
    """
    coords = ds[[name for name in ds.data_vars if name.startswith("coord_")]]
    keep = ("width", "seed", "coord_step", "layer", "parametrization")
    coords = coords.squeeze([d for d in coords.dims if d not in keep], drop=True)
    names = coords.parametrization.values.tolist() if "parametrization" in coords.dims else ["standard"]
    output = f"coord_output_{size.split('_', 1)[1]}"
    out = {}
    for name, step in itertools.product(names, coords.coord_step.values.tolist()):
        at = coords.sel(coord_step=step)
        if "parametrization" in at.dims:
            at = at.sel(parametrization=name)
        for layer in at.layer.values.tolist():
            values = at[f"coord_{size}"].sel(layer=layer)
            if bool(values.notnull().all()):
                out[name, step, layer] = width_slope(values, finite_width)
        if bool((at[output] > 0).all()):
            out[name, step, READOUT] = width_slope(at[output], finite_width)
    return out
