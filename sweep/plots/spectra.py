"""Input-output Jacobian spectra: Gaussian against orthogonal weights."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.plots.style import PALETTE, figure, styled


@styled
def jacobian_figure(ds: xr.Dataset, cases: list[dict], depth: int):
    """Distribution of squared singular values, normalised by their mean, one curve per case."""
    fig, axes = figure(1, 1, height=2.5)
    ax = axes[0, 0]
    for color, case in zip(PALETTE, cases):
        sv = ds["jacobian_singular_values"].sel(depth=depth, **case).squeeze(drop=True)
        squared = (sv**2).values.ravel()
        squared = squared[np.isfinite(squared) & (squared > 0)]
        normalised = np.sort(squared / squared.mean())
        ecdf = np.arange(1, len(normalised) + 1) / len(normalised)
        label = ", ".join(str(v) if not isinstance(v, float) else f"{v:.3g}" for v in case.values())
        ax.plot(normalised, ecdf, color=color, label=f"{label}: var {np.var(squared / squared.mean()):.2g}")
    ax.set_xscale("log")
    ax.set_xlabel(r"$\sigma_i^2 / \langle\sigma^2\rangle$ of $\partial x_L/\partial x_0$")
    ax.set_ylabel("fraction ≤")
    ax.legend(loc="best", title=f"depth {depth}")
    return fig
