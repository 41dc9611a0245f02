"""The spec: TOML and Python give the same validated object; every bad field is named."""

import math

import pytest
from helpers import small_spec

import sweep
from sweep.errors import SpecError

EXAMPLE = """
kind = "stats"
name = "he-vs-xavier"
rng_seed = 0
seeds = 64
batch = 128
input = "gaussian"
loss = "mse"
precision = "highest"
jacobian = false

[grid]
activation = ["relu", "tanh", "leaky_relu(0.2)"]
init = ["fan_in", "fan_avg"]
profile = ["constant"]
depth = [10, 50]
width = [64, 256]
gain = {start = 0.5, stop = 2.5, num = 21}
bias_std = [0.0]
"""


def test_the_issue_example_parses(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(EXAMPLE)
    spec = sweep.Spec.from_toml(path)
    assert spec.grid.activation == ("relu", "tanh", "leaky_relu(0.2)")
    assert len(spec.grid.gain) == 21 and spec.grid.gain[0] == 0.5 and spec.grid.gain[-1] == 2.5
    assert spec.num_networks == 3 * 2 * 1 * 2 * 2 * 21 * 1 * 64


def test_log_range_is_geometric_and_inclusive():
    spec = small_spec(grid={"gain": {"start": 0.1, "stop": 10.0, "num": 3, "log": True}})
    assert spec.grid.gain == pytest.approx((0.1, 1.0, 10.0))


def test_round_trips_through_dict_and_json():
    spec = small_spec(grid={"activation": ["elu", "leaky_relu"]})
    assert sweep.Spec.from_dict(spec.to_dict()) == spec
    assert sweep.Spec.from_json(spec.to_json()) == spec
    assert spec.grid.activation == ("elu(1.0)", "leaky_relu(0.01)")


def test_replace_validates_again():
    spec = small_spec()
    assert spec.replace(seeds=7).seeds == 7
    assert spec.replace(grid={"depth": [2, 4]}).grid.depth == (2, 4)
    with pytest.raises(SpecError, match="seeds"):
        spec.replace(seeds=0)


def test_defaults_are_he_init_for_relu():
    spec = sweep.Spec()
    assert spec.grid.init == ("fan_in",) and spec.grid.gain == (math.sqrt(2.0),)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"sedes": 3}, "sedes"),
        ({"grid": {"widht": [4]}}, "grid.widht"),
        ({"kind": "nope"}, "kind"),
        ({"seeds": 0}, "seeds"),
        ({"batch": -1}, "batch"),
        ({"seeds": 2.5}, "seeds"),
        ({"batch": "8"}, "batch"),
        ({"loss": "l1"}, "loss"),
        ({"precision": "low"}, "precision"),
        ({"jacobian": "yes"}, "jacobian"),
        ({"name": "a b"}, "name"),
        ({"grid": {"activation": ["swish"]}}, "grid.activation"),
        ({"grid": {"activation": ["leaky_relu(a)"]}}, "grid.activation"),
        ({"grid": {"init": ["he"]}}, "grid.init"),
        ({"grid": {"profile": ["pyramid"]}}, "grid.profile"),
        ({"grid": {"width": [0]}}, "grid.width"),
        ({"grid": {"depth": [-3]}}, "grid.depth"),
        ({"grid": {"depth": [2.5]}}, "grid.depth"),
        ({"grid": {"depth": []}}, "grid.depth"),
        ({"grid": {"gain": []}}, "grid.gain"),
        ({"grid": {"gain": [-1.0]}}, "grid.gain"),
        ({"grid": {"gain": {"start": 0.5, "stop": 2.5, "num": 0}}}, "grid.gain.num"),
        ({"grid": {"gain": {"start": 0.5, "stop": 2.5}}}, "grid.gain.num"),
        ({"grid": {"gain": {"start": 0.5, "stop": 2.5, "num": 3, "step": 1}}}, "grid.gain.step"),
        ({"grid": {"gain": ["big"]}}, "grid.gain"),
        ({"grid": {"bias_std": [0.1, 0.1]}}, "grid.bias_std"),
        ({"grid": "relu"}, "grid"),
        ({"layer": "recurrent"}, "layer"),
        ({"spatial": [16]}, "spatial"),
        ({"grid": {"kernel_size": [3]}}, "grid.kernel_size"),
        ({"grid": {"init": ["delta_orthogonal"]}}, "grid.init"),
        ({"layer": "conv"}, "spatial"),
        ({"layer": "conv", "spatial": []}, "spatial"),
        ({"layer": "conv", "spatial": [8, 8, 8]}, "spatial"),
        ({"layer": "conv", "spatial": [0]}, "spatial"),
        ({"layer": "conv", "spatial": 16}, "spatial"),
        ({"layer": "conv", "spatial": [8], "grid": {"kernel_size": [4]}}, "grid.kernel_size"),
        ({"layer": "conv", "spatial": [8], "grid": {"kernel_size": [0]}}, "grid.kernel_size"),
        ({"layer": "conv", "spatial": [8], "grid": {"kernel_size": [-3]}}, "grid.kernel_size"),
        ({"layer": "conv", "spatial": [8, 4], "grid": {"kernel_size": [5]}}, "grid.kernel_size"),
        ({"layer": "conv", "spatial": [8], "jacobian": True}, "jacobian"),
        ({"layer": "conv", "spatial": [8], "grid": {"init": ["delta_orthogonal"], "profile": ["alternating"]}},
         "grid.init"),
        ({"layer": "conv", "spatial": [8], "grid": {"init": ["delta_orthogonal"], "profile": ["taper"]}}, "grid.init"),
    ],
)
def test_bad_fields_are_named(raw, field):
    with pytest.raises(SpecError) as info:
        sweep.Spec.from_dict(raw)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_conv_specs_round_trip_and_dense_specs_read_as_before():
    conv = sweep.Spec.from_dict({"layer": "conv", "spatial": [16, 16], "grid": {"kernel_size": [1, 3]}})
    assert conv.conv and conv.spatial == (16, 16) and conv.grid.kernel_size == (1, 3)
    assert conv.grid.axes == ("activation", "init", "profile", "depth", "width", "kernel_size", "gain", "bias_std")
    assert sweep.Spec.from_json(conv.to_json()) == conv
    assert sweep.Spec.from_dict({"layer": "conv", "spatial": [8]}).grid.kernel_size == (3,)  # the default
    dense = sweep.Spec()
    assert dense.grid.axes == sweep.config.GRID_AXES
    assert not {"layer", "spatial"} & set(dense.to_dict()) and "kernel_size" not in dense.to_dict()["grid"]


def test_a_file_that_is_not_toml_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("seeds = [1,\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        sweep.Spec.from_toml(path)
