"""The paper's prose: the answer to "what justifies He initialisation?", point by point.

Each function reads the store of one experiment of ``analysis/specs`` (datasets keyed by
their spec's name, each with its ``theory_*`` variables) and returns a ``Section``, or
``None`` when that store is not among the results; every number is computed from the data.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from sweep import plots, theory
from sweep.config import Spec
from sweep.report import coord_check, families, first_step, sections
from sweep.report.numbers import Estimate, bonferroni_z, fmt, mean_se, nearest, power, ratio, table
from sweep.report.sections import Section, zero_crossing
from sweep.report.selection import at, max_deviation, spec_value, theory_of

SQRT2 = math.sqrt(2.0)


def forward_signals(results: dict) -> Section | None:
    ds = results.get("forward")
    if ds is None:
        return None
    depth, width = int(ds.depth.max()), int(ds.width.max())
    g_he = nearest(ds.gain, SQRT2)
    he = at(ds, activation="relu", init="fan_in", gain=g_he, depth=depth, width=width)
    xavier = at(ds, activation="relu", init="fan_avg", gain=nearest(ds.gain, 1.0), depth=depth, width=width)
    last = depth

    def per_layer_factor(net):
        growth = ratio(mean_se(net.preact_meansq.sel(layer=last)), mean_se(net.preact_meansq.sel(layer=1)))
        return power(growth, 1.0 / (last - 1))

    he_factor, xavier_factor = per_layer_factor(he), per_layer_factor(xavier)
    pi_ratio = {l: ratio(power(mean_se(he.act_mean.sel(layer=l)), 2), mean_se(he.act_meansq.sel(layer=l)))
                for l in (1, last)}
    var_share = ratio(mean_se(he.act_var.sel(layer=1)), mean_se(he.act_meansq.sel(layer=1)))
    # Which moment of x_{l-1} sets z_l? Under fan_in at constant width E[z_l²] = σ_w² E[x_{l-1}²].
    nxt = he.preact_meansq.sel(layer=slice(2, last)).values
    prev_meansq = he.act_meansq.sel(layer=slice(1, last - 1)).values
    prev_var = he.act_var.sel(layer=slice(1, last - 1)).values
    k_meansq = mean_se(xr.DataArray((nxt / (g_he**2 * prev_meansq)).mean(1)))
    k_var = mean_se(xr.DataArray((nxt / (g_he**2 * prev_var)).mean(1)))
    dev = theory.deviation(ds, theory_of(ds))
    worst = max_deviation(dev, ["preact_meansq", "act_meansq", "act_mean", "act_var"], activation="relu", init="fan_in",
                     gain=g_he, depth=depth, width=width)
    text = (
        f"Relu networks of depth {depth} and width {width}, {ds.sizes['seed']} networks per setting, "
        f"batch {spec_value(ds, 'batch')}.\n\n"
        f"- Under He init (fan_in, σ_w = √2) the pre-activation second moment changes by a factor "
        f"**{he_factor}** per layer; under Xavier (fan_avg, σ_w = 1) by **{xavier_factor}** (theory: 1 and 1/2).\n"
        f"- Relu outputs are not zero-mean: E[x]²/E[x²] = **{pi_ratio[1]}** at layer 1 and "
        f"**{pi_ratio[last]}** at layer {last} (infinite width: 1/π = {1 / math.pi:.4f}; the slow drift is the "
        f"finite-width fluctuation of each example's length). So the variance is only Var[x]/E[x²] = "
        f"**{var_share}** of the size (1 − 1/π = {1 - 1 / math.pi:.4f}).\n"
        f"- The next layer's pre-activation is set by the **second moment**, not the variance: "
        f"E[z_(l+1)²] / (σ_w² E[x_l²]) = **{k_meansq}**, while E[z_(l+1)²] / (σ_w² Var[x_l]) = **{k_var}** "
        f"(= 1/(1 − 1/π) = {1 / (1 - 1 / math.pi):.4f} if the variance were used). He et al.'s E[x²] = ½Var[z] "
        f"is exactly the statement that the ½ comes from the second moment of a half-rectified Gaussian.\n"
        f"- Every forward statistic of He init agrees with mean-field theory: the largest deviation over layers "
        f"is {fmt(worst, 2)} standard errors.\n"
    )
    cases = [{"init": "fan_in", "gain": g_he}, {"init": "fan_avg", "gain": nearest(ds.gain, 1.0)}]
    cases += [{"init": "fan_in", "gain": float(g)} for g in (ds.gain.min(), ds.gain.max()) if abs(g - g_he) > 1e-9]
    fig = plots.forward(ds.sel(activation="relu"), cases, depth, width)
    caption = ("Forward statistics per layer: He, Xavier and the smallest and largest gains under fan_in; "
               "median over networks, band 16–84%, theory dashed.")
    return Section("forward", "1. Is pre-activation variance the quantity that matters?", text,
                   [("forward", fig, caption)])


def backward_signals(results: dict) -> Section | None:
    ds = results.get("backward")
    if ds is None:
        return None
    depth, width = int(ds.depth.max()), int(ds.width.max())
    gain = nearest(ds.gain, SQRT2)
    th = theory_of(ds)
    dev = theory.deviation(ds, th)
    rows = []
    for profile in ds.profile.values:
        for init in ds.init.values:
            sel = dict(activation="relu", profile=str(profile), init=str(init), depth=depth, width=width, gain=gain)
            net, t = at(ds, **sel), th.sel(sel).squeeze(drop=True)
            fwd = ratio(mean_se(net.preact_meansq.sel(layer=depth)), mean_se(net.preact_meansq.sel(layer=1)))
            bwd = ratio(mean_se(net.grad_preact_meansq.sel(layer=1)), mean_se(net.grad_preact_meansq.sel(layer=depth)))
            t_fwd = float(t.theory_preact_meansq.sel(layer=depth) / t.theory_preact_meansq.sel(layer=1))
            t_bwd = float(t.theory_grad_preact_meansq.sel(layer=1) / t.theory_grad_preact_meansq.sel(layer=depth))
            worst = max_deviation(dev, ["preact_meansq", "grad_act_meansq", "grad_preact_meansq"], **sel)
            rows.append([str(profile), str(init), str(fwd), fmt(t_fwd), str(bwd), fmt(t_bwd), fmt(worst, 2)])
    text = (
        f"Relu, σ_w = √2, depth {depth}, base width {width}; 'alternating' widths n, 2n, n, 2n, … "
        f"Forward: E[z_L²]/E[z_1²]; backward: E[δ_1²]/E[δ_L²] (δ = ∂ℓ/∂z, per example).\n\n"
        + table(["profile", "init", "forward (measured)", "theory", "backward (measured)", "theory",
                 "max |dev| (SE)"], rows)
        + "\n\nWith constant widths every fan gives the same (stable) picture. With unequal widths, fan_in keeps "
        "the forward signal and lets the backward one drift by the width ratio, fan_out does the reverse, and "
        "fan_avg compromises: He et al.'s c₂/d_L ratio is a ratio of first and last widths, not an exponential "
        "in depth, and the measurement follows the theory layer by layer."
    )
    fig = plots.backward(ds, [str(i) for i in ds.init.values], [str(p) for p in ds.profile.values], depth, width, gain)
    return Section("backward", "2. Does preserving the forward signal preserve the backward signal?", text,
                   [("backward", fig, "Backward second moments per layer; theory dashed.")])


def weight_gradients(results: dict) -> Section | None:
    ds = results.get("weight_gradients_batch", results.get("forward"))
    if ds is None:
        return None
    depth, width = int(ds.depth.max()), int(ds.width.max())
    net = at(ds, activation="relu", init="fan_in", depth=depth, width=width)
    dev = at(theory.deviation(ds, theory_of(ds)), activation="relu", init="fan_in", depth=depth, width=width)
    gains = net.gain.values
    finite = "theory_fw_grad_weight_meansq" in net and bool(np.isfinite(net.theory_fw_grad_weight_meansq).all())
    spread = lambda y: float(y.max("layer") / y.min("layer"))
    level_of = lambda g: mean_se(net.grad_weight_meansq.sel(gain=g).mean("layer"))
    infinite_of = lambda g: net.theory_grad_weight_meansq.sel(gain=g).mean("layer").item()
    rows = []
    for g in gains:
        per_layer = net.grad_weight_meansq.sel(gain=g).mean("seed")
        row = [plots.bands.label_gain(float(g)), fmt(spread(per_layer)),
               fmt(spread(net.theory_grad_weight_meansq.sel(gain=g)))]
        if finite:
            row.append(fmt(spread(net.theory_fw_grad_weight_meansq.sel(gain=g))))
        row += [str(level_of(g)), fmt(infinite_of(g))]
        if finite:
            fw = _finite_width_level(net.sel(gain=g))
            row += [str(fw), fmt(level_of(g).value / fw.value, 3),
                    fmt(float(abs(dev.fw_grad_weight_meansq.sel(gain=g)).max()), 2)]
        rows.append(row)
    header = ["gain σ_w", "max/min over layers", "infinite width"] + (["finite width"] if finite else [])
    header += ["level (mean over layers)", "infinite width"]
    header += ["finite width", "measured/finite", "max |dev| per layer (SE)"] if finite else []
    levels = net.grad_weight_meansq.mean(["seed", "layer"]).values
    theory_levels = net.theory_grad_weight_meansq.mean("layer").values
    slope = lambda y, m: np.polyfit(np.log10(gains[m] ** 2 / 2), np.log10(y[m]), 1)[0]
    below, above = gains <= SQRT2 + 1e-9, gains >= SQRT2 - 1e-9
    g_he = nearest(gains, SQRT2)
    he = net.sel(gain=g_he)
    per_gain = net.grad_weight_meansq.mean("seed")
    flat_below = (per_gain.max("layer") / per_gain.min("layer")).sel(gain=gains[gains < SQRT2 - 1e-9]).max()
    he_level = level_of(g_he)
    text = (
        f"Relu, fan_in, depth {depth}, width {width}, mse loss, batch {spec_value(ds, 'batch')}, "
        f"{ds.sizes['seed']} networks per gain"
        + (" (the gains share their random draws)" if spec_value(ds, "common_random_numbers") else "")
        + ": the mean square of ∂C/∂W_l, the gradient SGD uses, against the infinite-width theory and "
        + ("the finite-width law (`theory_fw_grad_weight_meansq`, sweep/theory/relu_batch.py: exact, estimated "
           "from exact draws of the two-input forward chain, its Monte Carlo error in the standard errors).\n\n"
           if finite else "its theory.\n\n")
        + table(header, rows)
        + "\n\n"
        f"- Below √2 the profile across layers is flat (max/min {fmt(float(flat_below))} at worst): a bias-free "
        "relu network is positively homogeneous, so x_(l−1) shrinks as δ_l grows. From √2 up it tilts "
        f"(max/min {fmt(spread(he.grad_weight_meansq.mean('seed')))} at He init) as the examples of a batch become "
        "correlated with depth and the cross-example part of ∂C/∂W dominates.\n"
        f"- What the gain sets is the **level**: log10 of the level grows with log10(σ_w²/2) with slope "
        f"{fmt(slope(levels, below))} below √2 and {fmt(slope(levels, above))} above (infinite-width theory "
        f"{fmt(slope(theory_levels, below))} and {fmt(slope(theory_levels, above))}; depth {depth}), i.e. like "
        "(σ_w²/2)^(L−1) times the readout's own growth. Only σ_w = √2 makes the level independent of depth: "
        "this, not a flat profile, is what He init fixes for the weight gradients.\n"
        + _levels_at_he(net, dev, he_level, infinite_of(g_he), depth, finite)
        + _per_example_at_he(he)
        + _levels_across_widths(results.get("weight_gradients"))
        + _projection_exactness(results.get("finite_width"))
        + _step_five(net, he_level, infinite_of(g_he), (depth, width, spec_value(ds, "batch")),
                     results.get("weight_gradients"), finite)
    )
    fig = plots.weight_gradients(ds.sel(activation="relu"), "fan_in", depth, width)
    return Section("weights", "3. What happens to the weight gradients, and what does He init fix?", text,
                   [("weight_gradients", fig, "Left: per layer, one line per gain, mean over networks with a "
                                              "±2 SE band; infinite-width theory dashed, finite-width law dotted. "
                                              "Middle: the same over the infinite-width theory. "
                                              "Right: level (mean over layers) against gain.")])


def _finite_width_level(point: xr.Dataset) -> Estimate:
    """The finite-width law's level (mean over layers) at one gain, with its Monte Carlo error (the layers
    share their draws, so the mean of the layers' errors, an upper bound)."""
    error = point.get("theory_fw_grad_weight_meansq_error")
    se = float(error.mean("layer")) if error is not None else 0.0
    return Estimate(float(point.theory_fw_grad_weight_meansq.mean("layer")), se)


