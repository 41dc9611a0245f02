"""Short training runs of the sweep's networks: thousands at once, on MNIST-1D, digits or a teacher.

    >>> from sweep.train import TrainSpec, run_training
    >>> ds = run_training(TrainSpec.from_toml("analysis/specs/trainability.toml"), out="results/train.zarr")

See ``sweep.train.spec`` for the spec, ``sweep.train.schema`` for the dataset, and
``sweep.train.loop`` for how networks are trained and how divergence is handled.
"""

from sweep.train.runner import run_training
from sweep.train.spec import TrainGrid, TrainSpec

__all__ = ["TrainGrid", "TrainSpec", "run_training"]
