"""The training dataset contract: dims, variables and their attributes.

Dims: the statistics grid's axes, ``learning_rate`` and ``seed`` for what depends on the
training run; ``step`` (every ``log_every``-th step) and ``eval_step`` (0, ``eval_every``,
..., ``steps``) for the curves; ``layer`` (1..max(depth)) for the init-time statistics,
which, like ``loss_at_init``, do not depend on the learning rate and have no such dim.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep import store
from sweep.kernel import LAYER_STATS
from sweep.spec import GRID_AXES
from sweep.train.data import CLASSIFICATION
from sweep.train.spec import TrainSpec

RUN_DIMS = GRID_AXES + ("learning_rate", "seed")
INIT_DIMS = GRID_AXES + ("seed",)

_RUN_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "train_loss": (("step",), "training loss",
                   "mini-batch loss at the step, before its update; NaN after the network diverged"),
    "test_loss": (("eval_step",), "test loss",
                  "mean loss over the test split after eval_step updates; NaN after the network diverged"),
    "test_accuracy": (("eval_step",), "test accuracy",
                      "fraction of the test split classified correctly (arg-max of the logits); "
                      "NaN for regression and after the network diverged"),
    "diverged": ((), "diverged",
                 "a training or test loss was not finite (NaN or inf) at some step; the network was then frozen"),
    "steps_to_target": ((), "steps to target loss",
                        "the first step whose training loss is below target_loss (see attrs); NaN if none"),
}


def _attrs(long_name: str, units: str, definition: str) -> dict:
    return {"long_name": long_name, "units": units, "definition": definition}


def to_dataset(spec: TrainSpec, arrays: dict[str, np.ndarray], task: str, attrs: dict) -> xr.Dataset:
    """Wraps the filled result arrays into the training dataset.

    Args:
      spec: the training spec.
      arrays: ``train_loss`` ``(*grid, lr, seed, step)``, ``test_loss`` and ``test_accuracy``
        ``(*grid, lr, seed, eval_step)``, ``diverged`` and ``steps_to_target``
        ``(*grid, lr, seed)``, ``loss_at_init`` ``(*grid, seed)`` and ``init_<stat>``
        ``(*grid, seed, layer)``, where ``*grid`` are the ``GRID_AXES``.
      task: the dataset's task (sets the loss units).
      attrs: extra dataset attributes (dataset, schedule, target loss, ...).

    Returns:
      The dataset, with ``long_name``, ``units`` and ``definition`` on every variable and
      the provenance attributes of ``sweep.store.provenance``.
    """
    g = spec.grid
    loss_units = "nat" if task == CLASSIFICATION else "1"
    coords = {axis: list(getattr(g, axis)) for axis in GRID_AXES}
    coords["learning_rate"] = list(g.learning_rate)
    coords["seed"] = np.arange(spec.seeds)
    coords["step"] = np.asarray(spec.log_steps)
    coords["eval_step"] = np.asarray(spec.eval_steps)
    coords["layer"] = np.arange(1, max(g.depth) + 1)
    data = {}
    for name, (extra, long_name, definition) in _RUN_VARIABLES.items():
        units = {"test_accuracy": "1", "diverged": "1", "steps_to_target": "step"}.get(name, loss_units)
        data[name] = (RUN_DIMS + extra, arrays[name], _attrs(long_name, units, definition))
    data["loss_at_init"] = (INIT_DIMS, arrays["loss_at_init"], _attrs(
        "loss at initialisation", loss_units,
        "mean loss over the whole training split before any update (the same at every learning rate)"))
    for name in LAYER_STATS + ("overflow",):
        long_name, definition = store.VARIABLES[name]
        data[f"init_{name}"] = (INIT_DIMS + ("layer",), arrays[f"init_{name}"], _attrs(
            f"{long_name} at initialisation",
            "1", f"{definition}; statistics kernel on batch i.i.d. N(0, 1) inputs (see attrs init_statistics)"))
    long_name, definition = store.VARIABLES["layer_width"]
    data["layer_width"] = (("profile", "depth", "width", "layer"), store._layer_widths(spec),
                           _attrs(long_name, "1", definition))
    ds = xr.Dataset(data, coords=coords)
    for axis, (long_name, units) in store._COORD_ATTRS.items():
        if axis in ds.coords:
            ds[axis].attrs.update(long_name=long_name, units=units)
    ds["width"].attrs.update(long_name="base width n of the hidden layers")
    ds["learning_rate"].attrs.update(long_name="learning rate", units="1")
    ds["step"].attrs.update(long_name="optimizer step (updates before it)", units="step")
    ds["eval_step"].attrs.update(long_name="updates before the evaluation", units="step")
    ds.attrs.update(store.provenance(spec))
    ds.attrs.update(attrs)
    return ds