def _levels_at_he(net: xr.Dataset, dev: xr.Dataset, level: Estimate, infinite: float, depth: int,
                  finite: bool) -> str:
    """He init's level and profile against both predictions."""
    g_he = nearest(net.gain.values, SQRT2)
    he, z_he = net.sel(gain=g_he), dev.sel(gain=g_he)
    per_layer = he.grad_weight_meansq.mean("seed") / he.theory_grad_weight_meansq
    worst = int(per_layer.argmax())
    limit = bonferroni_z(depth * net.sizes["gain"])
    text = (
        f"- At He init the measured level is {level} (standard error {fmt(100 * level.se / level.value, 2)}% of it), "
        f"{fmt(level.value / infinite, 3)} times the infinite-width theory's; layer by layer the infinite-width "
        f"value is off by up to {fmt(float(per_layer.max()), 3)}× (layer {int(per_layer.layer[worst])}) and "
        f"{int((abs(z_he.grad_weight_meansq) > limit).sum())} of {depth} layers are beyond the Bonferroni limit "
        f"of {fmt(limit, 3)} standard errors (family-wise error 10⁻³ over layers and gains)."
    )
    if not finite:
        return text
    fw = _finite_width_level(he)
    spec = Spec.from_json(net.attrs["spec"]).replace(
        grid={"activation": ["relu"], "init": ["fan_in"], "depth": [depth], "width": [int(net.width)], "gain": [g_he]})
    one_input = float(theory.one_input_weight_meansq(spec, he.theory_grad_weight_meansq).mean("layer"))
    return text + (
        f"\n- The finite-width law predicts {fw}, {fmt(level.value / fw.value, 3)} of it measured "
        f"({fmt((level.value - fw.value) / math.hypot(level.se, fw.se), 2)} standard errors), and every layer of every "
        f"gain within {fmt(float(abs(dev.fw_grad_weight_meansq).max()), 3)} standard errors; its profile's max/min at "
        f"He init is {fmt(float(he.theory_fw_grad_weight_meansq.max() / he.theory_fw_grad_weight_meansq.min()))}. "
        "It is exact: two inputs of one network reduce to a Markov chain of their 2 × 2 Gram matrix, and given "
        "that chain the backward pass and the readout integrate in closed form. Almost all of the excess is in the "
        "cross-example term, the bulk of ∂C/∂W at this batch: the one-input term's exact law with the infinite-width "
        f"cross-example term gives only {fmt(one_input)} ({fmt(one_input / infinite, 3)}× the infinite-width level). "
        "At finite width the two examples' cotangents are coupled to the outputs, and so to the forward pass, "
        "through the mse readout, and their kernels fluctuate, which relu's arc-cosine maps feel; the two-input law "
        "carries both."
    )


