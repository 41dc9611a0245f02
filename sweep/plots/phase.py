"""Phase diagrams: gradient growth over (gain, depth), with theory's critical gain and depth scale."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.plots.style import figure, styled


def gradient_growth(ds: xr.Dataset) -> xr.DataArray:
    """log10 of E[(∂ℓ/∂z_1)²] / E[(∂ℓ/∂z_L)²], each the median over seeds (robust to the networks
    whose last layer died): > 0 means gradients grow from the output back to the input."""
    first = ds["grad_preact_meansq"].sel(layer=1).median("seed")
    last = ds["grad_preact_meansq"].sel(layer=ds["depth"]).median("seed")
    growth = np.log10(first / last)
    growth.attrs.update(long_name="backward gradient growth", units="log10")
    return growth


@styled
def phase_diagram(ds: xr.Dataset, panels: list[dict], theory=None):
    """One panel per activation (or selection): gradient growth over (gain, depth).

    Args:
      ds: a stats dataset with several gains and depths.
      panels: selections, each leaving dims ``(gain, depth)``, e.g. ``{"activation": "tanh", "bias_std": 0.22}``.
      theory: the ``sweep.theory`` module, to draw the critical gain (dotted) and ξ_c (dashed).

    Returns:
      The figure.
    """
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = figure(rows, cols, height=2.0, width=min(3, len(panels)) * 2.3)
    growth = gradient_growth(ds)
    limit = float(np.nanpercentile(np.abs(growth.values), 95)) or 1.0
    mesh = None
    for ax, sel in zip(axes.flat, panels):
        g = growth.sel(sel).squeeze(drop=True).transpose("depth", "gain")
        mesh = ax.pcolormesh(g.gain.values, g.depth.values, g.values, cmap="RdBu_r", vmin=-limit, vmax=limit,
                             shading="nearest")
        title = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in sel.values())
        ax.set_title(title)
        ax.set_xlabel("gain σ_w")
        ax.set_ylabel("depth L")
        ax.set_yscale("log", base=2)
        ax.grid(False)
        if theory is not None:
            activation, bias_std = sel["activation"], float(sel.get("bias_std", 0.0))
            ax.axvline(theory.critical_gain(activation, bias_std), color="k", linestyle=":", linewidth=1.0)
            gains = np.linspace(g.gain.values.min(), g.gain.values.max(), 60)
            xi = np.array([theory.depth_scales(activation, float(s), bias_std).xi_c for s in gains])
            ax.plot(gains, np.where(np.isfinite(xi), xi, np.nan), "k--", linewidth=1.0, label="ξ_c")
            ax.set_ylim(g.depth.values.min() * 0.9, g.depth.values.max() * 1.1)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=0.8, label=r"$\log_{10}\,E[\delta_1^2]/E[\delta_L^2]$")
    return fig
