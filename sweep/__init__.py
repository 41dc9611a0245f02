"""sweep: what random initialisation does to the signals and gradients of deep networks.

A vmapped, jit-compiled JAX kernel draws thousands of random networks at once across grids of
depth, width, gain, activation, init and width profile, and stores per-layer forward and
backward statistics as xarray datasets in zarr stores.

    >>> import sweep
    >>> spec = sweep.load_spec("analysis/specs/quick.toml")
    >>> ds = sweep.run(spec, out="results/quick.zarr")
    >>> ds = sweep.load("results/quick.zarr")

The data flow one way, and so do the subpackages: ``config`` (what a sweep is) → ``plan``
(how it is cut into programs, calls and tiles) → ``model`` and ``kernel`` (the networks and
their statistics on device) → ``engine`` (executing a plan, resumably) → ``io`` (datasets and
stores) → ``theory``, ``plots`` and ``report``; ``train`` trains the same networks.
Importing ``sweep`` is cheap: the engine and the store load on first use.
"""

from sweep.config import Grid, Spec, TrainGrid, TrainSpec, load_spec
from sweep.errors import SpecError

__all__ = ["Grid", "Spec", "SpecError", "TrainGrid", "TrainSpec", "load", "load_spec", "run", "use_cpu_cores"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "run":
        from sweep.engine.run import run

        return run
    if name == "use_cpu_cores":
        from sweep.kernel.devices import use_cpu_cores

        return use_cpu_cores
    if name == "load":
        from sweep.io.zarr_store import load

        return load
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
