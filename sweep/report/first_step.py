"""Point 9: the first SGD step's loss change is the init statistic ‖∇C‖², from the ``first_step`` store."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from sweep import plots
from sweep.plots.bands import label_gain
from sweep.report.numbers import fmt, table
from sweep.report.sections import Section
from sweep.report.selection import spec_value

SETTING_AXES = ("activation", "init", "gain", "bias_std", "depth", "width")
"""The axes that tell the table's rows apart, where the store has more than one value."""


def first_step(results: dict) -> Section | None:
    """ΔC₁ against −η‖∇C‖² and the second-order law 1 − η gᵀHg / (2‖g‖²), per setting and learning rate."""
    ds = results.get("first_step")
    if ds is None:
        return None
    eta = ds.learning_rate
    ratio = ds.first_step_loss_change / (-eta * ds.first_step_grad_sqnorm)
    second = 1 - eta * ds.first_step_curvature / 2
    axes = [a for a in SETTING_AXES if a in ds.dims and ds.sizes[a] > 1]
    rates = [float(r) for r in ds.learning_rate.values]
    reduce = [d for d in ds.first_step_grad_sqnorm.dims if d not in axes]
    # float32 resolves C to eps·C: the relative resolution of a ratio is eps·C / (η‖g‖²)
    resolution = np.finfo(np.float32).eps * np.abs(ds.loss_at_init) / (eta * ds.first_step_grad_sqnorm)
    rows, worst, unresolved = [], (0.0, None), []
    for labels in itertools.product(*(ds[a].values.tolist() for a in axes)):
        setting = dict(zip(axes, labels))

        def one(da):
            return float(da.sel(setting).median([d for d in da.dims if d in reduce]))

        row = [label_gain(v) if a == "gain" else str(v) for a, v in setting.items()]
        row += [fmt(one(ds.first_step_grad_sqnorm)), fmt(one(ds.init_sharpness))]
        medians = {lr: one(ratio.sel(learning_rate=lr)) for lr in rates}
        row += [f"{fmt(medians[lr])} ({fmt(one(second.sel(learning_rate=lr)))})" for lr in rates]
        rows.append(row)
        label = ", ".join(row[: len(axes)])
        small, floor = abs(medians[rates[0]] - 1), one(resolution.sel(learning_rate=rates[0]))
        if floor > 0.01:
            unresolved.append(f"{label} (resolution {fmt(100 * floor, 2)}%, off by {fmt(100 * small, 2)}%)")
        elif small > worst[0]:
            worst = (small, label)
    quadratic = (eta * ds.init_sharpness < 1) & (resolution < 0.01)
    departure = np.abs(1 - ratio).where(quadratic)
    left = float(np.abs(ratio - second).where(quadratic).median()) / float(departure.median())
    slope, se, used = _second_order_fit(1 - ratio, eta * ds.first_step_curvature / 2)
    header = axes + ["‖g‖²", "λ_max"] + [f"η = {lr:.0e}: ratio (2nd order)" for lr in rates]
    text = (
        f"For each network at init: g = ∇C on its first mini-batch of {spec_value(ds, 'batch')}, the curvature "
        "gᵀHg/‖g‖² along it and the largest Hessian eigenvalue λ_max (power iteration), then one SGD step of "
        "each learning rate on the same mini-batch. Medians over networks of the ratio ΔC₁ / (−η‖g‖²) and, in "
        "brackets, of the second-order law 1 − η gᵀHg / (2‖g‖²):\n\n"
        + table(header, rows)
        + f"\n\nAt η = {rates[0]:.0e} the first-order law ΔC₁ = −η‖g‖² holds to {fmt(100 * worst[0], 2)}% (worst: "
        f"{worst[1]}) wherever float32 resolves the loss change to 1%: the squared gradient norm the engine "
        "measures at init is the first step's loss decrease."
        + (f" Float32 does not resolve it in {'; '.join(unresolved)}." if unresolved else "")
        + f" Where the law fails, the curvature accounts for most of the departure: over the networks and "
        f"learning rates with η λ_max < 1, the second-order law's median error is {fmt(100 * left, 2)}% of the "
        f"median departure |1 − ratio|. A least-squares fit of 1 − ratio against η gᵀHg / (2‖g‖²) through the "
        f"origin, over the {used} cases where that term is below 0.5, has slope {fmt(slope)} ± {fmt(se, 2)}, "
        "against the second-order law's 1: beyond second order the loss falls by less still. A step with "
        "η λ_max ≳ 2 leaves the quadratic regime altogether."
    )
    fig = plots.first_step(ds)
    return Section("first_step", "9. From init to the first step: ΔC₁ = −η‖∇C‖²", text,
                   [("first_step", fig, "Left: −ΔC₁ against η‖∇C‖², every network and learning rate. "
                                        "Right: the ratio against the second-order term.")])


def _second_order_fit(departure: xr.DataArray, term: xr.DataArray) -> tuple[float, float, int]:
    """Least squares slope of ``departure`` on ``term`` through the origin where 0 < term < 0.5, its SE and count."""
    y, x = xr.broadcast(departure, term)
    y, x = y.values.ravel(), x.values.ravel()
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (x < 0.5)
    x, y = x[keep], y[keep]
    slope = float(x @ y / (x @ x))
    se = float(np.sqrt(np.sum((y - slope * x) ** 2) / max(1, x.size - 1) / (x @ x)))
    return slope, se, int(x.size)