def _per_example_at_he(he: xr.Dataset) -> str:
    """Each example's own cotangents at He init against both predictions (only ∂C/∂W mixes the batch)."""
    if "theory_fw_grad_act_meansq" not in he or not bool(np.isfinite(he.theory_fw_grad_act_meansq).all()):
        return ""
    first = he.sel(layer=1)
    measured = mean_se(first.grad_act_meansq)
    z = theory.deviation(he, theory_of(he)).fw_grad_act_meansq
    return (
        f"\n- Each example's own cotangent is predicted at this width by the exact finite-width law "
        f"(`theory_fw_*`, sweep/theory/relu_gradients.py): at layer 1, E[(∂ℓ/∂x_1)²] = {measured}, exact law "
        f"{fmt(float(first.theory_fw_grad_act_meansq))}, infinite width {fmt(float(first.theory_grad_act_meansq))} "
        f"({fmt(measured.value / float(first.theory_grad_act_meansq), 2)}×); over all layers within "
        f"{fmt(float(abs(z).max()), 2)} standard errors of the exact law. The excess is the mse readout's coupling "
        "to the forward norm (the part of ∂ℓ/∂x_L along x_L, of relative size O(O²/n) per layer, which the "
        "relu invariant x_l·∂ℓ/∂x_l = x_L·∂ℓ/∂x_L carries down unattenuated)."
    )


