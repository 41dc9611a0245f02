"""The training spec: kind = "train", validated field by field, returned by sweep.load_spec."""

import json
import math

import pytest

import sweep
from sweep.config import TrainGrid, TrainSpec

ISSUE_EXAMPLE = '''
kind = "train"
name = "trainability"
dataset = "mnist1d"
optimizer = "sgd"
steps = 500
batch = 128
eval_every = 50
seeds = 8
rng_seed = 0
[grid]
activation = ["tanh"]
init = ["fan_in"]
profile = ["constant"]
depth = [10, 30, 50]
width = [128]
gain = [1.0, 1.327, 2.0]
bias_std = [0.2236]
learning_rate = [1e-2]
'''


def test_the_issue_example_reads_as_a_train_spec(tmp_path):
    path = tmp_path / "trainability.toml"
    path.write_text(ISSUE_EXAMPLE)
    spec = sweep.load_spec(path)
    assert isinstance(spec, TrainSpec)
    assert spec == TrainSpec.from_toml(path)
    assert spec.grid.depth == (10, 30, 50) and spec.grid.learning_rate == (1e-2,)
    assert spec.grid.shape == (1, 1, 1, 3, 1, 3, 1, 1)
    assert spec.num_networks == 9 * 8 and spec.num_initial_networks == 9 * 8
    assert spec.eval_steps == tuple(range(0, 501, 50))
    assert spec.log_steps == tuple(range(500))


def test_defaults():
    spec = TrainSpec.from_dict({"kind": "train"})
    assert (spec.name, spec.rng_seed, spec.seeds, spec.batch) == ("train", 0, 4, 128)
    assert (spec.dataset, spec.optimizer, spec.steps, spec.eval_every, spec.log_every) == ("mnist1d", "sgd", 500, 50, 1)
    assert spec.target_loss is None and spec.precision == "highest"
    assert spec.grid.learning_rate == (1e-2,) and spec.grid.gain == (math.sqrt(2.0),)


def test_load_spec_returns_each_kinds_type_and_spec_refuses_training():
    assert type(sweep.load_spec({"kind": "stats"})) is sweep.Spec
    assert type(sweep.load_spec({})) is sweep.Spec
    assert type(sweep.load_spec({"kind": "train"})) is TrainSpec
    with pytest.raises(sweep.SpecError, match="is a TrainSpec; sweep.load_spec reads either kind") as info:
        sweep.Spec.from_dict({"kind": "train"})
    assert info.value.field == "kind"


def test_learning_rate_takes_a_log_range():
    spec = TrainSpec.from_dict({"kind": "train", "grid": {"learning_rate": {"start": 1e-3, "stop": 1e-1, "num": 3, "log": True}}})
    assert spec.grid.learning_rate == pytest.approx((1e-3, 1e-2, 1e-1))
    assert spec.grid.stats == sweep.Grid(**{a: getattr(spec.grid, a) for a in sweep.config.GRID_AXES})


def test_eval_steps_end_at_the_last_step_and_logs_subsample():
    spec = TrainSpec.from_dict({"kind": "train", "steps": 7, "eval_every": 3, "log_every": 2})
    assert spec.eval_steps == (0, 3, 6, 7)
    assert spec.log_steps == (0, 2, 4, 6)


