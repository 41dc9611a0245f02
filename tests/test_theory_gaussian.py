"""Gaussian expectations: the quadrature meets closed forms and adaptive references.

Tolerances: the one-variable rule reaches float64 round-off, so it is held to 1e-12 relative
(1e-8 is the spec); the pair rule to 1e-9 (its design accuracy is 1e-10).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import slow
from scipy import integrate, special

from sweep.config import activations
from sweep.theory import closed_forms, gaussian, moments
from sweep.theory.precision import float64

QS = (1e-3, 0.1, 0.57, 1.0, 10.0, 1e3)
PAIRS = ((1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (2.0, 2.0, 0.999), (50.0, 50.0, 0.9), (1e-3, 2e-3, 0.2), (1.0, 3.0, 0.0))


def single(name, q):
    with float64():
        return moments.single(name)(jnp.float64(q))


def pair(name, q1, q2, c):
    with float64():
        return moments.pair(name)(jnp.float64(q1), jnp.float64(q2), jnp.float64(c * math.sqrt(q1 * q2)))


def reference(f, q):
    """∫ f(√q s) Dz(s) by adaptive quadrature, split at 0."""
    g = lambda s: f(math.sqrt(q) * s) * math.exp(-s * s / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-13, limit=400)[0] for a, b in ((-40, 0), (0, 40)))


def test_rule_integrates_even_gaussian_moments_exactly():
    with float64():
        for k in range(1, 9):
            value = gaussian.expect(lambda u: u ** (2 * k), jnp.float64(0.7))
            exact = special.factorial2(2 * k - 1) * 0.7**k
            assert float(value) == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("q", QS)
def test_erf_second_moments_match_closed_forms(q):
    m = single("erf", q)
    assert float(m.meansq) == pytest.approx(closed_forms.erf_pair(q, q, q), rel=1e-12)
    assert float(m.slope_sq) == pytest.approx(4 / math.pi / math.sqrt(1 + 4 * q), rel=1e-12)


@pytest.mark.parametrize("q1,q2,c", PAIRS)
def test_erf_pairs_match_closed_forms(q1, q2, c):
    m = pair("erf", q1, q2, c)
    cov = c * math.sqrt(q1 * q2)
    assert float(m.cross) == pytest.approx(closed_forms.erf_pair(q1, q2, cov), rel=1e-9, abs=1e-15)
    assert float(m.slope_cross) == pytest.approx(closed_forms.erf_slope_pair(q1, q2, cov), rel=1e-9)


@pytest.mark.parametrize("q", QS)
def test_relu_moments_match_closed_forms(q):
    m = single("relu", q)
    mean, meansq, slope_sq = closed_forms.relu_moments(q)
    assert float(m.mean) == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-12) and mean == pytest.approx(
        float(m.mean), rel=1e-12)
    assert float(m.meansq) == pytest.approx(q / 2, rel=1e-12)
    assert float(m.meansq - m.mean**2) == pytest.approx(q * (math.pi - 1) / (2 * math.pi), rel=1e-12)
    assert float(m.slope_sq) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("q1,q2,c", PAIRS)
def test_relu_pairs_match_the_arc_cosine_kernel(q1, q2, c):
    m = pair("relu", q1, q2, c)
    cov = c * math.sqrt(q1 * q2)
    assert float(m.cross) == pytest.approx(closed_forms.relu_pair(q1, q2, cov), rel=1e-9)
    assert float(m.slope_cross) == pytest.approx(closed_forms.relu_slope_pair(q1, q2, cov), rel=1e-9)


@pytest.mark.parametrize("slope", (0.01, 0.2))
def test_leaky_relu_matches_closed_forms(slope):
    name = f"leaky_relu({slope})"
    for q in (0.3, 4.0):
        m = single(name, q)
        assert float(m.meansq) == pytest.approx((1 + slope**2) * q / 2, rel=1e-12)
        assert float(m.slope_sq) == pytest.approx((1 + slope**2) / 2, rel=1e-12)
    for q1, q2, c in PAIRS:
        m = pair(name, q1, q2, c)
        cov = c * math.sqrt(q1 * q2)
        assert float(m.cross) == pytest.approx(closed_forms.leaky_relu_pair(slope, q1, q2, cov), rel=1e-9)
        assert float(m.slope_cross) == pytest.approx(
            closed_forms.leaky_relu_slope_pair(slope, q1, q2, cov), rel=1e-9)


@pytest.mark.parametrize("name", ("tanh", "elu", "selu", "gelu", "silu", "sigmoid"))
@pytest.mark.parametrize("q", (0.01, 1.0, 100.0))
def test_kinked_and_smooth_activations_match_adaptive_quadrature(name, q):
    phi = activations.get(name).fn
    f = lambda u: float(phi(jnp.float64(u)) ** 2)  # noqa: E731
    with float64():
        expected = reference(f, q)
    assert float(single(name, q).meansq) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("name", ("tanh", "relu", "elu", "gelu"))
def test_pair_at_full_correlation_is_the_one_variable_moment(name):
    for q in (0.2, 3.0):
        s, p = single(name, q), pair(name, q, q, 1.0)
        assert float(p.cross) == pytest.approx(float(s.meansq), rel=1e-10)
        assert float(p.slope_cross) == pytest.approx(float(s.slope_sq), rel=1e-10)
        assert float(p.square_slope_cross) == pytest.approx(float(s.square_slope_sq), rel=1e-10)


def test_pair_without_correlation_factorises():
    for name in ("relu", "sigmoid", "elu"):
        s, p = single(name, 0.8), pair(name, 0.8, 0.8, 0.0)
        assert float(p.cross) == pytest.approx(float(s.mean) ** 2, rel=1e-10)


def test_tanh_anticorrelated_pair_is_minus_the_second_moment():
    assert float(pair("tanh", 0.9, 0.9, -1.0).cross) == pytest.approx(-float(single("tanh", 0.9).meansq), rel=1e-10)


def test_length_map_slope_is_chi1_plus_the_second_derivative_term():
    """d E[φ²]/dq (by integration by parts) equals E[φ'²] + E[φ''φ] with φ'' by autodiff."""
    for name in ("tanh", "erf", "gelu", "silu"):
        for q in (0.05, 0.57, 3.0):
            m = single(name, q)
            with float64():
                second = moments.second_derivative_moment(name)(jnp.float64(q))
            assert float(m.meansq_slope) == pytest.approx(float(m.slope_sq + second), rel=1e-10)


@pytest.mark.parametrize("name", ("relu", "elu", "selu", "leaky_relu(0.2)"))
def test_length_map_slope_matches_a_finite_difference_at_kinks(name):
    q, h = 1.3, 1e-5
    difference = (float(single(name, q + h).meansq) - float(single(name, q - h).meansq)) / (2 * h)
    assert float(single(name, q).meansq_slope) == pytest.approx(difference, rel=1e-8)


def test_all_dead_probability_matches_orthant_probabilities():
    with float64():
        p = lambda c, b: float(moments.all_dead_probability(jnp.float64(c), b))  # noqa: E731
        assert p(0.0, 5) == pytest.approx(2.0**-5, rel=1e-12)
        assert p(1.0, 7) == 0.5
        for c in (0.1, 0.5, 0.95):  # bivariate orthant: 1/4 + arcsin(c)/(2π)
            assert p(c, 2) == pytest.approx(0.25 + math.asin(c) / (2 * math.pi), rel=1e-10)
        for c in (0.2, 0.7):  # trivariate: 1/8 + 3 arcsin(c)/(4π)
            assert p(c, 3) == pytest.approx(0.125 + 3 * math.asin(c) / (4 * math.pi), rel=1e-10)


def test_theory_leaves_the_global_float32_default_alone():
    single("tanh", 0.5)
    pair("tanh", 0.5, 0.5, 0.2)
    assert not jax.config.jax_enable_x64
    assert jnp.ones(1).dtype == jnp.float32
    assert np.asarray(single("tanh", 0.5).meansq).dtype == np.float64


PIECEWISE_LINEAR = ("leaky_relu(0.2)", slow("relu"), slow("leaky_relu(-0.5)"), slow("linear"))


@pytest.mark.parametrize("name", PIECEWISE_LINEAR)
def test_piecewise_linear_closed_forms_equal_the_quadrature(name):
    """The recursions' closed forms against the rules they replace: every moment, every pair
    field, correlations from −1 to 1, unequal variances, and a variance of 0 (where the
    quadrature sees φ(0) and φ'(0) only). Absolute floor 1e-15 of the moment's scale: linear
    φ has E[φ] = 0, which the quadrature gets to round-off."""
    with float64():
        closed_single, closed_pair = moments.rules(name)
        assert closed_single is moments.piecewise_linear_single(name)
        for q in (0.0, 1e-6, 0.3, 1.0, 7.0, 1e6):
            expected, got = moments.single(name)(jnp.float64(q)), closed_single(jnp.float64(q))
            for e, g in zip(expected, got):
                assert float(g) == pytest.approx(float(e), rel=1e-12, abs=1e-15 * max(q, 1.0))
            for q2 in (0.0, q, 2.5):
                for c in (-1.0, -0.7, 0.0, 0.3, 0.999, 1.0):
                    args = (jnp.float64(q), jnp.float64(q2), jnp.float64(c * math.sqrt(q * q2)))
                    for e, g in zip(moments.pair(name)(*args), closed_pair(*args)):
                        assert float(g) == pytest.approx(float(e), rel=1e-9, abs=1e-15 * max(q, q2, 1.0))


def test_the_comparison_tells_a_slope_of_0_21_from_0_2():
    """Power: the tolerances above reject the closed forms of a neighbouring leaky relu."""
    with float64():
        args = (jnp.float64(1.3), jnp.float64(1.3), jnp.float64(0.4))
        quadrature, neighbour = moments.pair("leaky_relu(0.2)")(*args), moments.piecewise_linear_pair("leaky_relu(0.21)")(*args)
        for e, g in zip(quadrature, neighbour):
            assert float(g) != pytest.approx(float(e), rel=1e-9, abs=1e-15)


def test_smooth_and_kinked_activations_keep_the_quadrature():
    for name in ("tanh", "gelu", "selu", "elu", "erf"):
        assert moments.rules(name) == (moments.single(name), moments.pair(name))


def test_merged_edges_are_the_sorted_edges():
    """The rules' edges, merged from ascending runs, equal ``jnp.sort`` of them, ties and clipping included."""
    rng = np.random.default_rng(0)
    with float64():
        uniform = jnp.asarray(np.arange(-12.0, 12.5, 2.0))
        for centre in (0.0, 2.0, -11.5, 13.0, 0.3, *rng.uniform(-14, 14, 20)):
            offsets = 2 * 0.3 ** np.arange(10)
            graded = jnp.clip(jnp.concatenate([centre - offsets, jnp.array([centre]), centre + offsets[::-1]]), -12, 12)
            other = jnp.clip(jnp.asarray(sorted(rng.uniform(-13, 13, 5).round(1))), -12, 12)
            for runs in ([uniform, graded], [uniform, graded, other]):
                np.testing.assert_array_equal(gaussian._merge(runs), jnp.sort(jnp.concatenate(runs)))
