"""Finite width: how far single networks stray from the average, against depth/width."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.plots.style import PALETTE, figure, styled


def log_norm_spread(ds: xr.Dataset) -> xr.Dataset:
    """Per (width, depth): Σ_l 1/n_l and the variance over seeds of log ‖x_L‖²/n (batch-1 sweeps).

    Returns:
      A dataset with ``inverse_width_sum`` and ``log_norm_var`` (and its standard error from the
      fourth central moment), dims ``(width, depth)`` plus any other length-one axes squeezed.
    """
    # Networks whose last layer died (‖x_L‖ = 0) are left out, as the exact law conditions on them.
    others = [d for d in ds["act_meansq"].dims if ds.sizes[d] == 1 and d not in ("width", "depth")]
    alive = ds["act_meansq"].sel(layer=ds["depth"]).squeeze(others, drop=True)
    last = np.log(alive.where(alive > 0))
    var = last.var("seed", ddof=1)
    n = last.count("seed")
    m4 = ((last - last.mean("seed")) ** 4).mean("seed")
    se = np.sqrt(np.maximum((m4 - var**2 * (n - 3) / (n - 1)) / n, 0))
    widths = ds["layer_width"].squeeze([d for d in ds["layer_width"].dims if d in others], drop=True)
    inverse = (1.0 / widths.where(widths > 0)).sum("layer")
    return xr.Dataset({"inverse_width_sum": inverse, "log_norm_var": var, "log_norm_var_se": se})


@styled
def spread_figure(ds: xr.Dataset, exact=None, large_width: bool = True):
    """Variance of log ‖x_L‖² across networks against Σ1/n, one colour per width.

    Args:
      ds: a batch-1 relu sweep over widths and depths.
      exact: optional ``(inverse_width_sum, variance)`` arrays of the exact law, drawn dashed.
      large_width: draw the large-width law 5Σ1/n (relu, He init, one input).

    Returns:
      The figure.
    """
    fig, axes = figure(1, 1, height=2.5)
    ax = axes[0, 0]
    s = log_norm_spread(ds)
    for color, w in zip(PALETTE, s.width.values):
        one = s.sel(width=w)
        ax.errorbar(one["inverse_width_sum"].values, one["log_norm_var"].values, yerr=one["log_norm_var_se"].values,
                    fmt="o", color=color, markersize=3, label=f"n = {w}")
    x = np.linspace(0, float(s["inverse_width_sum"].max()) * 1.05, 50)
    if large_width:
        ax.plot(x, 5 * x, ":", color="0.4", label="5 Σ 1/n (large width)")
    if exact is not None:
        order = np.argsort(exact[0])
        ax.plot(np.asarray(exact[0])[order], np.asarray(exact[1])[order], "--", color="k", linewidth=1.0,
                label="exact law")
    ax.set_xlabel(r"$\sum_l 1/n_l$")
    ax.set_ylabel(r"Var$[\log \|x_L\|^2]$ over networks")
    ax.legend(loc="best")
    return fig