@pytest.mark.parametrize("raw, field", [
    ({"kind": "train", "epochs": 3}, "epochs"),
    ({"kind": "train", "layer": "convolution"}, "layer"),
    ({"kind": "train", "block": "dense"}, "block"),
    ({"kind": "train", "layer": "conv", "spatial": [40]}, "spatial"),
    ({"kind": "train", "grid": {"kernel_size": [3]}}, "grid.kernel_size"),
    ({"kind": "train", "layer": "conv", "grid": {"kernel_size": [4]}}, "grid.kernel_size"),
    ({"kind": "train", "layer": "conv", "dataset": "digits", "grid": {"kernel_size": [9]}}, "grid.kernel_size"),
    ({"kind": "train", "grid": {"branch_scale": [1.0]}}, "grid.branch_scale"),
    ({"kind": "train", "branch_depth_exponent": -0.5}, "branch_depth_exponent"),
    ({"kind": "train", "block": "residual", "branch_depth_exponent": "half"}, "branch_depth_exponent"),
    ({"kind": "train", "grid": {"init": ["delta_orthogonal"]}}, "grid.init"),
    ({"kind": "train", "grid": {"init": ["fixup"]}}, "grid.init"),
    ({"kind": "train", "grid": {"lr": [0.1]}}, "grid.lr"),
    ({"kind": "train", "grid": {"learning_rate": [0.0]}}, "grid.learning_rate"),
    ({"kind": "train", "grid": {"learning_rate": [0.1, 0.1]}}, "grid.learning_rate"),
    ({"kind": "train", "grid": {"width": [0]}}, "grid.width"),
    ({"kind": "train", "dataset": "mnist"}, "dataset"),
    ({"kind": "train", "optimizer": "rmsprop"}, "optimizer"),
    ({"kind": "train", "steps": 0}, "steps"),
    ({"kind": "train", "eval_every": 1.5}, "eval_every"),
    ({"kind": "train", "log_every": True}, "log_every"),
    ({"kind": "train", "target_loss": -1.0}, "target_loss"),
    ({"kind": "train", "precision": "low"}, "precision"),
    ({"kind": "train", "loss": "mse"}, "loss"),
    ({"kind": "training"}, "kind"),
])
def test_a_bad_field_is_named(raw, field):
    with pytest.raises(sweep.SpecError) as info:
        sweep.load_spec(raw)
    assert info.value.field == field


def test_conv_and_residual_training_specs_take_the_family_of_a_stats_spec():
    conv = TrainSpec.from_dict({"kind": "train", "layer": "conv", "dataset": "digits"})
    assert conv.conv and not conv.residual and conv.spatial == (8, 8)
    assert conv.grid.kernel_size == (3,) and conv.grid.axes.index("kernel_size") == 5
    assert conv.grid.axes[-1] == "learning_rate" and conv.grid.stats.kernel_size == (3,)
    residual = TrainSpec.from_dict({"kind": "train", "block": "residual", "branch_depth_exponent": -0.5,
                                    "grid": {"init": ["fan_in", "fixup"]}})
    assert residual.residual and residual.spatial == () and residual.grid.branch_scale == (1.0,)
    assert residual.branch_depth_exponent == -0.5
    for spec in (conv, residual):
        assert TrainSpec.from_json(spec.to_json()) == spec
        assert spec.grid.shape == tuple(len(getattr(spec.grid, a)) for a in spec.grid.axes)


def test_a_training_specs_spatial_shape_is_named_as_its_datasets():
    with pytest.raises(sweep.SpecError, match=r"mnist1d: \[40\]"):
        sweep.load_spec({"kind": "train", "layer": "conv", "spatial": [16]})


def test_round_trips_through_json_and_replace():
    spec = TrainSpec.from_dict({"kind": "train", "target_loss": 0.5, "grid": {"learning_rate": [0.1, 0.01]}})
    assert TrainSpec.from_json(spec.to_json()) == spec
    assert sweep.load_spec(json.loads(spec.to_json())) == spec
    changed = spec.replace(steps=10, grid={"depth": [3]})
    assert changed.steps == 10 and changed.grid.depth == (3,) and changed.grid.learning_rate == (0.1, 0.01)
    assert isinstance(changed.grid, TrainGrid)


def test_a_stats_file_is_not_a_train_spec(tmp_path):
    path = tmp_path / "stats.toml"
    path.write_text('kind = "stats"\n')
    with pytest.raises(sweep.SpecError) as info:
        TrainSpec.from_toml(path)
    assert info.value.field == "kind"
