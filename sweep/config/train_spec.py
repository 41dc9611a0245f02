"""The training spec: ``kind = "train"``, short training runs of the networks of a grid.

A training spec has the statistics grid's axes plus ``learning_rate``, and says what the
networks are trained on, how and for how long. It is validated like ``sweep.config.spec.Spec``:
an unknown key, a wrong type or a value outside what is allowed raises ``SpecError`` naming
the field. ``sweep.load_spec`` returns a ``TrainSpec`` for ``kind = "train"``.

The network family is a statistics spec's (``layer``, ``block``, ``branch_depth_exponent``,
``grid.kernel_size``, ``grid.branch_scale``), with one difference: a conv net's spatial shape
is its dataset's (``DatasetShape.spatial``), so a training spec has no ``spatial`` key. The
``width`` axis is the base width of the hidden layers (channels for convolutions, the stream
for residual networks); what the first layer reads is the dataset's (see
``sweep.plan.architecture`` and ``sweep.train.model``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, NamedTuple

from sweep.config import validate
from sweep.config.spec import (
    ALL_GRID_AXES,
    BLOCKS,
    GRID_AXES,
    LAYERS,
    Grid,
    SpecBase,
    base_width_field,
    block_fields,
    layer_fields,
    read_toml,
)
from sweep.errors import SpecError

TRAIN_AXES: tuple[str, ...] = GRID_AXES + ("learning_rate",)
"""The axes of a dense training grid, in the order of the dataset's dims (then ``seed``);
``TrainGrid.axes`` of any training grid."""

class DatasetShape(NamedTuple):
    """What a training dataset is, in the spec's terms (``sweep.train.data`` makes it).

    Attributes:
      task: ``"classification"`` (softmax cross-entropy on classes) or ``"regression"``
        (half the squared error on real targets).
      features: the input dimension n_0.
      outputs: classes, or target dimensions.
      examples: training and test examples together.
      spatial: the features as a conv net reads them: an image of one channel of this
        shape (MNIST-1D's 40 samples of a 1-D signal, the digits' 8 x 8 pixels).
    """

    task: str
    features: int
    outputs: int
    examples: int
    spatial: tuple[int, ...]


DATASET_SHAPES: dict[str, DatasetShape] = {
    "mnist1d": DatasetShape("classification", 40, 10, 5000, (40,)),
    "digits": DatasetShape("classification", 64, 10, 1797, (8, 8)),
    "teacher": DatasetShape("regression", 32, 1, 5120, (32,)),
}
DATASETS: tuple[str, ...] = tuple(DATASET_SHAPES)
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")
READOUT_INITS: tuple[str, ...] = ("normal", "zero")


@dataclasses.dataclass(frozen=True)
class TrainGrid(Grid):
    """The statistics grid's axes plus the learning rate.

    Attributes:
      learning_rate: the optimizer's step size, positive; a list or a range table
        ``{start, stop, num, log}`` like the other float axes.
    """

    learning_rate: tuple[float, ...] = (1e-2,)

    @property
    def axes(self) -> tuple[str, ...]:
        """The statistics grid's axes, then ``learning_rate``."""
        return super().axes + ("learning_rate",)

    @property
    def stats(self) -> Grid:
        """The statistics grid: every axis but ``learning_rate``."""
        return Grid(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Grid)})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainGrid:
        """Builds and validates a training grid from its TOML table.

        Raises:
          SpecError: unknown axis, empty axis, wrong type or value out of range.
        """
        validate.reject_unknown(raw, ALL_GRID_AXES + ("learning_rate",), "grid")
        raw = dict(raw)
        rates = validate.number_list(
            raw.pop("learning_rate", cls.learning_rate), "grid.learning_rate", integer=False
        )
        if any(not math.isfinite(v) or v <= 0 for v in rates):
            raise SpecError("grid.learning_rate", f"must be finite numbers > 0, got {rates}")
        rates = validate.unique(rates, "grid.learning_rate")
        grid = Grid.from_dict(raw)
        return cls(**dataclasses.asdict(grid), learning_rate=rates)


