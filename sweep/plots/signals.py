"""Forward signals, backward signals and weight gradients, layer by layer."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.plots.bands import band, dashed, dotted, label_gain, mean_band
from sweep.plots.style import PALETTE, figure, sequential, styled


def _theory(ds: xr.Dataset, name: str):
    return ds.get(f"theory_{name}")


@styled
def forward(ds: xr.Dataset, cases: list[dict], depth: int, width: int):
    """Four panels against layer: E[z²], E[x²], E[x]² and Var[x], one line per case.

    Args:
      ds: a stats dataset (with ``theory_*`` variables if available).
      cases: selections, e.g. ``[{"init": "fan_in", "gain": 2**0.5}, {"init": "fan_avg", "gain": 1.0}]``;
        the other axes must have length one or be fixed by ``depth`` and ``width``.
      depth, width: the network size shown.

    Returns:
      The figure.
    """
    fig, axes = figure(2, 2, height=2.0)
    panels = [("preact_meansq", "$E[z_l^2]$"), ("act_meansq", "$E[x_l^2]$"),
              ("act_mean", "$E[x_l]^2$"), ("act_var", "Var$[x_l]$")]
    for ax, (name, ylabel) in zip(axes.flat, panels):
        for color, case in zip(PALETTE, cases):
            sel = ds.sel(depth=depth, width=width, **case).squeeze(drop=True)
            values = sel[name] ** 2 if name == "act_mean" else sel[name]
            band(ax, values, label=_case_label(case), color=color, log=True)
            theory = _theory(sel, name)
            if theory is not None:
                dashed(ax, theory**2 if name == "act_mean" else theory, color=color)
        ax.set_xlabel("layer $l$")
        ax.set_ylabel(ylabel)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=min(len(cases), 4))
    return fig


@styled
def backward(ds: xr.Dataset, inits: list[str], profiles: list[str], depth: int, width: int, gain: float):
    """∂ℓ/∂x_l and ∂ℓ/∂z_l second moments against layer: a column per width profile."""
    fig, axes = figure(2, len(profiles), height=2.0)
    for j, profile in enumerate(profiles):
        for color, init in zip(PALETTE, inits):
            sel = ds.sel(depth=depth, width=width, gain=gain, profile=profile, init=init).squeeze(drop=True)
            for i, name in enumerate(("grad_act_meansq", "grad_preact_meansq")):
                band(axes[i, j], sel[name], label=init, color=color, log=True)
                theory = _theory(sel, name)
                if theory is not None:
                    dashed(axes[i, j], theory, color=color)
        axes[0, j].set_title(f"{profile} widths")
        axes[0, j].set_ylabel(r"$E[(\partial\ell/\partial x_l)^2]$")
        axes[1, j].set_ylabel(r"$E[(\partial\ell/\partial z_l)^2]$")
        axes[1, j].set_xlabel("layer $l$")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=len(inits),
               title=f"gain {label_gain(gain)}; dashed: theory")
    return fig


@styled
def weight_gradients(ds: xr.Dataset, init: str, depth: int, width: int):
    """Left: E[(∂C/∂W_l)²] against layer for each gain, the mean over networks (±2 SE), infinite-width theory
    dashed and the finite-width law dotted where stored. Middle: the same divided by the infinite-width theory.
    Right: the level (mean over layers) against gain."""
    fig, axes = figure(1, 3, height=2.4, width=3 * 3.0 * 0.85)
    sel = ds.sel(init=init, depth=depth, width=width).squeeze(drop=True)
    gains = sel.gain.values
    colors = sequential(len(gains))
    finite = sel.get("theory_fw_grad_weight_meansq")
    infinite = sel.get("theory_grad_weight_meansq")
    for color, g in zip(colors, gains):
        one = sel.sel(gain=g)
        mean_band(axes[0, 0], one["grad_weight_meansq"], label=label_gain(g), color=color, log=True)
        if infinite is not None:
            dashed(axes[0, 0], infinite.sel(gain=g), color=color)
            mean_band(axes[0, 1], one["grad_weight_meansq"] / infinite.sel(gain=g), color=color)
            if finite is not None:
                dotted(axes[0, 1], finite.sel(gain=g) / infinite.sel(gain=g), color=color)
        if finite is not None:
            dotted(axes[0, 0], finite.sel(gain=g), color=color)
    axes[0, 0].set_xlabel("layer $l$")
    axes[0, 0].set_ylabel(r"$E[(\partial C/\partial W_l)^2]$")
    axes[0, 1].set_xlabel("layer $l$")
    axes[0, 1].set_ylabel("measured / infinite-width theory")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), title="gain σ_w", loc="outside right upper")
    level = sel["grad_weight_meansq"].mean(["seed", "layer"])
    axes[0, 2].plot(gains, level.values, "o-", label="measured (mean)")
    if infinite is not None:
        axes[0, 2].plot(gains, infinite.mean("layer").values, "--", label="infinite width")
    if finite is not None and bool(np.isfinite(finite).any()):
        axes[0, 2].plot(gains, finite.mean("layer").values, ":", label="finite width")
    axes[0, 2].set_yscale("log")
    axes[0, 2].axvline(np.sqrt(2), color="0.5", linewidth=0.8, linestyle=":")
    axes[0, 2].set_xlabel("gain σ_w")
    axes[0, 2].set_ylabel("mean over layers")
    axes[0, 2].legend(loc="best")
    return fig


def _case_label(case: dict) -> str:
    parts = []
    for key, value in case.items():
        parts.append(label_gain(value) if key == "gain" else str(value))
    return ", ".join(parts)


@styled
def per_layer(ds: xr.Dataset, variable: str, panels: list[list[dict]], lines: list[dict], ylabel: str):
    """A grid of panels against layer, one band per line selection, theory dashed where stored.

    Args:
      ds: a stats dataset whose axes are all fixed by a panel and a line selection, apart from
        ``seed`` and ``layer`` (length-one axes may stay).
      variable: the statistic drawn, e.g. ``"preact_meansq"``.
      panels: rows of panel selections, e.g. ``[[{"activation": "relu", "gain": 1.41}], ...]``.
      lines: one selection per line (a colour each), e.g. ``[{"init": "fan_in"}, ...]``.
      ylabel: the vertical axis' label.

    Returns:
      The figure.
    """
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = figure(rows, cols, height=1.9, width=min(cols, 3) * 2.3)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(row):
                ax.set_visible(False)
                continue
            for color, line in zip(PALETTE, lines):
                one = ds.sel({**row[j], **line})
                one = one.squeeze([d for d in one[variable].dims if d not in ("seed", "layer")], drop=True)
                band(ax, one[variable], label=_case_label(line), color=color, log=True)
                if f"theory_{variable}" in one:
                    dashed(ax, one[f"theory_{variable}"], color=color)
            ax.set_title(_case_label(row[j]))
            ax.set_xlabel("layer $l$")
            ax.set_ylabel(ylabel)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=min(len(lines), 4),
               title="dashed: theory")
    return fig


@styled
def gradient_levels(ds: xr.Dataset, panels: list[dict], lines: list[dict], at_gain: list[float]):
    """Top: the weight-gradient level (per-network mean over layers; mean ± SE over seeds) against
    gain, one panel per selection. Bottom: E[(∂C/∂W_l)²] against layer at the gain ``at_gain[i]``.

    Args:
      ds: a stats dataset; panel, line and gain selections fix every axis but ``seed``, ``layer``.
      panels: one selection per column, e.g. ``[{"activation": "relu"}, {"activation": "tanh"}]``.
      lines: one selection per line, e.g. ``[{"init": "fan_in", "profile": "constant"}]``.
      at_gain: the gain of each column's bottom panel.

    Returns:
      The figure.
    """
    fig, axes = figure(2, len(panels), height=2.0, width=min(len(panels), 3) * 2.4)
    for j, (panel, gain) in enumerate(zip(panels, at_gain)):
        for color, line in zip(PALETTE, lines):
            one = ds.sel({**panel, **line})
            one = one.squeeze([d for d in one["grad_weight_meansq"].dims if d not in ("seed", "layer", "gain")],
                              drop=True)
            w = one["grad_weight_meansq"].where(np.isfinite(one["grad_weight_meansq"]))
            level = w.mean("layer")
            mean, se = level.mean("seed"), level.std("seed", ddof=1) / np.sqrt(level.count("seed"))
            axes[0, j].errorbar(one.gain.values, mean.values, yerr=se.values, fmt="o-", markersize=2.5,
                                color=color, label=_case_label(line))
            if "theory_grad_weight_meansq" in one:
                axes[0, j].plot(one.gain.values, one["theory_grad_weight_meansq"].mean("layer").values, "--",
                                color=color, linewidth=1.0)
            band(axes[1, j], w.sel(gain=gain), color=color, log=True)
            if "theory_grad_weight_meansq" in one:
                dashed(axes[1, j], one["theory_grad_weight_meansq"].sel(gain=gain), color=color)
        axes[0, j].set_yscale("log")
        axes[0, j].set_title(_case_label(panel))
        axes[0, j].set_xlabel("gain σ_w")
        axes[0, j].set_ylabel("level: mean over layers")
        axes[1, j].set_title(f"{_case_label(panel)}, gain {label_gain(gain)}")
        axes[1, j].set_xlabel("layer $l$")
        axes[1, j].set_ylabel(r"$E[(\partial C/\partial W_l)^2]$")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=min(len(lines), 4),
               title="dashed: theory")
    return fig