def _levels_across_widths(ds: xr.Dataset | None) -> str:
    """One input per network: the weight-gradient level against both predictions as β = L/n falls."""
    if ds is None or "theory_fw_grad_weight_meansq" not in ds:
        return ""
    depth = int(ds.depth.max())
    net = ds.sel(activation="relu", init="fan_in", profile="constant", gain=nearest(ds.gain.values, SQRT2),
                 depth=depth, bias_std=float(ds.bias_std.min()))
    middle = depth // 2
    rows, far, near = [], [], []
    for w in net.width.values:
        one = net.sel(width=w)
        level = mean_se(one.grad_weight_meansq.mean("layer"))
        infinite = float(one.theory_grad_weight_meansq.mean("layer"))
        exact = float(one.theory_fw_grad_weight_meansq.mean("layer"))
        y = np.log(one.grad_weight_meansq.sel(layer=middle))
        y = y.where(np.isfinite(y))
        var = float(y.var("seed", ddof=1))
        count = int(y.count("seed"))
        var_se = math.sqrt(float(((y - y.mean("seed")) ** 4).mean("seed")) - var**2) / math.sqrt(count)
        law = float(one.theory_log_grad_weight_norm_var.sel(layer=middle))
        beta = depth / float(w)
        rows.append([int(w), fmt(beta), str(level), fmt(infinite), fmt(exact), fmt(level.value / infinite, 3),
                     fmt(level.value / exact, 3), fmt((level.value - exact) / level.se, 2),
                     f"{var:.3f} ± {var_se:.3f}", fmt(law, 4)])
        far.append(level.value / infinite)
        near.append(abs(level.value - exact) / level.se)
    return (
        f"\n\nOne input per network (batch 1, where the exact law covers ∂C/∂W too), depth {depth}, "
        f"{net.sizes['seed']} networks per width, mse loss; level = mean over layers of E[(∂C/∂W_l)²]; spread = "
        f"Var[log (∂C/∂W_l)²] over networks at layer {middle}.\n\n"
        + table(["width", "β = L/n", "level measured", "infinite width", "finite width (exact)", "measured/infinite",
                 "measured/exact", "dev from exact (SE)", "spread measured", "spread (exact law)"], rows)
        + f"\n\nAs β falls from {fmt(depth / float(net.width.min()))} to {fmt(depth / float(net.width.max()))} the "
        f"ratio to the infinite-width level falls from {fmt(far[0], 3)} to {fmt(far[-1], 3)} towards 1, while the "
        f"exact finite-width level holds at every width (within {fmt(max(near), 2)} standard errors)."
    )


