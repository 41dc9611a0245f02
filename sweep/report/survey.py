"""What a store holds, and the label selections a report or a single figure makes from it.

A report of any sweep starts here: the grid axes and their labels, which of them vary,
which measured and theory variables are present, and the default selection that fixes the
axes a figure does not show (the deepest and widest networks, the first profile, the
smallest bias). Selections are label-based throughout; ``parse_selection`` turns
``key=value`` strings from the command line into labels of the store, or a one-line error.
"""

from __future__ import annotations

import decimal
import json
from typing import NamedTuple

import numpy as np
import xarray as xr

from sweep.config import ALL_GRID_AXES
from sweep.errors import SpecError


class Survey(NamedTuple):
    """One store, as the report sees it.

    Attributes:
      name: the spec's name.
      kind: ``"stats"`` or ``"train"``.
      ds: the dataset, opened lazily.
      spec: the stored spec, as a dict.
      axes: the grid axes present, in storage order.
      varying: the grid axes with more than one label.
    """

    name: str
    kind: str
    ds: xr.Dataset
    spec: dict
    axes: tuple[str, ...]
    varying: tuple[str, ...]

    def has(self, *variables: str) -> bool:
        """Whether every named variable is stored."""
        return all(v in self.ds.data_vars for v in variables)

    def has_theory(self, variable: str) -> bool:
        """Whether the store holds ``theory_<variable>`` beside ``variable``."""
        return self.has(variable, f"theory_{variable}")

    def size(self, axis: str) -> int:
        """Number of labels along ``axis`` (0 when the store has no such axis)."""
        return int(self.ds.sizes.get(axis, 0))


def survey(ds: xr.Dataset) -> Survey:
    """Reads a store's layout from its coordinates and spec attribute.

    Of a residual store the per-layer points see block l's first branch layer (``branch_layer``
    1, whose statistics are all defined); the stream's variables stay as they are.
    """
    spec = json.loads(ds.attrs["spec"])
    kind = spec.get("kind", "stats")
    if "branch_layer" in ds.dims:  # residual: the layer points read each block's first branch layer
        ds = ds.sel(branch_layer=1)
    candidates = ALL_GRID_AXES + (("learning_rate",) if kind == "train" else ())
    axes = tuple(a for a in candidates if a in ds.dims)
    varying = tuple(a for a in axes if ds.sizes[a] > 1)
    return Survey(spec["name"], kind, ds, spec, axes, varying)


def default_selection(s: Survey, keep: tuple[str, ...] = ()) -> dict:
    """Labels for the axes a figure does not show: largest depth, width, kernel size and branch scale, first
    profile (``constant`` where present), smallest bias std, first learning rate, first parametrisation
    (``standard`` where present).

    Args:
      s: the store.
      keep: axes left free (they are the figure's panels or lines).

    Returns:
      ``{axis: label}`` for every fixed axis with more than one label.
    """
    ds, sel = s.ds, {}
    rules = {
        "depth": lambda c: c.max(),
        "width": lambda c: c.max(),
        "kernel_size": lambda c: c.max(),
        "branch_scale": lambda c: c.max(),
        "profile": lambda c: "constant" if "constant" in c else c[0],
        "bias_std": lambda c: c.min(),
        "learning_rate": lambda c: c[0],
        "parametrization": lambda c: "standard" if "standard" in c else c[0],
    }
    for axis, rule in rules.items():
        if axis in s.varying and axis not in keep:
            sel[axis] = _label(rule(ds[axis].values))
    return sel


def at(ds: xr.Dataset, sel: dict) -> xr.Dataset:
    """``ds.sel(sel)`` with every grid axis of length one squeezed to a scalar coordinate."""
    one = ds.sel(sel)
    axes = [a for a in ALL_GRID_AXES + ("learning_rate",) if a in one.dims and one.sizes[a] == 1]
    return one.squeeze(axes)


def critical_gain_label(ds: xr.Dataset, activation: str, bias_std: float) -> float:
    """The stored gain nearest theory's critical gain of ``activation`` at ``bias_std``."""
    from sweep import theory

    target = theory.critical_gain(activation, float(bias_std))
    gains = np.asarray(ds["gain"].values, float)
    if not np.isfinite(target):
        return float(gains[len(gains) // 2])
    return float(gains[np.argmin(np.abs(gains - target))])


def selected_gains(ds: xr.Dataset, activation: str, bias_std: float) -> list[float]:
    """The smallest gain, the one nearest the critical gain, and the largest (distinct, ascending)."""
    gains = np.asarray(ds["gain"].values, float)
    picks = {float(gains.min()), critical_gain_label(ds, activation, bias_std), float(gains.max())}
    return sorted(picks)


def describe_selection(sel: dict) -> str:
    """``depth 16, width 64, profile constant`` for the text, in axis order."""
    return ", ".join(f"{k} {format_label(v)}" for k, v in sel.items()) or "the whole grid"


def format_label(value) -> str:
    """A coordinate label as the report prints it: floats to six significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def parse_selection(ds: xr.Dataset, items: list[str]) -> dict:
    """``["gain=1.414", "activation=relu"]`` → labels of ``ds``.

    A numeric value selects the label equal to it, or else the one label within the rounding
    of the digits given (``1.414`` selects √2), so labels can be typed as ``sweep show`` prints them.

    Raises:
      SpecError: for ``--sel`` when an item is not ``key=value``, the key is not an axis of
        the store, or the value is not one of its labels; the message lists what the store holds.
    """
    sel = {}
    for item in items:
        key, eq, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key:
            raise SpecError("--sel", f"{item!r} is not key=value")
        axes = [a for a in ALL_GRID_AXES + ("learning_rate",) if a in ds.dims]
        if key not in axes:
            raise SpecError(f"--sel {key}", f"not an axis of this store; it has {', '.join(axes)}")
        labels = ds[key].values
        sel[key] = _match(key, text, labels)
    return sel


def _match(key: str, text: str, labels: np.ndarray):
    shown = ", ".join(format_label(_label(v)) for v in labels)
    if labels.dtype.kind in "US O":
        if text in [str(v) for v in labels]:
            return text
        raise SpecError(f"--sel {key}", f"{text!r} is not a label; the store holds {shown}")
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"--sel {key}", f"{text!r} is not a number; the store holds {shown}") from None
    tolerance = 0.5 * 10.0 ** decimal.Decimal(text).as_tuple().exponent  # half a unit of the last digit typed
    close = [v for v in labels.astype(float) if abs(v - value) < tolerance]
    exact = [v for v in close if abs(v - value) <= 1e-9 * max(1.0, abs(value))]
    close = exact or close
    if len(close) != 1:
        raise SpecError(f"--sel {key}", f"{text!r} matches {len(close)} labels; the store holds {shown}")
    return _label(close[0] if labels.dtype.kind == "f" else int(round(close[0])))


def _label(value):
    return value.item() if isinstance(value, np.generic) else value
