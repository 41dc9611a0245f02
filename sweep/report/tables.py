"""The report's tables: each row selected by label, each number a stated reduction of the store.

Every table records the kind of reduction and the labels it fixed, in an HTML comment above
the Markdown (invisible when rendered), so anyone can recompute each number from the store:

- ``agreement``: per row, ``measured`` is the mean ± standard error over seeds (finite values)
  of ``variable`` at ``layer``; ``theory`` is ``theory_<variable>`` there; ``dev (SE)`` is
  their difference in standard errors; ``✗`` marks |dev| beyond the Bonferroni threshold of
  the table's rows (two-sided, family-wise level 5%).
- ``levels``: ``level`` is the mean ± standard error over seeds of the per-network mean over
  layers of ``grad_weight_meansq``; ``theory`` the mean over layers of its theory;
  ``max/min`` the ratio of the largest to the smallest seed-mean over layers.
- others are described where they are built.
"""

from __future__ import annotations

import json
import statistics
from typing import NamedTuple

import numpy as np
import xarray as xr

from sweep.report.numbers import fmt, format_estimate
from sweep.report.survey import at, format_label

FAMILY_LEVEL = 0.05  # family-wise error rate of each agreement table


class Table(NamedTuple):
    """A Markdown table with the facts needed to recompute it.

    Attributes:
      kind: the reduction (``agreement``, ``levels``, ...).
      selection: labels fixed for every row.
      header: column names; label columns are named by their axis.
      rows: cells, already formatted.
    """

    kind: str
    selection: dict
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        meta = json.dumps({"table": self.kind, "selection": self.selection})
        lines = [f"<!-- {meta} -->", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


def bonferroni_threshold(comparisons: int, level: float = FAMILY_LEVEL) -> float:
    """|z| beyond which one of ``comparisons`` two-sided normal tests rejects at family level ``level``."""
    return statistics.NormalDist().inv_cdf(1.0 - level / (2.0 * max(comparisons, 1)))


def seed_mean_se(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Mean over ``seed`` of the finite values, and its standard error std(ddof=1)/√count."""
    da = da.where(np.isfinite(da))
    count = da.count("seed")
    return da.mean("seed"), da.std("seed", ddof=1) / np.sqrt(count)


def agreement(ds: xr.Dataset, variables: list[str], rows: list[dict], selection: dict,
              layers_of=lambda row: None) -> tuple[Table, int]:
    """Measurement against theory, one row per (grid selection, variable, layer).

    Args:
      ds: the store (lazy), with ``theory_*`` variables.
      variables: measured statistics that have a theory.
      rows: label selections, one per group of rows; with ``selection`` they fix every grid axis
        but ``seed`` and ``layer``.
      selection: labels fixed for the whole table.
      layers_of: the layers to show for a row selection (default: 1 and the network's depth).

    Returns:
      The table and the number of rows beyond the Bonferroni threshold.
    """
    label_axes = list(rows[0]) if rows else []
    ds = ds.sel(selection)[variables + [f"theory_{v}" for v in variables]].load()
    entries = []
    for row in rows:
        one = at(ds, row)
        depth = int(one["depth"]) if one["depth"].ndim == 0 else int(ds["layer"].max())
        layers = layers_of(row) or sorted({1, depth})
        for variable in variables:
            sub = one[[variable, f"theory_{variable}"]].sel(layer=layers).load()
            mean, se = seed_mean_se(sub[variable])
            for layer in layers:
                m, s = float(mean.sel(layer=layer)), float(se.sel(layer=layer))
                t = float(sub[f"theory_{variable}"].sel(layer=layer))
                entries.append((row, variable, layer, m, s, t))
    threshold = bonferroni_threshold(len(entries))
    cells, beyond = [], 0
    for row, variable, layer, m, s, t in entries:
        dev = (m - t) / s if s > 0 else float("nan")
        flag = "✗" if np.isfinite(dev) and abs(dev) > threshold else ""
        beyond += bool(flag)
        cells.append([format_label(row[a]) for a in label_axes]
                     + [variable, layer, format_estimate(m, s), fmt(t, 4), fmt(dev, 3), flag])
    header = label_axes + ["variable", "layer", "measured", "theory", "dev (SE)", f"beyond {threshold:.2f}"]
    return Table("agreement", selection, header, cells), beyond


def levels(ds: xr.Dataset, rows: list[dict], selection: dict) -> Table:
    """The weight-gradient level per row selection (see the module docstring)."""
    label_axes = list(rows[0]) if rows else []
    ds = ds.sel(selection)[[v for v in ("grad_weight_meansq", "theory_grad_weight_meansq") if v in ds]].load()
    cells = []
    for row in rows:
        one = at(ds, row)
        depth = int(one["depth"]) if one["depth"].ndim == 0 else None
        w = one["grad_weight_meansq"].sel(layer=slice(1, depth)).load()
        mean, se = seed_mean_se(w.mean("layer"))
        per_layer = w.where(np.isfinite(w)).mean("seed")
        theory = one["theory_grad_weight_meansq"].sel(layer=slice(1, depth)).mean("layer") \
            if "theory_grad_weight_meansq" in one else None
        cells.append([format_label(row[a]) for a in label_axes]
                     + [format_estimate(float(mean), float(se)), fmt(float(theory), 4) if theory is not None else "n/a",
                        fmt(float(per_layer.max() / per_layer.min()), 4)])
    return Table("levels", selection, label_axes + ["level", "theory", "max/min"], cells)
