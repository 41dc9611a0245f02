"""An independent recomputation of every table in a report.md from the stores it was built from.

Each table carries its kind and fixed labels in the HTML comment above it; this module parses
the Markdown, selects each row by label from the store and recomputes every number with numpy,
without the report's own code, and returns the cells that do not match within their rounding.
"""

from __future__ import annotations

import json
import re
import statistics

import numpy as np
import xarray as xr

from sweep import theory

GRID = ("activation", "init", "profile", "depth", "width", "kernel_size", "branch_scale", "parametrization", "gain",
        "bias_std", "learning_rate")


def tables(markdown: str) -> list[tuple[dict, list[str], list[list[str]]]]:
    """``(meta, header, rows)`` of every table, in order."""
    found = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- (\{.*\}) -->", line)
        if not m:
            continue
        header = [c.strip() for c in lines[i + 1].strip("|").split("|")]
        rows, j = [], i + 3
        while j < len(lines) and lines[j].startswith("|"):
            rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
            j += 1
        found.append((json.loads(m.group(1)), header, rows))
    return found


def within_rounding(text: str, value: float) -> bool:
    """Whether ``text`` is ``value`` printed to the digits it shows."""
    if text == "n/a":
        return not np.isfinite(value)
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return abs(float(text) - value) <= 0.5 * unit * (1 + 1e-6) + 1e-300


def estimate_ok(text: str, mean: float, se: float) -> bool:
    if text == "n/a":
        return not np.isfinite(mean)
    if "±" not in text:  # an exact value: every network agrees
        return se == 0 and within_rounding(text, mean)
    a, b = (t.strip() for t in text.split("±"))
    return within_rounding(a, mean) and within_rounding(b, se)


def select(ds: xr.Dataset, labels: dict) -> xr.Dataset:
    """Label selection; a printed float selects the nearest label, which must round to it."""
    exact, nearest = {}, {}
    if "branch_layer" in ds.dims:  # a residual store's layer tables are of each block's first branch layer
        ds = ds.sel(branch_layer=1)
    for key, value in labels.items():
        if key not in ds.dims:
            continue
        if ds[key].dtype.kind == "f":
            v = float(value)
            label = float(ds[key].sel({key: v}, method="nearest"))
            assert abs(label - v) <= 1e-5 * max(1.0, abs(v)), (key, value)
            nearest[key] = label
        elif ds[key].dtype.kind in "iu":
            exact[key] = int(value)
        else:
            exact[key] = str(value)
    one = ds.sel({**exact, **nearest})
    return one.squeeze([a for a in GRID if a in one.dims and one.sizes[a] == 1])


def seed_stats(values) -> tuple[float, float]:
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def mismatches(markdown: str, ds: xr.Dataset) -> list[str]:
    """Every table cell of ``markdown`` that the store ``ds`` does not reproduce."""
    bad = []
    for meta, header, rows in tables(markdown):
        check = CHECKS[meta["table"]]
        for row in rows:
            cells = dict(zip(header, row))
            bad += [f"{meta['table']} {row}: {what}" for what in check(ds, meta["selection"], header, cells, len(rows))]
    return bad


def _agreement(ds, selection, header, cells, n_rows):
    labels = {k: cells[k] for k in header[:header.index("variable")]}
    one = select(select(ds, selection), labels)
    variable, layer = cells["variable"], int(cells["layer"])
    mean, se = seed_stats(one[variable].sel(layer=layer).values)
    t = float(one[f"theory_{variable}"].sel(layer=layer))
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = float(np.float64(mean - t) / np.float64(se))  # n/a where a statistic is exactly zero
    threshold = statistics.NormalDist().inv_cdf(1 - 0.05 / (2 * n_rows))
    out = []
    if not estimate_ok(cells["measured"], mean, se):
        out.append(f"measured {mean} ± {se}")
    if not within_rounding(cells["theory"], t):
        out.append(f"theory {t}")
    if not within_rounding(cells["dev (SE)"], dev):
        out.append(f"dev {dev}")
    flag_column = header[-1]
    if not within_rounding(flag_column.split()[-1], threshold):
        out.append(f"threshold {threshold}")
    if (cells[flag_column] == "✗") != (abs(dev) > threshold):
        out.append("flag")
    return out


