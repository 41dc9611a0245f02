"""Trainability: accuracy over (gain, depth) against theory's depth scale, loss curves by gain, and
network families trained alike."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.plots.bands import band, label_gain
from sweep.plots.style import figure, sequential, styled


def _fixed(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without its axes of one label; a curve of one step keeps its step."""
    return ds.squeeze([d for d in ds.dims if ds.sizes[d] == 1 and d not in ("step", "eval_step", "seed")], drop=True)


@styled
def trainability(ds: xr.Dataset, theory=None, metric: str = "test_accuracy"):
    """Left: the final ``metric`` (median over seeds) over (gain, depth), with 6ξ_c and the critical gain.
    Right: training loss against step at the largest depth, one line per gain.

    Args:
      ds: a training dataset with one activation, init, profile, width, bias std and learning rate.
      theory: the ``sweep.theory`` module, for the critical gain and ξ_c.
      metric: ``"test_accuracy"`` or ``"test_loss"``.

    Returns:
      The figure.
    """
    one = _fixed(ds)
    activation, bias_std = str(ds.activation.values.ravel()[0]), float(ds.bias_std.values.ravel()[0])
    fig, axes = figure(1, 2, height=2.5, width=2 * 3.4 * 0.9)
    final = one[metric].isel(eval_step=-1).median("seed").transpose("depth", "gain")
    mesh = axes[0, 0].pcolormesh(final.gain.values, final.depth.values, final.values, shading="nearest",
                                 cmap="viridis")
    fig.colorbar(mesh, ax=axes[0, 0], label=f"{metric.replace('_', ' ')} after {int(one.eval_step[-1])} steps")
    axes[0, 0].set_yscale("log", base=2)
    axes[0, 0].set_xlabel("gain σ_w")
    axes[0, 0].set_ylabel("depth L")
    axes[0, 0].grid(False)
    if theory is not None:
        gains = np.linspace(final.gain.values.min(), final.gain.values.max(), 80)
        xi = np.array([theory.depth_scales(activation, float(g), bias_std).xi_c for g in gains])
        axes[0, 0].plot(gains, np.where(np.isfinite(xi) & (xi > 0), 6 * xi, np.nan), "w--", label="6 ξ_c")
        axes[0, 0].axvline(theory.critical_gain(activation, bias_std), color="w", linestyle=":", linewidth=1.0)
        axes[0, 0].set_ylim(final.depth.values.min() * 0.8, final.depth.values.max() * 1.25)
        axes[0, 0].legend(loc="lower left", labelcolor="w")
    deepest = int(one.depth.max())
    curves = one["train_loss"].sel(depth=deepest)
    for color, g in zip(sequential(one.sizes["gain"]), one.gain.values):
        band(axes[0, 1], curves.sel(gain=g), x="step", label=label_gain(float(g)), color=color)
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_ylabel(f"training loss, depth {deepest}")
    axes[0, 1].legend(title="gain σ_w", ncol=2, loc="best")
    return fig


@styled
def loss_curves(ds: xr.Dataset, metric: str = "train_loss"):
    """Training loss against step, one band per (gain, depth) of a dataset fixed on every other axis."""
    one = _fixed(ds)
    fig, axes = figure(1, 1, height=2.5)
    curves = one[metric].expand_dims([d for d in ("gain", "depth") if d not in one[metric].dims])
    curves = curves.stack(case=("depth", "gain")).transpose("case", ...)
    for color, case in zip(sequential(curves.sizes["case"]), curves.case.values):
        depth, gain = case
        band(axes[0, 0], curves.sel(case=case), x="step", color=color, label=f"L {depth}, σ_w {label_gain(float(gain))}")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_ylabel(metric.replace("_", " "))
    axes[0, 0].legend(ncol=2, loc="best")
    return fig


