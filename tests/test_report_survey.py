"""Label selections and Bonferroni thresholds of the report, on a small synthetic store."""

import json
import math
import statistics

import numpy as np
import pytest
import xarray as xr

from sweep.errors import SpecError
from sweep.report import parse_selection, survey
from sweep.report.survey import default_selection
from sweep.report.tables import bonferroni_threshold

GAINS = [0.5, 1.0, math.sqrt(2.0), 2.0]


@pytest.fixture
def store():
    shape = (2, 1, 2, 3, 2, 4, 1, 5, 6)
    dims = ("activation", "init", "profile", "depth", "width", "gain", "bias_std", "seed", "layer")
    coords = dict(activation=["relu", "tanh"], init=["fan_in"], profile=["alternating", "constant"],
                  depth=[2, 4, 6], width=[8, 16], gain=GAINS, bias_std=[0.0], seed=np.arange(5),
                  layer=np.arange(1, 7))
    ds = xr.Dataset({"preact_meansq": (dims, np.ones(shape))}, coords=coords)
    ds.attrs["spec"] = json.dumps({"name": "synthetic", "kind": "stats"})
    return ds


def test_a_store_is_surveyed_by_its_axes(store):
    s = survey(store)
    assert s.name == "synthetic" and s.kind == "stats"
    assert s.varying == ("activation", "profile", "depth", "width", "gain")
    assert s.has_theory("preact_meansq") is False


def test_the_default_selection_fixes_the_deepest_widest_constant_networks(store):
    assert default_selection(survey(store)) == {"profile": "constant", "depth": 6, "width": 16}
    assert default_selection(survey(store), keep=("depth",)) == {"profile": "constant", "width": 16}


@pytest.mark.parametrize("text, label", [("1.414", math.sqrt(2.0)), ("1.41421356", math.sqrt(2.0)), ("2", 2.0),
                                         ("1", 1.0), ("1.4", math.sqrt(2.0)),
                                         ("0.5", 0.5), ("1e0", 1.0)])
def test_a_typed_gain_selects_the_label_it_rounds(store, text, label):
    assert parse_selection(store, [f"gain={text}"]) == {"gain": label}


def test_integer_and_string_axes_select_exact_labels(store):
    sel = parse_selection(store, ["depth=4", "activation=tanh"])
    assert sel == {"depth": 4, "activation": "tanh"} and type(sel["depth"]) is int


@pytest.mark.parametrize("item, field, message", [
    ("gain=1.5", "--sel gain", "'1.5' matches 0 labels; the store holds 0.5, 1, 1.41421, 2"),
    ("gain=1.2", "--sel gain", "'1.2' matches 0 labels"),
    ("depth=5", "--sel depth", "'5' matches 0 labels; the store holds 2, 4, 6"),
    ("seed=1", "--sel seed", "not an axis of this store; it has activation, init, profile, depth, width, gain, bias_std"),
    ("activation=", "--sel activation", "'' is not a label; the store holds relu, tanh"),
    ("gain=big", "--sel gain", "'big' is not a number"),
    ("gain", "--sel", "'gain' is not key=value"),
])
def test_a_bad_selection_names_the_key_and_what_the_store_holds(store, item, field, message):
    with pytest.raises(SpecError) as e:
        parse_selection(store, [item])
    assert e.value.field == field and message in str(e.value)


@pytest.mark.parametrize("m", [1, 4, 48, 2304])
def test_the_bonferroni_threshold_keeps_the_family_wise_level(m):
    z = bonferroni_threshold(m)
    assert 2 * m * (1 - statistics.NormalDist().cdf(z)) == pytest.approx(0.05, rel=1e-9)
    assert bonferroni_threshold(1) == pytest.approx(1.959964, abs=1e-6)
