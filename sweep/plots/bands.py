"""Lines with bands over seeds, and theory as dashed lines: the building blocks of every panel."""

from __future__ import annotations

import numpy as np
import xarray as xr


def band(ax, da: xr.DataArray, x: str = "layer", label: str | None = None, color=None,
         quantiles=(0.16, 0.84), log: bool = False, **kw):
    """Plots the median over ``seed`` against ``x`` with a quantile band.

    Args:
      ax: matplotlib axes.
      da: values with dims ``(seed, x)`` (other dims must be selected away).
      x: the dim along the horizontal axis.
      label: legend label.
      color: line and band colour.
      quantiles: the band's lower and upper quantiles over seeds (default: ±1σ of a Gaussian).
      log: plot on a log vertical axis (non-positive values are dropped).

    Returns:
      The line.
    """
    da = da.dropna(x, how="all")
    if log:
        da = da.where(da > 0)
    med = da.median("seed")
    lo, hi = (da.quantile(q, "seed") for q in quantiles)
    (line,) = ax.plot(da[x].values, med.values, label=label, color=color, **kw)
    ax.fill_between(da[x].values, lo.values, hi.values, color=line.get_color(), alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    return line


def mean_band(ax, da: xr.DataArray, x: str = "layer", label: str | None = None, color=None, log: bool = False):
    """Plots the mean over ``seed`` against ``x`` with a ±2 standard-error band (for comparison with
    predictions of the mean, where the median of heavy-tailed values would sit far below).

    Args:
      ax: matplotlib axes.
      da: values with dims ``(seed, x)``.
      x: the dim along the horizontal axis.
      label: legend label.
      color: line and band colour.
      log: plot on a log vertical axis.

    Returns:
      The line.
    """
    da = da.dropna(x, how="all")
    mean = da.mean("seed")
    se = da.std("seed", ddof=1) / np.sqrt(da.count("seed"))
    (line,) = ax.plot(da[x].values, mean.values, label=label, color=color)
    lower = (mean - 2 * se).where(mean - 2 * se > 0) if log else mean - 2 * se
    ax.fill_between(da[x].values, lower.values, (mean + 2 * se).values, color=line.get_color(), alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    return line


def dotted(ax, da: xr.DataArray, x: str = "layer", color=None, label: str | None = None):
    """Plots a second theory curve (no ``seed`` dim) as a dotted line."""
    da = da.dropna(x, how="all")
    return ax.plot(da[x].values, da.values, linestyle=":", linewidth=1.3, color=color, label=label)[0]


def dashed(ax, da: xr.DataArray, x: str = "layer", color=None, label: str | None = None):
    """Plots a theory curve (no ``seed`` dim) as a dashed line."""
    da = da.dropna(x, how="all")
    return ax.plot(da[x].values, da.values, linestyle="--", linewidth=1.0, color=color, label=label)[0]


def label_gain(g: float) -> str:
    """Gains near √2 print as √2, others to three significant digits."""
    return "√2" if abs(g - np.sqrt(2.0)) < 1e-9 else f"{g:.3g}"