@styled
def init_outcome(init_level: xr.DataArray, outcome: xr.DataArray, ylabel: str):
    """Scatter of each network's initial weight-gradient level against its training outcome, coloured by gain."""
    fig, axes = figure(1, 1, height=2.5)
    x, y = xr.broadcast(init_level, outcome)
    gains = x["gain"].broadcast_like(x) if "gain" in x.coords else None
    points = axes[0, 0].scatter(np.log10(x.values.ravel()), y.values.ravel(), s=6,
                                c=None if gains is None else gains.values.ravel(), cmap="viridis")
    if gains is not None:
        fig.colorbar(points, ax=axes[0, 0], label="gain σ_w")
    axes[0, 0].set_xlabel(r"$\log_{10}$ initial level of $E[(\partial C/\partial W_l)^2]$")
    axes[0, 0].set_ylabel(ylabel)
    return fig


@styled
def family_training(accuracy: dict[str, xr.DataArray], best: dict[str, float | None]):
    """Left: test accuracy against step of each family at its best learning rate. Right: final test
    accuracy against the learning rate, one line per family.

    Args:
      accuracy: per family, ``test_accuracy`` with dims ``(learning_rate, seed, eval_step)``.
      best: per family, the learning rate shown on the left (``None``: not shown).

    Returns:
      The figure.
    """
    fig, axes = figure(1, 2, height=2.5, width=2 * 3.4 * 0.9)
    for color, (name, acc) in zip(sequential(len(accuracy)), accuracy.items()):
        if best.get(name) is not None:
            band(axes[0, 0], acc.sel(learning_rate=best[name]), x="eval_step", color=color,
                 label=f"{name}, lr {best[name]:.3g}")
        final = acc.isel(eval_step=-1).transpose("seed", "learning_rate")
        band(axes[0, 1], final, x="learning_rate", color=color, label=name, marker="o")
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(loc="best")
    axes[0, 1].set_xscale("log")
    axes[0, 1].set_xlabel("learning rate")
    axes[0, 1].set_ylabel(f"test accuracy after {int(acc.eval_step[-1])} steps")
    axes[0, 1].legend(loc="best")
    return fig


@styled
def first_step(ds: xr.Dataset):
    """Left: each network's first-step loss decrease −ΔC₁ against η‖∇C‖², one colour per learning rate.
    Right: the ratio ΔC₁ / (−η‖∇C‖²) against η gᵀHg / (2‖g‖²) (log scale), with the second-order law 1 − x.

    Args:
      ds: a training dataset with ``first_step_*`` variables (``sharpness_iterations`` > 0).

    Returns:
      The figure.
    """
    fig, axes = figure(1, 2, height=2.5, width=2 * 3.4 * 0.9)
    eta = ds.learning_rate
    predicted = eta * ds.first_step_grad_sqnorm
    ratio = ds.first_step_loss_change / -predicted
    second = eta * ds.first_step_curvature / 2
    for color, lr in zip(sequential(ds.sizes["learning_rate"]), ds.learning_rate.values):
        x = predicted.sel(learning_rate=lr).values.ravel()
        axes[0, 0].scatter(x, -ds.first_step_loss_change.sel(learning_rate=lr).values.ravel(), s=4, color=color,
                           label=f"η = {lr:.0e}")
        axes[0, 1].scatter(second.sel(learning_rate=lr).values.ravel(), ratio.sel(learning_rate=lr).values.ravel(), s=4,
                           color=color)
    finite = np.isfinite(predicted.values) & (predicted.values > 0)
    span = np.array([predicted.values[finite].min(), predicted.values[finite].max()])
    axes[0, 0].plot(span, span, color="k", lw=0.8, label="−ΔC₁ = η‖g‖²")
    axes[0, 0].set_xscale("log")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("η‖∇C‖² at init")
    axes[0, 0].set_ylabel("−ΔC₁, first step")
    axes[0, 0].legend(loc="best")
    positive = second.values[np.isfinite(second.values) & (second.values > 0)]
    x = np.geomspace(positive.min(), 1.0, 80)
    axes[0, 1].plot(x, 1 - x, color="k", lw=0.8, label="1 − η gᵀHg / (2‖g‖²)")
    axes[0, 1].set_xscale("log")
    axes[0, 1].set_xlabel("η gᵀHg / (2‖g‖²)")
    axes[0, 1].set_ylabel("ΔC₁ / (−η‖g‖²)")
    axes[0, 1].set_ylim(-0.2, 1.2)
    axes[0, 1].legend(loc="best")
    return fig
