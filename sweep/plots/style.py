"""One figure style for every plot: single-column size, readable fonts, vector and raster output."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
PALETTE = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8c564b", "#444444")

RC = {
    "figure.figsize": (COLUMN_WIDTH, 2.6),
    "figure.dpi": 110,
    "savefig.dpi": 220,
    "savefig.bbox": "tight",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
}


@contextlib.contextmanager
def style():
    """Applies the project's matplotlib style inside a ``with`` block."""
    with plt.rc_context(RC):
        yield


def styled(fn):
    """Runs a figure function entirely inside ``style()``, so legends and labels get the style too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)

    return wrapper


def sequential(n: int):
    """``n`` colours along a perceptually uniform map, for ordered values such as gains."""
    return [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.9, n)]


def figure(rows: int = 1, cols: int = 1, height: float = 2.4, width: float = COLUMN_WIDTH, **kw):
    """A figure with the project's size conventions; ``height`` is per row of panels."""
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False,
                                 constrained_layout=True, **kw)
    return fig, axes


def save(fig, path: str | Path, formats: tuple[str, ...] = (".pdf", ".png")) -> list[Path]:
    """Saves ``fig`` as ``path``.pdf (vector) and ``path``.png (or the ``formats`` given), then closes it.

    Returns:
      The two paths written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with style():
        for suffix in formats:
            target = path.with_suffix(suffix)
            fig.savefig(target)
            written.append(target)
    plt.close(fig)
    return written
