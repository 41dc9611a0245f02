"""Short training runs of the sweep's networks: thousands at once, on MNIST-1D, digits or a teacher.

    >>> import sweep
    >>> spec = sweep.load_spec("analysis/specs/train.toml")   # kind = "train": a TrainSpec
    >>> ds = sweep.run(spec, out="results/train.zarr")

Training sweeps run on the same engine as statistics sweeps (``sweep.engine``): tiled,
resumable, on every local device and process. Modules: ``data`` (the datasets), ``model``
(the network family with a readout, as a flax module), ``loop`` (the vmapped trainer),
``schedule`` (mini-batches and evaluation slices), ``job`` (one kernel call of training).
"""
