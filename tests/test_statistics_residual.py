"""Residual networks' stream, measured against the mean-field recursion (``sweep.theory.residual``).

relu, He branches (fan_in, σ_w = √2 on both layers), width 512, 8 blocks, no bias: the stream's
second moment grows by 1 + α²σ_1²σ_2²/4 = 1 + α² per block. Every tolerance is a z-score from
the sample (standard error over seeds) at a family-wise error rate of 1e-3, Bonferroni-corrected
over every comparison of a test.
"""

import math

import numpy as np
import pytest
from helpers import z_threshold

import sweep

pytestmark = pytest.mark.slow
DEPTH, SEEDS = 8, 32
SCALES = (1.0, 0.5, 1 / math.sqrt(DEPTH))


@pytest.fixture(scope="module")
def residual_nets():
    spec = sweep.Spec.from_dict({
        "name": "resnet-stream", "seeds": SEEDS, "batch": 4, "rng_seed": 11, "loss": "projection",
        "block": "residual",
        "grid": {"activation": ["relu", "tanh"], "init": ["fan_in"], "depth": [DEPTH], "width": [512],
                 "branch_scale": list(SCALES), "gain": [math.sqrt(2.0)]},
    })
    return sweep.run(spec, progress=False)


def z_scores(ds, name, **sel):
    """(mean over seeds − theory) / SE of one statistic, over every remaining dim."""
    measured, theory = ds[name].sel(**sel), ds[f"theory_{name}"].sel(**sel)
    mean, se = measured.mean("seed"), measured.std("seed", ddof=1) / np.sqrt(SEEDS)
    return ((mean - theory) / se).values


def test_the_stream_grows_by_one_plus_alpha_squared_per_block(residual_nets):
    z = z_scores(residual_nets, "stream_meansq", activation="relu")
    assert np.all(np.abs(z) < z_threshold(z.size))
    theory = residual_nets.theory_stream_meansq.sel(activation="relu").squeeze(drop=True)
    for alpha in SCALES:
        np.testing.assert_allclose(theory.sel(branch_scale=alpha), (1 + alpha**2) ** np.arange(1, DEPTH + 1), rtol=1e-10)
    # The factor of a branch with one relu, 1 + α²σ_1²σ_2²/2 (3x per block under He), is rejected.
    s = residual_nets.stream_meansq.sel(activation="relu", branch_scale=1.0).squeeze(drop=True).transpose("seed", "layer")
    wrong = 3.0 ** np.arange(1, DEPTH + 1)
    z_wrong = (s.mean("seed") - wrong) / (s.std("seed", ddof=1) / np.sqrt(SEEDS))
    assert np.all(np.abs(z_wrong.values) > z_threshold(DEPTH))


def test_every_residual_theory_variable_agrees_with_the_measurement(residual_nets):
    names = ["preact_meansq", "act_meansq", "act_mean", "grad_preact_meansq", "grad_act_meansq",
             "grad_weight_meansq", "dead_fraction", "stream_meansq", "grad_stream_meansq"]
    z = {name: z_scores(residual_nets, name) for name in names}
    tests = sum(int(np.isfinite(v).sum()) for v in z.values())
    for name, values in z.items():
        assert np.all(np.abs(values[np.isfinite(values)]) < z_threshold(tests)), name
