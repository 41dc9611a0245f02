"""Point 10: the coordinate check, standard against μP, from the ``coord_check`` store."""

from __future__ import annotations

import itertools

import xarray as xr

from sweep import plots
from sweep.plots.bands import label_gain
from sweep.report.coordinates import READOUT, slopes
from sweep.report.numbers import fmt, table
from sweep.report.sections import Section
from sweep.report.selection import spec_value


def coord_check(results: dict) -> Section | None:
    """Standard against μP across widths: the table of slopes, the readout's growth, and the figure."""
    ds = results.get("coord_check")
    if ds is None:
        return None
    ds = ds.load()
    fitted, plain = slopes(ds), slopes(ds, finite_width=False)
    names = ds.parametrization.values.tolist()
    steps = [s for s in ds.coord_step.values.tolist() if 1 <= s <= 3]
    layers = ds.layer.values.tolist() + [READOUT]
    rows = [[name, str(step)] + [str(fitted.get((name, step, layer), "n/a")) for layer in layers]
            for name, step in itertools.product(names, steps)]
    flat = [fitted[key] for key in fitted if key[0] == "mup" and key[1] in steps]
    worst = max(abs(e.value) / e.se for e in flat)
    readout_one = fitted["standard", steps[0], READOUT]
    hidden = [e for (name, step, layer), e in fitted.items() if name == "standard" and step == steps[-1]
              and layer != READOUT]
    init_plain = max((plain[key] for key in plain if key[1] == 0), key=lambda e: abs(e.value) / e.se)
    init_fitted = max((fitted[key] for key in fitted if key[1] == 0), key=lambda e: abs(e.value) / e.se)
    widths = ds.width.values.tolist()
    zero_start = spec_value(ds, "readout_init") == "zero"
    lr = float(ds.learning_rate.values.ravel()[0])
    text = (
        f"The `mup` package's coordinate check on the engine: {_labels(ds, 'activation')} networks of depth "
        f"{_labels(ds, 'depth')}, init {_labels(ds, 'init')} with σ_w = {_labels(ds, 'gain')}, trained on "
        f"{spec_value(ds, 'dataset') or 'mnist1d'} with {spec_value(ds, 'optimizer') or 'sgd'} at one learning rate "
        f"η = {lr:g} in {' and '.join(names)}, base width {spec_value(ds, 'base_width')}, the readout starting at "
        f"{'zero' if zero_start else 'its normal draw'}; widths {', '.join(map(str, widths))}, "
        f"{ds.sizes['seed']} networks each. For every layer, the "
        f"mean |x_l| on one fixed batch after each step, and the readout's mean |f(x)|; below, the exponent b of "
        f"size ∝ width^b, fitted per network seed as log size = a + b log n + c/n and given as mean ± standard error "
        f"over the {ds.sizes['seed']} seeds:\n\n"
        + table(["parametrisation", "steps"] + [f"layer {layer}" if layer != READOUT else "readout" for layer in layers],
                rows)
        + f"\n\nUnder μP every exponent, hidden layers and readout after 1 to {steps[-1]} steps, is within "
        f"{fmt(worst, 2)} standard errors of 0 ({len(flat)} exponents): its updates do not grow or shrink with "
        f"width. Under the standard parametrisation the readout after one step grows like "
        f"width^{readout_one.value:.2f} (± {fmt(readout_one.se, 2)})"
        + (": from a zero readout the first step moves output b by −η Σ_b' (x_L,b · x_L,b') e_b' / B, e the loss's "
           "output gradient, and x_L,b · x_L,b' grows like n" if zero_start else "")
        + f"; after {steps[-1]} steps the hidden layers' exponents are {', '.join(str(e) for e in hidden)}: that "
        "readout's feedback on the layers below. At init (0 steps) both parametrisations are the same network, and "
        f"the init keeps every layer's size flat in width: the largest exponent is {init_fitted} with the c/n term, "
        f"{init_plain} without it, the O(1/n) finite-width correction a fit of log size on log n alone reads as an "
        "exponent. The init fixes the scale of the signal at init; how that scale moves with width in training is "
        "the parametrisation's, and the learning rate's, business.\n"
    )
    fig = plots.coord_check(ds)
    return Section("coord_check", "10. Width and the first steps: standard against μP", text,
                   [("coord_check", fig, "Mean |x_l| (layers, colour) and mean |f(x)| (readout, black) against "
                                         "width after 0–3 SGD steps; median and 16–84% over seeds.")])


def _labels(ds: xr.Dataset, axis: str) -> str:
    """The store's labels of ``axis``, joined (gains near √2 as √2)."""
    values = ds[axis].values.ravel().tolist()
    return ", ".join(label_gain(v) if axis == "gain" else str(v) for v in values)