@dataclasses.dataclass(frozen=True)
class TrainSpec(SpecBase):
    """A sweep of short training runs.

    Attributes:
      name: a short name, used for default output paths.
      kind: always ``"train"``.
      rng_seed: base PRNG seed: of the networks (the same keys as a statistics sweep) and of
        the mini-batch schedule.
      seeds: independent networks per grid point (dim ``seed``).
      batch: training examples per step; also the number of Gaussian inputs of the
        init-time statistics (``init_*`` variables).
      dataset: ``"mnist1d"``, ``"digits"`` or ``"teacher"`` (see ``sweep.train.data``).
      optimizer: ``"sgd"``, ``"momentum"`` (SGD with heavy-ball momentum 0.9) or ``"adam"``
        (optax defaults b1 = 0.9, b2 = 0.999, eps = 1e-8).
      steps: optimizer steps per network.
      eval_every: the full test split is evaluated after every ``eval_every`` steps, and at
        step 0 and at the last step.
      log_every: the training loss is recorded every ``log_every`` steps (from step 0).
      target_loss: ``steps_to_target`` is the first step whose training loss is below it.
        ``None`` (the default): half the loss of the best constant predictor on the training
        split, i.e. half the entropy of the class frequencies (classification) or
        0.25 · outputs (regression, standardised targets); the value used is in the
        dataset's attributes.
      precision: ``"highest"`` (exact float32 matmuls) or ``"default"``.
      layer: ``"dense"`` or ``"conv"``, as a statistics spec's; a conv net reads the dataset's
        features as an image of one channel (``DatasetShape.spatial``).
      block: ``"plain"`` or ``"residual"``, as a statistics spec's; a residual net's stream
        starts from the input map of ``sweep.train.model`` (trained with the blocks).
      branch_depth_exponent: residual networks' α_eff = α · depth^exponent.
      sharpness_iterations: 0 (the default), or record the first step on its mini-batch
        (``first_step_*`` variables and ``init_sharpness``), the sharpness by this many
        power-iteration steps of Hessian-vector products.
      coord_steps: t: the coordinate check (``coord_*`` variables) is recorded after 0..t
        updates and at every evaluation step, on step 0's mini-batch; 0 records it at the
        evaluation steps only.
      readout_init: ``"normal"`` (N(0, 1/n), scaled as the parametrisation says) or
        ``"zero"`` (the readout starts at zero, as the ``mup`` package's coordinate check does).
      base_width: the width at which every parametrisation is the standard one; needed by,
        and only by, a grid whose ``parametrization`` axis has ``"ntk"`` or ``"mup"``.
      grid: the axes, ``TrainGrid``.
    """

    name: str = "train"
    kind: str = "train"
    rng_seed: int = 0
    seeds: int = 4
    batch: int = 128
    dataset: str = "mnist1d"
    optimizer: str = "sgd"
    steps: int = 500
    eval_every: int = 50
    log_every: int = 1
    target_loss: float | None = None
    precision: str = "highest"
    layer: str = "dense"
    block: str = "plain"
    branch_depth_exponent: float = 0.0
    sharpness_iterations: int = 0
    coord_steps: int = 3
    readout_init: str = "normal"
    base_width: int | None = None
    grid: TrainGrid = dataclasses.field(default_factory=TrainGrid)

    @property
    def spatial(self) -> tuple[int, ...]:
        """A conv net's spatial shape, the dataset's; ``()`` for dense layers."""
        return DATASET_SHAPES[self.dataset].spatial if self.conv else ()

    @property
    def num_networks(self) -> int:
        """Networks trained: grid points (learning rates included) times seeds."""
        return math.prod(self.grid.shape) * self.seeds

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``, the dataset's task."""
        return DATASET_SHAPES[self.dataset].task

    @property
    def num_initial_networks(self) -> int:
        """Distinct initial networks: statistics grid points times seeds."""
        return self.grid.stats.size * self.seeds

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """The steps after which the test split is evaluated: 0, eval_every, ..., steps."""
        return tuple(sorted(set(range(0, self.steps + 1, self.eval_every)) | {self.steps}))

    @property
    def coord_check_steps(self) -> tuple[int, ...]:
        """The steps after which the coordinate check is recorded: 0..coord_steps, and the evaluation steps."""
        return tuple(sorted(set(range(min(self.coord_steps, self.steps) + 1)) | set(self.eval_steps)))

    @property
    def log_steps(self) -> tuple[int, ...]:
        """The steps whose training loss is recorded: 0, log_every, ... < steps."""
        return tuple(range(0, self.steps, self.log_every))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSpec:
        """Builds and validates a training spec from a dict shaped like the TOML file.

        Raises:
          SpecError: naming the first offending field.
        """
        if isinstance(raw, dict) and "spatial" in raw:
            dataset = raw.get("dataset", cls.dataset)
            shape = list(DATASET_SHAPES[dataset].spatial) if dataset in DATASET_SHAPES else "the dataset's"
            raise SpecError("spatial", f"a training spec's spatial shape is its dataset's ({dataset}: {shape}); "
                                       "leave it out")
        kw = cls._common_fields(raw, ("train",))
        for key in ("steps", "eval_every", "log_every"):
            kw[key] = validate.integer(raw.get(key, getattr(cls, key)), key, minimum=1)
        kw["sharpness_iterations"] = validate.integer(raw.get("sharpness_iterations", 0), "sharpness_iterations", minimum=0)
        kw["coord_steps"] = validate.integer(raw.get("coord_steps", cls.coord_steps), "coord_steps", minimum=0)
        kw["readout_init"] = validate.choice(raw.get("readout_init", cls.readout_init), "readout_init", READOUT_INITS)
        kw["dataset"] = validate.choice(raw.get("dataset", cls.dataset), "dataset", DATASETS)
        kw["optimizer"] = validate.choice(raw.get("optimizer", cls.optimizer), "optimizer", OPTIMIZERS)
        target = raw.get("target_loss", cls.target_loss)
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
                raise SpecError("target_loss", f"must be a number > 0, got {target!r}")
            target = float(target)
        kw["target_loss"] = target
        kw["grid"] = validate.grid(raw.get("grid", {}), TrainGrid)
        kw["layer"] = validate.choice(raw.get("layer", cls.layer), "layer", LAYERS)
        spatial = {"spatial": list(DATASET_SHAPES[kw["dataset"]].spatial)} if kw["layer"] == "conv" else {}
        _, kw["grid"] = layer_fields(spatial, kw["layer"], kw["grid"], False)
        kw["block"] = validate.choice(raw.get("block", cls.block), "block", BLOCKS)
        kw["branch_depth_exponent"], kw["grid"] = block_fields(raw, {**kw, "common_random_numbers": False, "jacobian": False})
        kw["base_width"] = base_width_field(raw, kw["grid"])
        return cls(**kw)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainSpec:
        """Reads and validates a training spec file.

        Raises:
          SpecError: the file is missing, is not TOML, is not ``kind = "train"``, or a field
            is bad.
        """
        raw = read_toml(path)
        if raw.get("kind") != "train":
            raise SpecError("kind", f"a training spec needs kind = \"train\", got {raw.get('kind')!r}")
        return cls.from_dict(raw)