def _projection_exactness(ds: xr.Dataset | None) -> str:
    """Point 4's store (projection loss, one input): the infinite-width gradient means are exact there."""
    if ds is None or "theory_fw_grad_weight_meansq" not in ds:
        return ""
    testable = ds.depth / ds.width <= 0.5  # beyond, a mean of ~1000 networks is too skewed for a z
    dev = theory.deviation(ds, theory_of(ds))
    worst = float(abs(dev.grad_weight_meansq.where(testable)).max())
    return (
        "\n\nWith the projection loss ℓ = x_L·u the infinite-width means are exact at every width: the backward "
        "sum telescopes, and ‖x_(l−1)‖² and ‖δ_l‖² depend on disjoint layers, so E[(∂ℓ/∂W_l)²] = "
        "E[x_(l−1)²]·E[δ_l²] (point 4's store, widths "
        f"{int(ds.width.min())}–{int(ds.width.max())}, β ≤ 0.5: within {fmt(worst, 2)} standard errors at every layer)."
    )


def _step_five(net: xr.Dataset, level: Estimate, infinite: float, shape: tuple[int, int, int],
               one_input: xr.Dataset | None, finite: bool) -> str:
    """The asker's step 5 ("stable activations and activation gradients give stable weight gradients"), answered
    with the numbers of the batch store (He init; ``shape`` its depth, width and batch) and of the batch-1 store."""
    depth, width, batch = shape
    he = net.sel(gain=nearest(net.gain.values, SQRT2))
    per_network = he.grad_weight_meansq.mean("layer")
    typical = float(per_network.median("seed")) / level.value
    mean_profile = he.grad_weight_meansq.mean("seed")
    text = (
        "\n\n**Step 5 answered.** Stable activations and activation gradients do give a stable weight gradient on "
        "average in the sense He init fixes: only at σ_w = √2 is the level independent of depth (the slopes "
        "above), and for a loss linear in the output at batch 1 it is E[x²]·E[δ²] exactly. What fails at finite "
        f"width, measured at depth {depth}, width {width} (β = L/n = {fmt(depth / width)}), batch "
        f"{batch}: the mean level at He init is {fmt(level.value / infinite, 3)} times the "
        f"infinite-width product, and the profile tilts {fmt(float(mean_profile.max() / mean_profile.min()))}× across "
        f"layers (infinite width: {fmt(float(he.theory_grad_weight_meansq.max() / he.theory_grad_weight_meansq.min()))}×)"
    )
    if finite:
        fw = _finite_width_level(he)
        text += f"; the finite-width law accounts for both (measured/predicted level {fmt(level.value / fw.value, 3)})"
    text += (
        ". The excess is a finite-width effect: at batch 1 it falls towards 1 as β → 0"
        + (" (the width table above)" if one_input is not None else "")
        + ", and it grows with β and with the number of outputs. And single networks spread log-normally, so the "
        f"network SGD trains is one draw from that spread: at He init the median network's level is "
        f"{fmt(typical, 2)} of the mean level."
    )
    return text


