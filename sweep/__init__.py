"""sweep: what random initialisation does to the signals and gradients of deep networks.

A vmapped, jit-compiled JAX kernel draws thousands of random networks at once across grids of
depth, width, gain, activation, init and width profile, and stores per-layer forward and
backward statistics as xarray datasets in zarr stores.

    >>> import sweep
    >>> ds = sweep.run(sweep.Spec.from_toml("analysis/specs/quick.toml"), out="results/quick.zarr")
    >>> ds = sweep.load("results/quick.zarr")
"""

from sweep.engine import run
from sweep.errors import SpecError
from sweep.spec import Grid, Spec
from sweep.store import load

__all__ = ["Grid", "Spec", "SpecError", "load", "run"]
__version__ = "0.1.0"
