"""Point 9 reads its numbers from the first-step store: nothing is typed in."""

import re

import numpy as np
import pytest

import sweep
from sweep.config import TrainSpec
from sweep.report import first_step


@pytest.fixture(scope="module")
def store():
    spec = TrainSpec.from_dict({
        "kind": "train", "name": "first_step", "dataset": "teacher", "steps": 1, "batch": 32, "eval_every": 1,
        "seeds": 4, "sharpness_iterations": 6,
        "grid": {"activation": ["relu"], "depth": [2], "width": [16], "gain": [1.0, 1.5], "bias_std": [0.0],
                 "learning_rate": [1e-3, 1e-1]}})
    return sweep.run(spec, progress=False)


def _ratios(text):
    return [float(m) for m in re.findall(r"\| ([0-9.e+-]+) \([0-9.e+-]+\)", text)]


def test_the_table_is_the_median_ratio_of_the_store(store):
    section = first_step.first_step({"first_step": store})
    ratio = store.first_step_loss_change / (-store.learning_rate * store.first_step_grad_sqnorm)
    expected = [float(ratio.sel(gain=g, learning_rate=lr).median()) for g in store.gain.values
                for lr in store.learning_rate.values]
    np.testing.assert_allclose(_ratios(section.text), expected, rtol=5e-3)  # printed to three digits
    assert first_step.first_step({}) is None


def test_doubling_the_loss_changes_doubles_the_reported_ratios(store):
    before = _ratios(first_step.first_step({"first_step": store}).text)
    doubled = store.assign(first_step_loss_change=2 * store.first_step_loss_change)
    after = _ratios(first_step.first_step({"first_step": doubled}).text)
    np.testing.assert_allclose(after, 2 * np.asarray(before), rtol=5e-3)