def finite_width(results: dict) -> Section | None:
    ds = results.get("finite_width")
    if ds is None:
        return None
    spread = plots.log_norm_spread(ds)
    th = theory_of(ds)
    rows, exact_x, exact_y = [], [], []
    for w in ds.width.values:
        for d in ds.depth.values:
            s = spread.sel(width=w, depth=d)
            t = th.sel(width=w, depth=d, layer=d).squeeze(drop=True)
            exact = float(t.theory_log_act_norm_var)
            approx = float(t.theory_log_act_norm_var_large_width)
            z = (float(s.log_norm_var) - exact) / float(s.log_norm_var_se)
            exact_x.append(float(s.inverse_width_sum))
            exact_y.append(exact)
            rows.append([int(w), int(d), fmt(float(s.inverse_width_sum)),
                         f"{float(s.log_norm_var):.3f} ± {float(s.log_norm_var_se):.3f}", fmt(exact, 4), fmt(approx, 4),
                         fmt(z, 2)])
    text = (
        f"Relu, He init, one input per network, {ds.sizes['seed']} networks per (width, depth). The variance over "
        "networks of log ‖x_L‖², against the exact finite-width law (independent scaled χ² factors with "
        "Binomial(n, ½) degrees of freedom) and its large-width form 2/n_0 + 5Σ1/n.\n\n"
        + table(["width", "depth", "Σ1/n", "Var[log‖x_L‖²] measured", "exact law", "large width", "dev (SE)"], rows)
        + "\n\nThe mean is preserved, but single networks fan out: the spread grows linearly in depth/width, "
        "exactly as the law says. He init fixes the average, not the spread; depth/width controls that."
    )
    fig = plots.spread_figure(ds, exact=(exact_x, exact_y))
    return Section("finite_width", "4. How far does a single network stray from the average?", text,
                   [("finite_width", fig, "Variance of log‖x_L‖² across networks; exact law dashed.")])


