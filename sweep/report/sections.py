"""The points any store supports: one function per kind of figure, each with its tables.

Each function takes a ``Survey`` and returns a ``Section`` (text, tables, figures) or a
``Skipped`` with the reason the data cannot support it. The same functions draw the single
figures of ``sweep plot`` (``figure``). Every number is a label selection and a stated
reduction of the store (see ``sweep.report.tables``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from sweep import plots, theory
from sweep.report import coordinates, tables
from sweep.report.numbers import fmt
from sweep.report.survey import (
    Survey,
    at,
    critical_gain_label,
    default_selection,
    describe_selection,
    format_label,
    selected_gains,
)

KINDS = ("forward", "backward", "gradients", "phase", "spread", "spectra", "training", "coord_check")


class Section(NamedTuple):
    """One point of a report.

    Attributes:
      key: short identifier, also the figure's file name.
      title: the question or the quantity.
      text: Markdown, every number computed from the data.
      figures: ``(name, figure, caption)`` triples.
    """

    key: str
    title: str
    text: str
    figures: list


class Skipped(NamedTuple):
    """A point the data cannot support, and why."""

    key: str
    title: str
    reason: str


def forward(s: Survey, sel: dict | None = None):
    """Per-layer pre-activation second moments by activation × init at the selected gains."""
    return _per_layer(s, "forward", "Forward signal: E[z_l²] layer by layer", "preact_meansq",
                      ["preact_meansq", "act_meansq"], "$E[z_l^2]$", sel)


def backward(s: Survey, sel: dict | None = None):
    """Per-layer pre-activation gradient second moments; one column per width profile where several."""
    return _per_layer(s, "backward", "Backward signal: E[(∂ℓ/∂z_l)²] layer by layer", "grad_preact_meansq",
                      ["grad_preact_meansq", "grad_act_meansq"], r"$E[(\partial\ell/\partial z_l)^2]$", sel)


def _per_layer(s, key, title, variable, compared, ylabel, sel):
    if s.kind != "stats" or not s.has(variable):
        return Skipped(key, title, f"needs a statistics store with {variable}")
    ds = s.ds
    by_profile = key == "backward" and s.size("profile") > 1
    fixed = {**default_selection(s, keep=("profile",) if by_profile else ()), **(sel or {})}
    panels, rows = [], []
    for activation in _labels(ds, "activation", fixed):
        bias = float(fixed.get("bias_std", ds["bias_std"].values.min()))
        if by_profile:
            gain = fixed.get("gain", critical_gain_label(ds, activation, bias))
            row = [{"activation": activation, "gain": gain, "profile": p} for p in _labels(ds, "profile", fixed)]
        else:
            gains = [fixed["gain"]] if "gain" in fixed else selected_gains(ds, activation, bias)
            row = [{"activation": activation, "gain": g} for g in gains]
        panels.append(row)
        rows += [{**panel, "init": init} for panel in row for init in _labels(ds, "init", fixed)]
    fixed = {k: v for k, v in fixed.items() if not (k in ("activation", "gain", "init") or (by_profile and k == "profile"))}
    lines = [{"init": i} for i in _labels(ds, "init", sel or {})]
    shown = ds.sel(fixed)[[v for v in (variable, f"theory_{variable}") if v in ds]].load()
    fig = plots.per_layer(shown, variable, panels, lines, ylabel)
    text = [f"Selection: {describe_selection(fixed)}; {s.size('seed')} networks per setting; gains: the smallest, "
            "the one nearest theory's critical gain and the largest"
            + (", one panel per width profile at the critical gain." if by_profile else ".")]
    figures = [(f"{s.name}_{key}", fig, f"{title}: median over networks, band 16–84%, theory dashed.")]
    if all(s.has_theory(v) for v in compared):
        table, beyond = tables.agreement(ds, compared, rows, fixed)
        text += ["", f"Measurement against mean-field theory at the first and last layer: {beyond} of "
                 f"{len(table.rows)} rows deviate beyond the Bonferroni threshold (family-wise 5%).", "",
                 table.markdown()]
        text += ["", _grid_summary(s, compared)]
    else:
        text += ["", "The store holds no theory for these statistics, so no agreement table."]
    return Section(key, title, "\n".join(text), figures)


def gradients(s: Survey, sel: dict | None = None):
    """The weight-gradient level against gain, by init and profile, and its profile across layers."""
    key, title = "gradients", "Weight gradients: E[(∂C/∂W_l)²] against gain and across layers"
    if s.kind != "stats" or not s.has("grad_weight_meansq"):
        return Skipped(key, title, "needs a statistics store with grad_weight_meansq")
    ds = s.ds
    fixed = {**default_selection(s, keep=("profile",)), **(sel or {})}
    activations = _labels(ds, "activation", fixed)
    bias = float(fixed.get("bias_std", ds["bias_std"].values.min()))
    at_gain = [fixed.get("gain", critical_gain_label(ds, a, bias)) for a in activations]
    lines = [{"init": i, "profile": p} for i in _labels(ds, "init", fixed) for p in _labels(ds, "profile", fixed)]
    rest = {k: v for k, v in fixed.items() if k not in ("activation", "init", "profile", "gain")}
    fig_ds = ds.sel(rest)[[v for v in ("grad_weight_meansq", "theory_grad_weight_meansq") if v in ds]]
    fig_ds = (fig_ds.sel(gain=[fixed["gain"]]) if "gain" in fixed else fig_ds).load()
    fig = plots.gradient_levels(fig_ds, [{"activation": a} for a in activations], lines, at_gain)
    rows = [{"activation": a, **line, "gain": g} for a in activations for line in lines
            for g in ([fixed["gain"]] if "gain" in fixed else selected_gains(ds, a, bias))]
    table = tables.levels(ds, rows, rest)
    text = [f"Selection: {describe_selection(rest)}. The level is each network's mean over layers of "
            "E[(∂C/∂W_l)²], averaged over networks (± one standard error); max/min compares the layers' "
            "averages, so 1 means a flat profile.", "", table.markdown()]
    if s.has_theory("grad_weight_meansq"):
        agree, beyond = tables.agreement(ds, ["grad_weight_meansq"], rows, rest)
        text += ["", f"Against theory at the first and last layer: {beyond} of {len(agree.rows)} rows beyond the "
                 "Bonferroni threshold.", "", agree.markdown(), "", _grid_summary(s, ["grad_weight_meansq"])]
    caption = "Top: level against gain, mean ± SE, theory dashed. Bottom: per layer at the critical gain."
    return Section(key, title, "\n".join(text), [(f"{s.name}_{key}", fig, caption)])


def phase(s: Survey, sel: dict | None = None):
    """Gradient growth over (gain, depth), with the measured and predicted critical gains."""
    key, title = "phase", "Phase picture: gradient growth over gain and depth"
    if s.kind != "stats" or not s.has("grad_preact_meansq"):
        return Skipped(key, title, "needs a statistics store with grad_preact_meansq")
    if s.size("gain") < 3 or s.size("depth") < 2:
        return Skipped(key, title, f"needs ≥ 3 gains and ≥ 2 depths (the store has {s.size('gain')} and "
                                   f"{s.size('depth')})")
    ds = s.ds
    init = "fan_in" if "fan_in" in ds["init"].values else str(ds["init"].values[0])
    fixed = {**default_selection(s, keep=("depth", "bias_std")), **({"init": init} if s.size("init") > 1 else {}),
             **(sel or {})}
    fixed.pop("depth", None)
    one = ds.sel(fixed)[["grad_preact_meansq"]].load()
    deepest = int(one["depth"].max())
    growth = plots.gradient_growth(one.sel(depth=deepest)[["grad_preact_meansq"]])
    rows, panels = [], []
    for activation in _labels(ds, "activation", fixed):
        for bias in _labels(ds, "bias_std", fixed):
            g = growth.sel(activation=activation, bias_std=bias).squeeze(drop=True)
            measured = zero_crossing(g.gain.values, g.values)
            rows.append([activation, format_label(bias), fmt(theory.critical_gain(activation, float(bias)), 4),
                         fmt(measured, 4)])
            panels.append({"activation": activation, "bias_std": bias})
    table = tables.Table("critical", {**fixed, "depth": deepest}, ["activation", "bias_std", "theory", "measured"], rows)
    fig = plots.phase_diagram(one, panels[:6], theory)
    text = [f"Selection: {describe_selection(fixed)}. Gradient growth is log10 of the median over networks of "
            "E[(∂ℓ/∂z_1)²] over that of E[(∂ℓ/∂z_L)²]; the measured critical gain is where it crosses zero at "
            f"depth {deepest} (linear interpolation between grid gains, n/a when it does not cross); theory's "
            "solves χ₁ = 1." + (" Panels: the first six (activation, σ_b)." if len(panels) > 6 else ""),
            "", table.markdown()]
    caption = "Gradient growth over (gain, depth); dotted: theory's critical gain; dashed: ξ_c."
    return Section(key, title, "\n".join(text), [(f"{s.name}_{key}", fig, caption)])


def spread(s: Survey, sel: dict | None = None):
    """Variance over networks of log ‖x_L‖² against Σ1/n, with the exact law where it applies."""
    key, title = "spread", "Finite width: how far single networks stray, against Σ1/n"
    if s.kind != "stats" or not s.has("act_meansq", "layer_width"):
        return Skipped(key, title, "needs a statistics store with act_meansq")
    if s.size("width") < 2 and s.size("depth") < 2:
        return Skipped(key, title, "needs ≥ 2 widths or ≥ 2 depths")
    ds = s.ds
    fixed = default_selection(s, keep=("width", "depth"))
    activation = "relu" if "relu" in ds["activation"].values else str(ds["activation"].values[0])
    init = "fan_in" if "fan_in" in ds["init"].values else str(ds["init"].values[0])
    fixed.update({"activation": activation, "init": init})
    fixed["gain"] = critical_gain_label(ds, activation, float(fixed.get("bias_std", ds["bias_std"].values.min())))
    fixed.update(sel or {})
    one = ds.sel(fixed)[["act_meansq", "layer_width"] + [v for v in ("theory_log_act_norm_var",) if v in ds]]
    one = one.squeeze([d for d in one.dims if d not in ("width", "depth", "seed", "layer") and one.sizes[d] == 1],
                      drop=True).load()
    single = s.spec.get("batch") == 1
    law = single and "theory_log_act_norm_var" in one and bool(np.isfinite(one["theory_log_act_norm_var"]).any())
    table_rows, exact = [], ([], [])
    measured = plots.log_norm_spread(one)
    for w in one.width.values:
        for d in one.depth.values:
            m = measured.sel(width=w, depth=d)
            row = [int(w), int(d), fmt(float(m.inverse_width_sum), 4),
                   tables.format_estimate(float(m.log_norm_var), float(m.log_norm_var_se))]
            if law:
                t = float(one["theory_log_act_norm_var"].sel(width=w, depth=d, layer=d))
                row += [fmt(t, 4), fmt((float(m.log_norm_var) - t) / float(m.log_norm_var_se), 3)]
                exact[0].append(float(m.inverse_width_sum))
                exact[1].append(t)
            table_rows.append(row)
    header = ["width", "depth", "Σ1/n", "measured"] + (["exact law", "dev (SE)"] if law else [])
    table = tables.Table("spread", fixed, header, table_rows)
    he = law and activation == "relu" and init == "fan_in"
    fig = plots.spread_figure(one, exact=exact if law else None, large_width=he)
    what = "‖x_L‖²" if single else f"the batch-mean ‖x_L‖² (batch {s.spec.get('batch')})"
    text = [f"Selection: {describe_selection(fixed)}. Variance over networks of the log of {what}/n_L at the last "
            "layer, networks whose last layer died left out; standard error from the fourth central moment."
            + (" The exact law (independent scaled χ² layer factors) applies: one input, Gaussian weights."
               if law else " The exact law is for one input per network (batch 1), so no theory column."),
            "", table.markdown()]
    return Section(key, title, "\n".join(text), [(f"{s.name}_{key}", fig, "Variance of log-norms across networks.")])


def spectra(s: Survey, sel: dict | None = None):
    """The input-output Jacobian's squared singular values, by activation × init at the critical gain."""
    key, title = "spectra", "Jacobian spectra: squared singular values of ∂x_L/∂x_0"
    if s.kind != "stats" or not s.has("jacobian_singular_values"):
        return Skipped(key, title, "needs a statistics store with jacobian = true")
    ds = s.ds
    fixed = {**default_selection(s, keep=("depth",)), **(sel or {})}
    bias = float(fixed.get("bias_std", ds["bias_std"].values.min()))
    cases = [{"activation": a, "init": i, "gain": fixed.get("gain", critical_gain_label(ds, a, bias))}
             for a in _labels(ds, "activation", fixed) for i in _labels(ds, "init", fixed)]
    rest = {k: v for k, v in fixed.items() if k not in ("activation", "init", "gain", "depth")}
    depths = [fixed["depth"]] if "depth" in fixed else [int(d) for d in ds["depth"].values]
    rows = []
    for case in cases:
        for depth in depths:
            sq = at(ds, {**rest, **case, "depth": depth})["jacobian_singular_values"].load() ** 2
            m, m_se = tables.seed_mean_se(sq.mean("singular_value"))
            v, v_se = tables.seed_mean_se(sq.var("singular_value"))
            rows.append([case["activation"], case["init"], format_label(case["gain"]), depth,
                         tables.format_estimate(float(m), float(m_se)), tables.format_estimate(float(v), float(v_se))])
    table = tables.Table("spectra", rest, ["activation", "init", "gain", "depth", "mean σ²", "variance of σ²"], rows)
    fig = plots.jacobian_figure(ds.sel(rest), cases, max(depths))
    text = [f"Selection: {describe_selection(rest)}; the gain nearest each activation's critical gain. Per network "
            "the mean and the variance of its squared singular values, then mean ± SE over networks.", "",
            table.markdown()]
    return Section(key, title, "\n".join(text), [(f"{s.name}_{key}", fig, "Normalised squared singular values at "
                                                                          "the largest depth, one curve per case.")])


