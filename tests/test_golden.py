"""The golden regression test: every number of the golden sweeps, bit for bit (theory: to a few ulp)
on the host that recorded them, and within float32 rounding on any other (tests/golden/golden.py).

The sweeps (tests/golden/specs.toml) cover every path of the engine: the dense, convolutional
and residual families, both samplers, activation classes, the four init families, the three
profiles, biases, the Jacobian, common random numbers with and without scaled copies, both
losses, and training on MNIST-1D, the teacher task and digits (a residual conv net). A
change that moves a golden number on purpose rewrites tests/golden/values.npz with
``python tests/golden/golden.py --write`` in a commit of its own that says which variables
moved and by how much (the script prints it).
"""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import golden  # noqa: E402

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the golden numbers are the CPU's")


@pytest.fixture(scope="module")
def recorded():
    values, versions, recorder = golden.load()
    assert versions == golden.versions(), (
        f"the golden numbers were recorded with {versions}; this environment has {golden.versions()} "
        "(install with the test extra, which pins them)")
    return values, golden.tolerance(recorder)


@pytest.mark.parametrize("name", sorted(golden.specs()))
def test_every_stored_number_of_the_golden_sweep_is_unchanged(name, recorded):
    """Bit for bit on the recording host; elsewhere within float32 rounding (tests/golden/golden.py)."""
    values, tolerance = recorded
    new = golden.compute([name])
    old = {k: v for k, v in values.items() if k.split("/", 1)[0] == name}
    assert new, name
    assert golden.differences(new, old, tolerance) == []


def test_the_comparison_sees_one_changed_bit():
    values = {"s/x": np.array([1.0, np.nan, 3.0]), "s/flag": np.array([True, False])}
    assert golden.differences(values, values) == []
    nudged = {**values, "s/x": np.array([1.0, np.nan, np.nextafter(3.0, 4.0)])}
    assert golden.differences(nudged, values) == ["s/x: largest relative difference 1.48e-16"]
    flipped = {**values, "s/flag": np.array([True, True])}
    assert golden.differences(flipped, values) == ["s/flag: values differ"]
    assert golden.differences({**values, "t/y": np.zeros(1)}, values) == ["t: a new sweep"]


def test_theory_predictions_may_move_by_a_few_ulp_and_no_more():
    """The float64 theory rounds by the host's vector width (tests/golden/golden.py); a few ulp pass, more do not."""
    recorded = {"s/theory_q": np.array([2.0, np.nan, 1e-3]), "s/q": np.array([2.0])}
    few = np.array([np.nextafter(2.0, 3.0), np.nan, 1e-3 + 4 * np.spacing(1e-3)])
    assert golden.differences({**recorded, "s/theory_q": few}, recorded) == []
    beyond = np.array([2.0 + 2.0**-44, np.nan, 1e-3])  # 128 ulp of 2
    assert golden.differences({**recorded, "s/theory_q": beyond}, recorded) == [
        "s/theory_q: largest relative difference 2.84e-14"]
    moved_nan = np.array([2.0, 1.0, 1e-3])
    assert golden.differences({**recorded, "s/theory_q": moved_nan}, recorded) != []
    measured = {**recorded, "s/q": np.array([np.nextafter(2.0, 3.0)])}
    assert golden.differences(measured, recorded) == ["s/q: largest relative difference 2.22e-16"]


def test_on_another_host_a_float_variable_may_move_by_rounding_and_no_more():
    recorded = {"s/q": np.array([2.0, -1.0, np.nan, np.inf]), "s/n": np.array([3, 4])}
    bound = {"s": 2.0**-14}
    rms = np.sqrt((4.0 + 1.0) / 2)
    rounded = {**recorded, "s/q": np.array([2.0 + 0.9 * bound["s"] * rms, -1.0, np.nan, np.inf])}
    assert golden.differences(rounded, recorded, bound) == []
    assert golden.differences(rounded, recorded) != []  # the recording host would see it
    moved = {**recorded, "s/q": np.array([2.0 + 1.1 * bound["s"] * rms, -1.0, np.nan, np.inf])}
    assert golden.differences(moved, recorded, bound) == ["s/q: largest relative difference 5.31e-05"]
    for pattern in ([2.0, np.nan, np.nan, np.inf], [2.0, -1.0, np.nan, -np.inf], [2.0, -1.0, np.nan, 7.0]):
        assert golden.differences({**recorded, "s/q": np.array(pattern)}, recorded, bound) != [], pattern
    assert golden.differences({**recorded, "s/n": np.array([3, 5])}, recorded, bound) == ["s/n: values differ"]


def test_the_recording_host_compares_bit_for_bit_and_any_other_within_its_sweeps_tolerance():
    assert golden.tolerance(golden.host()) is None
    other = golden.tolerance({**golden.host(), "model name": "another CPU"})
    kinds = golden.kinds()
    assert other == {name: golden.FOREIGN_TOLERANCE[kind] for name, kind in kinds.items()}
    assert {"stats", "train"} <= set(kinds.values())
    assert golden.tolerance(None) == other  # values recorded before hosts were
