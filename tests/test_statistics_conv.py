"""He et al.'s conv derivation, measured: fans count the k² taps, fan_in keeps the forward
second moment and fan_out the backward one (their eqs. 10 and 14).

Networks: relu, k = 3, 64 channels on 16 × 16 images, depth 20, no bias. Every tolerance is a
z-score from the sample (standard error over seeds) at a family-wise error rate of 1e-3,
Bonferroni-corrected over the layers of each test.
"""

import math

import numpy as np
import pytest
from helpers import z_threshold

import sweep

pytestmark = pytest.mark.slow
DEPTH, SEEDS, K = 20, 48, 3
HE = math.sqrt(2.0)
CHANNELS_ONLY = HE * K  # Var[W] = 2/c: the fan taken as the channels alone, k² = 9 times He's


@pytest.fixture(scope="module")
def conv_nets():
    spec = sweep.Spec.from_dict({
        "name": "he-conv", "seeds": SEEDS, "batch": 4, "rng_seed": 3, "loss": "projection",
        "layer": "conv", "spatial": [16, 16],
        "grid": {"activation": ["relu"], "init": ["fan_in", "fan_out"], "profile": ["constant", "alternating"],
                 "depth": [DEPTH], "width": [64], "kernel_size": [K], "gain": [HE, CHANNELS_ONLY]},
    })
    return sweep.run(spec, progress=False)


def per_network(ds, name, **sel):
    """(seed, layer) array of one statistic at one grid point."""
    return ds[name].sel(**sel).squeeze(drop=True).transpose("seed", "layer").values


def z_scores(values, expected):
    """(mean over seeds − expected) / SE, per layer."""
    return (values.mean(0) - expected) / (values.std(0, ddof=1) / np.sqrt(len(values)))


def test_he_fan_counts_the_taps_and_keeps_the_second_moment_flat(conv_nets):
    """fan_in = k²c, σ_w = √2: E[z_l²] = 2 E[x_{l-1}²] = E[z_{l-1}²] exactly, from E[z_1²] = 2."""
    z = per_network(conv_nets, "preact_meansq", init="fan_in", profile="constant", gain=HE)
    assert np.all(np.abs(z_scores(z, 2.0)) < z_threshold(DEPTH))
    theory = conv_nets.theory_preact_meansq.sel(init="fan_in", profile="constant", gain=HE).squeeze(drop=True)
    np.testing.assert_allclose(theory, 2.0, rtol=1e-12)


def test_the_channel_only_fan_grows_the_second_moment_by_k_squared_per_layer(conv_nets):
    """Var[W] = 2/c instead of 2/(k²c): E[z_l²] = 2·9^l, and the theory says so."""
    z = per_network(conv_nets, "preact_meansq", init="fan_in", profile="constant", gain=CHANNELS_ONLY)
    growth = 2.0 * 9.0 ** np.arange(1, DEPTH + 1)
    assert np.all(np.abs(z_scores(z / growth, 1.0)) < z_threshold(DEPTH))
    theory = conv_nets.theory_preact_meansq.sel(init="fan_in", profile="constant", gain=CHANNELS_ONLY)
    np.testing.assert_allclose(theory.squeeze(drop=True), growth, rtol=1e-10)
    # and He's flat law is rejected for these networks from layer 2 on
    assert np.all(np.abs(z_scores(z, 2.0))[1:] > z_threshold(DEPTH))


def test_with_alternating_channels_fan_in_keeps_the_forward_and_fan_out_the_backward(conv_nets):
    """Channels 64, 128, 64, ...: He's eq. 10 (fan_in = k²c_in) holds the forward second moment
    at every layer, eq. 14 (fan_out = k²c_out) the backward one; the other fan zig-zags by 2."""
    threshold = z_threshold(DEPTH)
    forward_in = per_network(conv_nets, "preact_meansq", init="fan_in", profile="alternating", gain=HE)
    assert np.all(np.abs(z_scores(forward_in, 2.0)) < threshold)
    forward_out = per_network(conv_nets, "preact_meansq", init="fan_out", profile="alternating", gain=HE)
    assert np.any(np.abs(z_scores(forward_out, 2.0)) > threshold)  # fan_out does not keep the forward pass
    for init, flat in (("fan_out", True), ("fan_in", False)):
        g = per_network(conv_nets, "grad_act_meansq", init=init, profile="alternating", gain=HE)
        ratio = g[:, :-1] / g[:, 1:]  # E[(∂ℓ/∂x_{l-1})²] / E[(∂ℓ/∂x_l)²]: 1 under fan_out
        theory = conv_nets.theory_grad_act_meansq.sel(init=init, profile="alternating", gain=HE).squeeze(drop=True)
        expected = (theory[:-1].values / theory[1:].values)
        if flat:
            np.testing.assert_allclose(expected, 1.0, rtol=1e-12)
        else:
            np.testing.assert_allclose(expected, np.where(np.arange(2, DEPTH + 1) % 2 == 0, 2.0, 0.5), rtol=1e-12)
        assert np.all(np.abs(z_scores(ratio, expected)) < z_threshold(DEPTH - 1))


def test_every_conv_theory_variable_agrees_with_the_measurement(conv_nets):
    """Every theory_* variable within the Bonferroni threshold over every layer, statistic and grid point."""
    names = ["preact_meansq", "act_meansq", "act_mean", "grad_act_meansq", "grad_preact_meansq",
             "grad_weight_meansq", "dead_fraction"]
    tests = len(names) * DEPTH * 8
    for name in names:
        measured = conv_nets[name] / conv_nets["theory_" + name]
        mean, se = measured.mean("seed"), measured.std("seed", ddof=1) / np.sqrt(SEEDS)
        z = ((mean - 1) / se).values
        assert np.all(np.abs(z[np.isfinite(z)]) < z_threshold(tests)), name