def training(s: Survey, sel: dict | None = None):
    """Final test metric over (gain, depth), loss curves, and the init-level/outcome relation."""
    key, title = "training", "Training: outcome over gain and depth, and what the init predicts"
    if s.kind != "train":
        return Skipped(key, title, "needs a training store")
    ds = s.ds
    fixed = {**default_selection(s, keep=()), **(sel or {})}
    for axis in ("activation", "init", "parametrization"):
        if s.size(axis) > 1 and axis not in fixed:
            fixed[axis] = str(ds[axis].values[0])
    fixed = {k: v for k, v in fixed.items() if k not in ("gain", "depth")}
    one = ds.sel(fixed)
    final_acc = one["test_accuracy"].isel(eval_step=-1).load()
    metric = "test_accuracy" if bool(np.isfinite(final_acc).any()) else "test_loss"
    final = one[metric].isel(eval_step=-1).load()
    steps = int(one["eval_step"][-1])
    median = final.median("seed")
    median = median.squeeze([d for d in median.dims if d not in ("gain", "depth")], drop=True)
    gains = [float(g) for g in one["gain"].values]
    rows = [[int(d)] + [fmt(float(median.sel(depth=d, gain=g)), 3) for g in gains] for d in one["depth"].values]
    table = tables.Table("final", {**fixed, "metric": metric}, ["depth"] + [format_label(g) for g in gains], rows)
    init_level = ds["init_grad_weight_meansq"].mean("layer").load()
    outcome = ds["test_loss"].isel(eval_step=-1).load()
    x, y = xr.broadcast(np.log10(init_level), outcome)
    ok = np.isfinite(x.values) & np.isfinite(y.values)
    rho = spearman(x.values[ok], y.values[ok])
    diverged = int(ds["diverged"].sum())
    text = [f"Selection: {describe_selection(fixed)}. Median over {s.size('seed')} networks of the {metric.replace('_', ' ')} "
            f"after {steps} steps; rows depth, columns gain.", "", table.markdown(), "",
            f"Across all {int(ok.sum())} networks of the store, the rank correlation (Spearman) between the initial "
            f"weight-gradient level and the final test loss is {fmt(rho, 3)}; {diverged} networks diverged."]
    figures = []
    if s.size("gain") >= 2 and s.size("depth") >= 2:
        figures.append((f"{s.name}_{key}", plots.trainability(one, theory, metric),
                        "Left: final metric over (gain, depth), 6ξ_c dashed. Right: training loss by gain, largest depth."))
    else:
        figures.append((f"{s.name}_{key}", plots.loss_curves(one), "Training loss against step, median and 16–84%."))
    figures.append((f"{s.name}_init_outcome", plots.init_outcome(init_level, outcome, "final test loss"),
                    "Each network's initial weight-gradient level against its final test loss."))
    return Section(key, title, "\n".join(text), figures)


