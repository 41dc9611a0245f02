"""The engine reproduces the laws of random relu networks, within sampling error.

Every tolerance is a z-score from the sample itself (standard error over seeds), at a
family-wise error rate of 1e-3 with a Bonferroni correction over layers.
"""

import math

import numpy as np
import pytest
from helpers import slow, z_threshold
from scipy import special, stats

import sweep

ALPHA = 1e-3


def relu_spec(init, gain, width, depth, seeds, batch):
    return sweep.Spec.from_dict({
        "name": "law", "seeds": seeds, "batch": batch, "rng_seed": 7,
        "grid": {"activation": ["relu"], "init": [init], "depth": [depth], "width": [width],
                 "gain": [gain], "bias_std": [0.0]},
    })


def per_network(ds, name):
    """(seed, layer) array of one statistic of a one-point sweep."""
    return ds[name].squeeze(drop=True).transpose("seed", "layer").values


def mean_chi(k):
    """E[χ_k] = √2 Γ((k+1)/2) / Γ(k/2), with χ_0 = 0."""
    k = np.asarray(k, float)
    safe = np.where(k > 0, k, 1.0)
    return np.where(k > 0, np.sqrt(2) * np.exp(special.gammaln((safe + 1) / 2) - special.gammaln(safe / 2)), 0.0)


@pytest.fixture(scope="module")
def he_network():
    return sweep.run(relu_spec("fan_in", math.sqrt(2), 256, 10, 128, 16), progress=False)


def test_he_init_keeps_the_preactivation_second_moment(he_network):
    """E[z_l²] = (2/n) E‖x_{l-1}‖² = E[z_{l-1}²]: exactly 2·E[x_0²] = 2 in every layer."""
    z = per_network(he_network, "preact_meansq")
    se = z.std(0, ddof=1) / np.sqrt(len(z))
    assert np.all(np.abs(z.mean(0) - 2.0) < z_threshold(z.shape[1]) * se)


def test_relu_halves_the_second_moment(he_network):
    """Given x_{l-1}, z_l is symmetric, so E[x_l²] = E[z_l²]/2 exactly."""
    d = per_network(he_network, "act_meansq") - per_network(he_network, "preact_meansq") / 2
    se = d.std(0, ddof=1) / np.sqrt(len(d))
    assert np.all(np.abs(d.mean(0)) < z_threshold(d.shape[1]) * se)


def test_relu_mean_squared_over_second_moment_is_one_over_pi(he_network):
    """E[x]²/E[x²] = 1/π for z of fixed variance; at width n the variance q_b of each example
    fluctuates, and the exact law gives (1/π)(E‖x_{l-1}‖)²/E‖x_{l-1}‖² with
    ‖x_l‖² = ‖x_0‖² Π_j (2/n) χ²_{K_j}, K_j ~ Binomial(n, ½), ‖x_0‖² ~ χ²_n.
    """
    n, depth = 256, 10
    k = np.arange(n + 1)
    mean_chi_k = np.sum(stats.binom.pmf(k, n, 0.5) * mean_chi(k))
    layers = np.arange(1, depth + 1)
    norm_mean_sq = mean_chi(n) ** 2 * ((2 / n) * mean_chi_k**2) ** (layers - 1)
    expected = norm_mean_sq / n / np.pi
    assert np.all(np.diff(expected) < 0) and expected[0] < 1 / np.pi  # fluctuations grow with depth

    m1, m2 = per_network(he_network, "act_mean"), per_network(he_network, "act_meansq")
    a, b = m1.mean(0), m2.mean(0)
    ratio = a**2 / b
    s = len(m1)
    cov = np.array([np.cov(m1[:, l], m2[:, l]) for l in range(depth)])
    var = ratio**2 * (4 * cov[:, 0, 0] / a**2 + cov[:, 1, 1] / b**2 - 4 * cov[:, 0, 1] / (a * b)) / s
    assert np.all(np.abs(ratio - expected) < z_threshold(depth) * np.sqrt(var))


def test_xavier_halves_the_preactivation_second_moment_per_layer():
    """fan_avg with gain 1 at constant width: Var[W] = 1/n, so E[z_{l+1}²] = E[z_l²]/2 = 2^{-l}."""
    ds = sweep.run(relu_spec("fan_avg", 1.0, 256, 8, 128, 16), progress=False)
    z = per_network(ds, "preact_meansq")
    expected = 0.5 ** np.arange(z.shape[1])
    se = z.std(0, ddof=1) / np.sqrt(len(z))
    assert np.all(np.abs(z.mean(0) - expected) < z_threshold(z.shape[1]) * se)
    # He would have kept it at 1: the test can tell the two apart.
    assert np.all(np.abs(z.mean(0)[1:] - 1.0) > z_threshold(z.shape[1]) * se[1:])


def exact_relu_law(width, depth, samples, rng, variance_factor=1.0):
    """Samples of ‖x_L‖²/n for relu, Gaussian fan_in weights with σ_w² = 2·variance_factor, no bias:
    ‖x_0‖² ~ χ²_n and ‖x_l‖² = (2/n)‖x_{l-1}‖² χ²_{K_l}, K_l ~ Binomial(n, ½)."""
    norm = rng.chisquare(width, samples)
    for _ in range(depth):
        k = rng.binomial(width, 0.5, samples)
        chi = np.where(k > 0, rng.chisquare(np.maximum(k, 1)), 0.0)
        norm = norm * (2 * variance_factor / width) * chi
    return norm / width


@pytest.mark.parametrize("width", [slow(16), 64])
def test_last_layer_follows_the_exact_finite_width_law(width):
    depth, seeds = 10, 2048
    ds = sweep.run(relu_spec("fan_in", math.sqrt(2), width, depth, seeds, 1), progress=False)
    engine = per_network(ds, "act_meansq")[:, -1]
    rng = np.random.default_rng(width)
    exact = exact_relu_law(width, depth, 20000, rng)
    assert stats.ks_2samp(engine, exact).pvalue > ALPHA
    # The test has power: a 10% error in the weight variance per layer is detected.
    wrong = exact_relu_law(width, depth, 20000, rng, variance_factor=1.1)
    assert stats.ks_2samp(engine, wrong).pvalue < ALPHA
