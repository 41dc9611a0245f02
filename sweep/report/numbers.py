"""Numbers with uncertainties, computed from datasets and formatted for the report."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import xarray as xr


class Estimate(NamedTuple):
    """A measured value and its standard error."""

    value: float
    se: float

    def __str__(self) -> str:
        return format_estimate(self.value, self.se)


def mean_se(da: xr.DataArray, dim: str = "seed") -> Estimate:
    """Mean over ``dim`` (finite values only) and its standard error std/√count."""
    values = np.asarray(da.values, float).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return Estimate(float("nan"), float("nan"))
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)))


def ratio(a: Estimate, b: Estimate) -> Estimate:
    """a/b with the first-order error of independent estimates (conservative when they correlate positively)."""
    r = a.value / b.value
    return Estimate(r, abs(r) * math.sqrt((a.se / a.value) ** 2 + (b.se / b.value) ** 2))


def power(a: Estimate, p: float) -> Estimate:
    """a^p with its first-order error."""
    v = a.value**p
    return Estimate(v, abs(p * v * a.se / a.value))


def format_estimate(value: float, se: float) -> str:
    """``1.234 ± 0.005`` with the error to two significant digits and the value to match."""
    if not np.isfinite(value):
        return "n/a"
    if not np.isfinite(se) or se == 0:
        return f"{value:.4g}"
    digits = max(0, 1 - int(math.floor(math.log10(abs(se)))))
    if abs(value) >= 1e5 or (abs(value) < 1e-3 and value != 0):
        return f"{value:.3e} ± {se:.1e}"
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def fmt(x: float, digits: int = 3) -> str:
    """A plain number to ``digits`` significant digits."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bonferroni_z(tests: int, alpha: float = 1e-3) -> float:
    """The two-sided z beyond which one of ``tests`` comparisons fails, family-wise error ``alpha`` (Bonferroni)."""
    from scipy import stats

    return float(stats.norm.isf(alpha / (2 * tests)))


def nearest(values, target: float) -> float:
    """The coordinate value nearest ``target`` (for gains such as √2 stored as floats)."""
    values = np.asarray(values, float)
    return float(values[np.argmin(np.abs(values - target))])


def width_slope(da: xr.DataArray, finite_width: bool = True) -> Estimate:
    """The exponent b of a size that scales like width^b, from networks of several widths.

    Each seed's values are fitted by least squares as log y = a + b log n (+ c / n with
    ``finite_width``) over the widths n; the estimate is the mean of the seeds' b and its
    standard error their standard deviation over √seeds. Networks of different widths are
    independent, so the seeds' fits are too. The c/n term takes up the O(1/n) finite-width
    correction every size has (at init, in every parametrisation), which a fit of log y on
    log n alone reads as a small exponent.

    Args:
      da: positive values with dims ``(width, seed)`` (other dims selected away); at least
        three widths with ``finite_width``, two without.
      finite_width: fit the c / n term.

    Returns:
      The exponent b and its standard error.
    """
    da = da.transpose("width", "seed")
    n = np.asarray(da.width.values, float)
    columns = [np.ones_like(n), np.log(n)] + ([1 / n] if finite_width else [])
    if n.size < len(columns):
        raise ValueError(f"a width slope needs at least {len(columns)} widths, got {n.size}")
    coef = np.linalg.lstsq(np.stack(columns, 1), np.log(np.asarray(da.values, float)), rcond=None)[0]
    b = coef[1][np.isfinite(coef[1])]
    if b.size < 2:
        return Estimate(float("nan"), float("nan"))
    return Estimate(float(b.mean()), float(b.std(ddof=1) / math.sqrt(b.size)))