def critical_gains(results: dict) -> Section | None:
    ds = results.get("phase")
    if ds is None:
        return None
    growth = plots.gradient_growth(ds.sel(init="fan_in", profile="constant", width=int(ds.width.max())))
    deepest = int(ds.depth.max())
    rows, panels = [], []
    for activation in ds.activation.values:
        for b in ds.bias_std.values:
            a, b = str(activation), float(b)
            g = growth.sel(activation=a, bias_std=b, depth=deepest)
            measured = zero_crossing(g.gain.values, g.values)
            predicted = theory.critical_gain(a, b)
            chi = theory.chi1(a, predicted, b)
            rows.append([a, fmt(b), fmt(predicted, 4), fmt(measured, 3), fmt(chi, 4)])
            if b == float(ds.bias_std.max()) or a in ("relu",):
                panels.append({"activation": a, "bias_std": b})
    text = (
        f"Gradient growth log10(E[δ_1²]/E[δ_L²]) at depth {deepest} crosses zero at the measured critical gain "
        "(linear interpolation between grid gains); theory's critical gain solves χ₁ = 1.\n\n"
        + table(["activation", "σ_b", "critical σ_w (theory)", "measured", "χ₁ there"], rows)
        + "\n\nBelow the critical gain gradients vanish towards the input, above it they explode, and the band "
        "where they survive a given depth narrows as depth grows (dashed: the correlation depth scale ξ_c)."
    )
    fig = plots.phase_diagram(ds.sel(init="fan_in", profile="constant", width=int(ds.width.max())), panels[:6], theory)
    return Section("phase", "5. Beyond relu: where are the critical gains?", text,
                   [("phase", fig, "Gradient growth over (gain, depth); dotted: critical gain; dashed: ξ_c.")])