def coord_check(s: Survey, sel: dict | None = None):
    """Each layer's coordinate size against width as training starts, and its fitted width exponents."""
    key, title = "coord_check", "Coordinate check: layer sizes against width in the first steps"
    if s.kind != "train" or "coord_act_abs_mean" not in s.ds:
        return Skipped(key, title, "needs a training store with coord_* variables")
    if s.size("width") < 3:
        return Skipped(key, title, f"needs ≥ 3 widths (the store has {s.size('width')})")
    fixed = {**default_selection(s, keep=("width", "parametrization")), **(sel or {})}
    for axis in ("activation", "init", "gain"):
        if s.size(axis) > 1 and axis not in fixed:
            fixed[axis] = s.ds[axis].values[0].item()
    one = s.ds.sel(fixed).load()
    rows = [[name, str(step), str(layer), str(e)] for (name, step, layer), e in coordinates.slopes(one).items() if step <= 3]
    text = (f"Selection: {describe_selection(fixed)}. The exponent b of each layer's mean |x_l| ∝ width^b "
            f"({s.size('width')} widths, {s.size('seed')} seeds; per-seed fits of log size = a + b log n + c/n, "
            "mean ± SE over seeds), after the steps stored up to 3:\n\n"
            + tables.Table("coord_check", fixed, ["parametrisation", "steps", "layer", "exponent b"], rows).markdown())
    return Section(key, title, text, [(f"{s.name}_{key}", plots.coord_check(one),
                                       "Mean |x_l| and the readout's mean |f(x)| against width, by step.")])


