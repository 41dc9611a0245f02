"""Short training runs of the sweep's networks: thousands at once, on MNIST-1D, digits or a teacher.

    >>> import sweep
    >>> from sweep.train import run_training
    >>> spec = sweep.Spec.from_toml("trainability.toml")  # kind = "train": a TrainSpec
    >>> ds = run_training(spec, out="results/trainability.zarr")

See ``sweep.train.spec`` for the spec, ``sweep.train.schema`` for the dataset, and
``sweep.train.loop`` for how networks are trained and how divergence is handled.
"""

from sweep.train.runner import run_training
from sweep.train.spec import TrainGrid, TrainSpec

__all__ = ["TrainGrid", "TrainSpec", "run_training"]
