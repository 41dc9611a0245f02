"""The coordinate check: each layer's coordinate size against width, one panel per step."""

from __future__ import annotations

import xarray as xr

from sweep.plots.bands import band
from sweep.plots.style import figure, sequential, styled


@styled
def coord_check(ds: xr.Dataset, size: str = "act_abs_mean", steps=None):
    """Log-log coordinate sizes against width, as the ``mup`` package's coordinate check draws them.

    One row per parametrisation, one panel per step; in each, one line per hidden layer and
    one for the readout's outputs (black), the median over seeds with its 16–84% band. A line
    flat in width is a parametrisation whose updates do not grow or vanish with width.

    Args:
      ds: a training dataset with ``coord_*`` variables and several widths; every other axis
        but ``parametrization`` of one value.
      size: ``"act_abs_mean"``, ``"act_rms"``, ``"preact_abs_mean"`` or ``"preact_rms"``
        (the readout is drawn with the matching ``output_*`` size).
      steps: the ``coord_step`` labels to draw; by default 0..3 where stored.

    Returns:
      The figure.
    """
    keep = {"width", "seed", "coord_step", "layer", "parametrization"}
    ds = ds[[name for name in ds.data_vars if name.startswith("coord_")]]
    one = ds.squeeze([d for d in ds.dims if d not in keep and ds.sizes[d] == 1], drop=True)
    extra = [d for d in one.dims if d not in keep]
    if extra:
        raise ValueError(f"coord_check draws one setting; select one value of {extra}")
    if "parametrization" not in one.dims:
        one = one.expand_dims(parametrization=["standard"])
    if steps is None:
        steps = [s for s in one.coord_step.values.tolist() if s <= 3]
    output = "output_" + size.split("_", 1)[1]
    rows = one.sizes["parametrization"]
    fig, axes = figure(rows, len(steps), height=2.0, width=2.1 * len(steps), sharey="row")
    for r, name in enumerate(one.parametrization.values):
        p = one.sel(parametrization=name)
        colors = sequential(p.sizes["layer"])
        for c, step in enumerate(steps):
            ax = axes[r, c]
            at = p.sel(coord_step=step)
            for color, layer in zip(colors, at.layer.values):
                values = at[f"coord_{size}"].sel(layer=layer)
                if values.notnull().any():
                    band(ax, values, x="width", label=f"layer {int(layer)}", color=color, log=True)
            readout = at[f"coord_{output}"]
            if (readout > 0).any():
                band(ax, readout, x="width", label="readout", color="black", log=True)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{name}, {int(step)} step{'s' if step != 1 else ''}", fontsize="small")
            ax.set_xlabel("width")
        axes[r, 0].set_ylabel(f"mean |{'z' if size.startswith('preact') else 'x'}|" if "abs" in size else size)
    axes[0, -1].legend(fontsize="x-small", loc="best")
    return fig