POINTS = {"forward": forward, "backward": backward, "gradients": gradients, "phase": phase, "spread": spread,
          "spectra": spectra, "training": training, "coord_check": coord_check}


def figure(s: Survey, kind: str, sel: dict | None = None):
    """The one figure of ``kind`` for ``sweep plot``, with ``sel`` fixing axes by label.

    Raises:
      SpecError: for ``--kind`` when the store cannot support it.
    """
    from sweep.errors import SpecError

    result = POINTS[kind](s, sel)
    if isinstance(result, Skipped):
        raise SpecError("--kind", f"{kind} {result.reason}")
    return result.figures[0][1]


def zero_crossing(x: np.ndarray, y: np.ndarray) -> float:
    """The first upward zero crossing of y(x) by linear interpolation; NaN when there is none."""
    ok = np.isfinite(y)
    x, y = np.asarray(x, float)[ok], np.asarray(y, float)[ok]
    for i in range(len(y) - 1):
        if y[i] <= 0 < y[i + 1]:
            return float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
    return float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ranks by order; ties are rare for these continuous values)."""
    if len(x) < 3:
        return float("nan")
    rank = lambda a: np.argsort(np.argsort(a))
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def _labels(ds: xr.Dataset, axis: str, fixed: dict) -> list:
    if axis in fixed:
        return [fixed[axis]]
    return [v.item() if isinstance(v, np.generic) else v for v in ds[axis].values]


def _grid_summary(s: Survey, variables: list[str]) -> str:
    """One line over every grid point and layer: how many deviations pass the Bonferroni threshold."""
    devs = {v: _dev(s.ds, v) for v in variables}
    total = sum(int(d.count()) for d in devs.values())
    if total == 0:
        return "Over the whole grid: no finite comparison with theory."
    threshold = tables.bonferroni_threshold(total)
    beyond = sum(int((np.abs(d) > threshold).sum()) for d in devs.values())
    value, variable = max((float(np.abs(d).max()), v) for v, d in devs.items() if int(d.count()))
    point = devs[variable].isel(np.abs(devs[variable]).argmax(...))
    labels = {k: format_label(point[k].item()) for k in devs[variable].dims}
    where = ", ".join(f"{k} {v}" for k, v in labels.items())
    return (f"Over the whole grid ({total} comparisons of grid point × layer × variable): {beyond} beyond the "
            f"Bonferroni threshold {threshold:.2f}; the largest is {fmt(value, 3)} SE ({variable} at {where}).")


def _dev(ds: xr.Dataset, variable: str) -> xr.DataArray:
    """``theory.deviation`` of one statistic per grid point and layer; NaN where not finite."""
    dev = theory.deviation(ds[[variable]].load(), ds[[f"theory_{variable}"]].load())[variable]
    return dev.where(np.isfinite(dev))