def training(results: dict) -> Section | None:
    ds = results.get("train")
    if ds is None:
        return None
    one = ds.isel(learning_rate=0, profile=0, width=0, init=0, activation=0, bias_std=0)
    activation, bias_std = str(ds.activation.values[0]), float(ds.bias_std.values[0])
    steps = int(one.eval_step[-1])
    accuracy = one.test_accuracy.isel(eval_step=-1)
    chance = 1.0 / 10
    trained = (accuracy.median("seed") > 2 * chance)
    rows, agree, total = [], 0, 0
    for depth in one.depth.values:
        row = [int(depth)]
        for g in one.gain.values:
            xi = theory.depth_scales(activation, float(g), bias_std).xi_c
            inside = bool(np.isfinite(xi) and xi > 0 and depth < 6 * xi) or not np.isfinite(xi)
            ok = bool(trained.sel(depth=depth, gain=g))
            agree += int(inside == ok)
            total += 1
            row.append(f"{float(accuracy.sel(depth=depth, gain=g).median('seed')):.2f}{'' if inside else '†'}")
        rows.append(row)
    init_grad = np.log10(one.init_grad_weight_meansq.mean("layer"))
    final_loss = one.test_loss.isel(eval_step=-1)
    x, y = np.broadcast_arrays(init_grad.values, final_loss.values)
    ok = np.isfinite(x) & np.isfinite(y)
    spearman = sections.spearman(x[ok], y[ok])
    diverged = int(ds.diverged.sum())
    text = (
        f"{activation}, σ_b = {bias_std:.3g}, {ds.attrs.get('dataset', spec_value(ds, 'dataset'))}, "
        f"{spec_value(ds, 'optimizer')} at learning rate {float(one.learning_rate):.3g}, {steps} steps, "
        f"{ds.sizes['seed']} networks per cell. Median test accuracy after {steps} steps (chance {chance:.2f}); "
        "† marks depths beyond theory's 6ξ_c.\n\n"
        + table(["depth \\ gain"] + [plots.bands.label_gain(float(g)) for g in one.gain.values], rows)
        + f"\n\n- Trained or not (median accuracy above {2 * chance:.2f}) agrees with depth < 6ξ_c in {agree} of "
        f"{total} cells (critical gain {theory.critical_gain(activation, bias_std):.4g}).\n"
        f"- Across all {int(ok.sum())} networks, the rank correlation between the initial weight-gradient level "
        f"and the final test loss is {spearman:+.2f}; {diverged} networks diverged.\n"
    )
    fig = plots.trainability(ds.isel(learning_rate=[0]), theory)
    return Section("training", "6. Does any of it predict training?", text,
                   [("training", fig, "Left: final test accuracy over (gain, depth), 6ξ_c dashed, critical gain "
                                      "dotted. Right: training loss by gain at the largest depth.")])


def jacobian_spectra(results: dict) -> Section | None:
    ds = results.get("jacobian")
    if ds is None:
        return None
    rows, cases = [], []
    for activation, gain in (("relu", nearest(ds.gain, SQRT2)), ("tanh", nearest(ds.gain, 1.0))):
        for init in ds.init.values:
            for depth in ds.depth.values:
                sv = at(ds, activation=activation, init=str(init), gain=gain, depth=int(depth)).jacobian_singular_values
                sq = sv**2
                m1 = mean_se(sq.mean("singular_value"))
                var = mean_se(sq.var("singular_value"))
                rows.append([activation, str(init), plots.bands.label_gain(gain), int(depth), str(m1), str(var)])
            cases.append({"activation": activation, "init": str(init), "gain": gain})
    deepest = int(ds.depth.max())
    text = (
        f"Squared singular values of ∂x_L/∂x_0 at one input, width {int(ds.width.max())}; mean and variance over "
        "each network's spectrum, averaged over networks.\n\n"
        + table(["activation", "init", "σ_w", "depth", "mean σ²", "variance of σ²"], rows)
        + "\n\nAt criticality the mean squared singular value stays near 1, but its spread grows with depth; "
        "orthogonal weights narrow it (Pennington et al.: variance 2L Gaussian, L orthogonal for relu at infinite "
        "width), and orthogonal tanh near the origin comes closest to dynamical isometry."
    )
    fig = plots.jacobian_figure(ds, cases, deepest)
    return Section("jacobian", "7. Gaussian against orthogonal weights: the Jacobian's singular values", text,
                   [("jacobian", fig, "Distribution of normalised squared singular values at the largest depth.")])


POINTS = (forward_signals, backward_signals, weight_gradients, finite_width, critical_gains, training, jacobian_spectra,
          families.families, first_step.first_step, coord_check.coord_check)
