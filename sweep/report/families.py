"""Point 8 of the paper: convolutions and residual networks, at initialisation and in training.

Reads the ``conv`` and ``residual`` statistics stores and the ``deep_plain`` and
``deep_residual`` training stores of ``analysis/specs``; every number is computed from them.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from sweep import plots, theory
from sweep.report.numbers import fmt, mean_se, nearest, power, ratio, table
from sweep.report.sections import Section
from sweep.report.selection import at, max_deviation, spec_value, theory_of

SQRT2 = math.sqrt(2.0)


def families(results: dict) -> Section | None:
    """He's conv fans, the residual stream, and deep residual against plain nets in training, from the
    ``conv``, ``residual``, ``deep_plain`` and ``deep_residual`` stores."""
    conv, res = results.get("conv"), results.get("residual")
    deep = {name: results[f"deep_{name}"] for name in ("plain", "residual") if f"deep_{name}" in results}
    if conv is None and res is None and not deep:
        return None
    for ds, axis in ((conv, "kernel_size"), (res, "branch_scale")):
        if ds is not None and axis not in ds.dims:
            raise KeyError(axis)
    text, figures = [], []
    if conv is not None:
        depth, he = int(conv.depth.max()), nearest(conv.gain, SQRT2)
        channels_only = float(conv.gain.max())
        k = int(conv.kernel_size.max())

        def factor(net, variable="preact_meansq", first=1, last=depth):
            growth = ratio(mean_se(net[variable].sel(layer=last)), mean_se(net[variable].sel(layer=first)))
            return power(growth, 1.0 / (last - first))

        base = dict(activation="relu", depth=depth, kernel_size=k)
        flat = at(conv, **base, init="fan_in", profile="constant", gain=he)
        grow = at(conv, **base, init="fan_in", profile="constant", gain=channels_only)
        th_grow = at(theory_of(conv), **base, init="fan_in", profile="constant", gain=channels_only)
        theory_growth = float(th_grow.theory_preact_meansq.sel(layer=depth) / th_grow.theory_preact_meansq.sel(layer=1))
        rows, backward = [], {}
        for init in ("fan_in", "fan_out"):
            net = at(conv, **base, init=init, profile="alternating", gain=he)
            t = at(theory_of(conv), **base, init=init, profile="alternating", gain=he)
            fwd = ratio(mean_se(net.preact_meansq.sel(layer=depth)), mean_se(net.preact_meansq.sel(layer=1)))
            bwd = ratio(mean_se(net.grad_act_meansq.sel(layer=1)), mean_se(net.grad_act_meansq.sel(layer=depth)))
            backward[init] = (bwd, float(t.theory_grad_act_meansq.sel(layer=1) / t.theory_grad_act_meansq.sel(layer=depth)))
            t_fwd = float(t.theory_preact_meansq.sel(layer=depth) / t.theory_preact_meansq.sel(layer=1))
            rows.append([init, str(fwd), fmt(t_fwd),
                         str(bwd), fmt(float(t.theory_grad_act_meansq.sel(layer=1) / t.theory_grad_act_meansq.sel(layer=depth)))])
        dev = theory.deviation(conv, theory_of(conv))
        worst = max_deviation(dev, ["preact_meansq", "act_meansq", "grad_act_meansq", "grad_preact_meansq",
                               "grad_weight_meansq"], **base)
        width = int(conv.width.max())
        text.append(
            f"Conv nets: relu, {k}×{k} kernels, {width} channels (alternating {width}, {2 * width}, …) on "
            f"{' × '.join(map(str, spec_value(conv, 'spatial')))} images with circular padding, depth {depth}, "
            f"{conv.sizes['seed']} networks per setting.\n\n"
            f"- With He's fan k²c (fan_in, σ_w = √2) E[z_l²] changes by **{factor(flat)}** per layer (theory 1); "
            f"with the fan taken as the channels alone (σ_w = {fmt(channels_only)}, {k}² times the variance) by "
            f"**{factor(grow)}** per layer (theory "
            f"{fmt(theory_growth ** (1 / (depth - 1)))}). "
            "The taps are part of the fan.\n"
            "- With unequal channels, forward E[z_L²]/E[z_1²] and backward E[(∂ℓ/∂x_1)²]/E[(∂ℓ/∂x_L)²]:\n\n"
            + table(["init", "forward (measured)", "theory", "backward (measured)", "theory"], rows)
            + "\n\n  fan_in = k²c_in keeps the forward signal (He's eq. 10), fan_out = k²c_out the backward one "
            "(eq. 14): the two fans' backward ratios differ by "
            f"{fmt(backward['fan_in'][0].value / backward['fan_out'][0].value)} "
            f"(theory {fmt(backward['fan_in'][1] / backward['fan_out'][1])}), and both exceed their infinite-width values, "
            f"by {fmt(backward['fan_in'][0].value / backward['fan_in'][1])} and "
            f"{fmt(backward['fan_out'][0].value / backward['fan_out'][1])}: a finite-width effect at {width} channels "
            "that the per-position, infinite-width theory leaves out. Every conv statistic is within "
            f"{fmt(worst, 2)} standard errors of the per-position "
            "mean-field theory.\n")
        panels = [[{"profile": "constant", "gain": he}, {"profile": "constant", "gain": channels_only},
                   {"profile": "alternating", "gain": he}]]
        shown = conv.sel(base)
        figures.append(("conv", plots.per_layer(shown, "preact_meansq", panels, [{"init": "fan_in"}, {"init": "fan_out"}],
                                                r"$E[z_l^2]$ per position"),
                        "Conv nets: E[z_l²] per layer under He's k²c fan, the channel-only fan, and alternating "
                        "channels; median over networks, band 16–84%, theory dashed."))
    if res is not None:
        depth, width = int(res.depth.max()), int(res.width.max())
        rows = []
        for init in ("fan_in", "fixup"):
            for alpha in res.branch_scale.values:
                net = at(res, activation="relu", init=init, depth=depth, branch_scale=float(alpha))
                t = at(theory_of(res), activation="relu", init=init, depth=depth, branch_scale=float(alpha))
                last = ratio(mean_se(net.stream_meansq.sel(layer=depth)), mean_se(net.stream_meansq.sel(layer=1)))
                grad = ratio(mean_se(net.grad_stream_meansq.sel(layer=1)), mean_se(net.grad_stream_meansq.sel(layer=depth)))
                rows.append([init, fmt(float(alpha)), str(last),
                             fmt(float(t.theory_stream_meansq.sel(layer=depth) / t.theory_stream_meansq.sel(layer=1))),
                             str(grad),
                             fmt(float(t.theory_grad_stream_meansq.sel(layer=1) / t.theory_grad_stream_meansq.sel(layer=depth)))])
        dev = theory.deviation(res, theory_of(res))
        worst = max_deviation(dev, ["stream_meansq", "grad_stream_meansq"], activation="relu", depth=depth)
        text.append(
            f"Residual nets: relu, {depth} blocks x_l = x_(l−1) + α (W₂ φ(W₁ φ(x_(l−1)))), stream width {width}, "
            f"He branches (fan_in, σ_w = √2) or Fixup, {res.sizes['seed']} networks per setting. Stream growth over "
            f"the blocks, E[x_L²]/E[x_1²], and the stream gradient's E[(∂ℓ/∂x_1)²]/E[(∂ℓ/∂x_L)²]:\n\n"
            + table(["init", "α", "forward (measured)", "theory", "backward (measured)", "theory"], rows)
            + f"\n\nUnder He branches each block multiplies the stream's second moment by 1 + α² (each of the "
            "branch's two relus halves it): fan-in scaling of the branches does not make the network stable, the "
            "branch scale must. α = 1/√L keeps the growth below (1 + 1/L)^L < e over the whole depth, Fixup starts "
            "every branch at zero and α = 0 is the identity. Every stream statistic is within "
            f"{fmt(worst, 2)} standard errors of the mean-field recursion.\n")
        panels = [[{"init": "fan_in"}, {"init": "fixup"}]]
        lines = [{"branch_scale": float(a)} for a in res.branch_scale.values]
        figures.append(("residual", plots.per_layer(res.sel(activation="relu", depth=depth), "stream_meansq", panels,
                                                    lines, r"$E[x_l^2]$, stream"),
                        "Residual stream second moment per block under He branches and Fixup, one line per branch "
                        "scale α; median over networks, band 16–84%, theory dashed."))
    if len(deep) == 2:
        prose, figure = trainability(deep["plain"], deep["residual"])
        text.append(prose)
        figures.append(figure)
    return Section("families", "8. Convolutions and residual networks", "\n".join(text), figures)


def trainability(plain: xr.Dataset, residual: xr.Dataset) -> tuple[str, tuple]:
    """Deep plain against deep residual nets trained alike: the prose and its figure.

    Args:
      plain: a training store of plain networks, one setting but ``learning_rate`` and ``seed``.
      residual: the same of residual networks, of the same depth.

    Returns:
      ``(text, (name, figure, caption))``.
    """
    nets = {"plain": plain.squeeze(drop=True), "residual": residual.squeeze(drop=True)}
    for name, ds in nets.items():
        extra = set(ds.test_accuracy.dims) - {"learning_rate", "seed", "eval_step"}
        if extra:
            raise KeyError(f"deep_{name} has more than one setting along {sorted(extra)}")
    depth = int(plain.depth.max())
    steps = int(plain.eval_step.max())
    rows, best = [], {}
    for name, ds in nets.items():
        final = ds.test_accuracy.sel(eval_step=steps)
        medians = final.median("seed")
        best[name] = float(medians.idxmax("learning_rate")) if bool(np.isfinite(medians).any()) else None
        for lr in ds.learning_rate.values:
            one = ds.sel(learning_rate=lr)
            reached = int(np.isfinite(one.steps_to_target).sum())
            rows.append([name, fmt(float(lr)), str(mean_se(one.test_accuracy.sel(eval_step=steps))),
                         str(mean_se(one.test_loss.sel(eval_step=steps))),
                         f"{reached} of {one.sizes['seed']}", int(one.diverged.sum())])
    stream = nets["residual"].init_stream_meansq
    growth = {"residual": ratio(mean_se(stream.sel(layer=depth)), mean_se(stream.sel(layer=1))),
              "plain": ratio(mean_se(nets["plain"].init_preact_meansq.sel(layer=depth)),
                             mean_se(nets["plain"].init_preact_meansq.sel(layer=1)))}
    alpha = float(residual.branch_scale.max()) * depth ** float(spec_value(residual, "branch_depth_exponent") or 0.0)
    at_best = {name: mean_se(nets[name].test_accuracy.sel(eval_step=steps, learning_rate=best[name]))
               if best[name] is not None else None for name in nets}
    if None in at_best.values():
        verdict = "Some networks have no finite accuracy at any learning rate; the comparison is not made."
    else:
        diff = at_best["residual"].value - at_best["plain"].value
        se = math.hypot(at_best["residual"].se, at_best["plain"].se)
        if abs(diff) <= 3 * se:
            verdict = (f"The two differ by {fmt(diff, 2)} ± {fmt(se, 2)} in accuracy at their best learning rates, "
                       "within 3 standard errors: at this depth and budget, training does not tell them apart.")
        else:
            better = "residual" if diff > 0 else "plain"
            verdict = (f"The {better} net is better by {fmt(abs(diff), 2)} ± {fmt(se, 2)} in accuracy at the two "
                       f"best learning rates ({fmt(abs(diff) / se, 2)} standard errors).")
            if better == "residual":
                verdict += (" Both start with a bounded forward signal (above); what differs is the residual net's "
                            "identity path around every block: a stable forward signal alone does not make a deep net "
                            "trainable.")
    target = float(plain.attrs["target_loss"])
    text = (
        f"Trained from the init: relu, {depth} layers of width {int(plain.width.max())} under He init (fan_in, "
        f"σ_w = √2), against {depth} residual blocks of stream and inner width {int(residual.width.max())} with "
        f"He branches and α = {fmt(alpha)} (1/√L), each read out by a linear layer; "
        f"{spec_value(plain, 'optimizer') or 'sgd'} on {plain.attrs.get('dataset', spec_value(plain, 'dataset'))}, "
        f"batch {spec_value(plain, 'batch')}, {steps} steps, {plain.sizes['seed']} networks per learning rate. "
        f"At init (the statistics kernel on Gaussian inputs), the plain net's E[z_L²]/E[z_1²] is {growth['plain']} "
        f"and the residual stream's E[x_L²]/E[x_1²] is {growth['residual']}. "
        f"Test accuracy and loss after {steps} steps (mean ± SE over networks), networks whose training loss fell "
        f"below {fmt(target)} (half the constant predictor's), and diverged networks:\n\n"
        + table(["network", "learning rate", "test accuracy", "test loss", "reached target", "diverged"], rows)
        + f"\n\nAt its best learning rate (by median) the residual net reaches a test accuracy of "
        f"{at_best['residual']} (learning rate {fmt(best['residual'] or float('nan'))}), the plain net "
        f"{at_best['plain']} (learning rate {fmt(best['plain'] or float('nan'))}). {verdict}\n")
    fig = plots.family_training({name: ds.test_accuracy for name, ds in nets.items()}, best)
    return text, ("deep_training", fig, f"Test accuracy while training {depth}-layer plain and {depth}-block residual "
                                        "nets: left, at each one's best learning rate (median over networks, band "
                                        "16–84%); right, after the last step against the learning rate.")