def _levels(ds, selection, header, cells, n_rows):
    labels = {k: cells[k] for k in header[:header.index("level")]}
    one = select(select(ds, selection), labels)
    depth = int(one["depth"])
    w = one["grad_weight_meansq"].sel(layer=slice(1, depth)).values  # (seed, layer)
    mean, se = seed_stats(np.nanmean(np.where(np.isfinite(w), w, np.nan), axis=1))
    per_layer = np.nanmean(np.where(np.isfinite(w), w, np.nan), axis=0)
    t = float(one["theory_grad_weight_meansq"].sel(layer=slice(1, depth)).mean())
    out = []
    if not estimate_ok(cells["level"], mean, se):
        out.append(f"level {mean} ± {se}")
    if not within_rounding(cells["theory"], t):
        out.append(f"theory {t}")
    if not within_rounding(cells["max/min"], per_layer.max() / per_layer.min()):
        out.append("max/min")
    return out


def _critical(ds, selection, header, cells, n_rows):
    one = select(ds, {**selection, "activation": cells["activation"], "bias_std": cells["bias_std"]})
    depths = one["grad_preact_meansq"]
    first = np.nanmedian(depths.sel(layer=1).transpose("seed", "gain").values, axis=0)
    last = np.nanmedian(depths.sel(layer=int(selection["depth"])).transpose("seed", "gain").values, axis=0)
    gains = one["gain"].values
    growth = np.log10(first / last)
    measured = float("nan")
    for i in range(len(gains) - 1):
        if growth[i] <= 0 < growth[i + 1]:
            measured = gains[i] - growth[i] * (gains[i + 1] - gains[i]) / (growth[i + 1] - growth[i])
            break
    out = []
    if not within_rounding(cells["theory"], theory.critical_gain(cells["activation"], float(cells["bias_std"]))):
        out.append("theory")
    if not within_rounding(cells["measured"], measured):
        out.append(f"measured {measured}")
    return out


def _spread(ds, selection, header, cells, n_rows):
    one = select(ds, {**selection, "width": cells["width"], "depth": cells["depth"]})
    depth = int(cells["depth"])
    x = one["act_meansq"].sel(layer=depth).values
    y = np.log(x[x > 0])
    n = y.size
    var = y.var(ddof=1)
    m4 = ((y - y.mean()) ** 4).mean()
    se = np.sqrt(max((m4 - var**2 * (n - 3) / (n - 1)) / n, 0))
    widths = one["layer_width"].values
    inverse = (1.0 / widths[widths > 0]).sum()
    out = []
    if not within_rounding(cells["Σ1/n"], inverse):
        out.append("Σ1/n")
    if not estimate_ok(cells["measured"], var, se):
        out.append(f"measured {var} ± {se}")
    if "exact law" in cells:
        t = float(one["theory_log_act_norm_var"].sel(layer=depth))
        if not within_rounding(cells["exact law"], t) or not within_rounding(cells["dev (SE)"], (var - t) / se):
            out.append("exact law")
    return out


def _spectra(ds, selection, header, cells, n_rows):
    one = select(ds, {**selection, **{k: cells[k] for k in ("activation", "init", "gain", "depth")}})
    sq = one["jacobian_singular_values"].values ** 2  # (seed, singular_value)
    mean = seed_stats(np.nanmean(sq, axis=1))
    var = seed_stats(np.nanvar(sq, axis=1))
    out = []
    if not estimate_ok(cells["mean σ²"], *mean):
        out.append(f"mean {mean}")
    if not estimate_ok(cells["variance of σ²"], *var):
        out.append(f"variance {var}")
    return out


def _final(ds, selection, header, cells, n_rows):
    selection = dict(selection)
    metric = selection.pop("metric")
    one = select(ds, {**selection, "depth": cells["depth"]})
    out = []
    for gain in header[1:]:
        values = select(one, {"gain": gain})[metric].isel(eval_step=-1).values
        if not within_rounding(cells[gain], float(np.median(values))):
            out.append(f"gain {gain}")
    return out


def _coord_check(ds, selection, header, cells, n_rows):
    one = select(ds, selection)
    if "parametrization" in one.dims:
        one = one.sel(parametrization=cells["parametrisation"])
    one = one.sel(coord_step=int(cells["steps"]))
    if cells["layer"] == "readout":
        values = one["coord_output_abs_mean"]
    else:
        values = one["coord_act_abs_mean"].sel(layer=int(cells["layer"]))
    values = values.squeeze(drop=True).transpose("width", "seed")
    n = values.width.values.astype(float)
    design = np.stack([np.ones_like(n), np.log(n), 1 / n], axis=1)
    exponents = np.linalg.lstsq(design, np.log(values.values.astype(float)), rcond=None)[0][1]
    mean, se = seed_stats(exponents)
    return [] if estimate_ok(cells["exponent b"], mean, se) else [f"exponent {mean} ± {se}"]


CHECKS = {"agreement": _agreement, "levels": _levels, "critical": _critical, "spread": _spread,
          "spectra": _spectra, "final": _final, "coord_check": _coord_check}
