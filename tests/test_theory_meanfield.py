"""Mean-field fixed points, χ₁, depth scales and critical gains against known values.

The tanh critical line is the reference table (computed with 121–201-point quadrature,
given to 4 decimals): values must agree to half a unit in the 4th decimal.
"""

import math

import jax.numpy as jnp
import pytest

from sweep import theory
from sweep.theory import closed_forms, meanfield, moments
from sweep.theory.precision import float64

TANH_CRITICAL_LINE = {  # σ_b²: (critical σ_w², q* there)
    0.01: (1.4242, 0.2733),
    0.05: (1.7610, 0.5700),
    0.1: (1.9861, 0.8058),
    0.5: (2.8432, 1.9710),
}


@pytest.mark.parametrize("bias_var", sorted(TANH_CRITICAL_LINE))
def test_tanh_critical_line_matches_the_reference_table(bias_var):
    weight_var, q_star = TANH_CRITICAL_LINE[bias_var]
    bias_std = math.sqrt(bias_var)
    gain = theory.critical_gain("tanh", bias_std)
    assert gain**2 == pytest.approx(weight_var, abs=5e-5)
    assert theory.fixed_point("tanh", gain, bias_std) == pytest.approx(q_star, abs=5e-5)
    assert theory.chi1("tanh", gain, bias_std) == pytest.approx(1.0, abs=1e-10)


def test_fixed_point_is_a_fixed_point_of_the_length_map():
    for name, gain, bias_std in (("tanh", 1.5, 0.3), ("gelu", 1.2, 0.1), ("sigmoid", 3.0, 0.5), ("elu", 1.1, 0.2)):
        q = theory.fixed_point(name, gain, bias_std)
        assert theory.length_map(name, gain, bias_std, q) == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize("gain,bias_std", ((0.8, 0.1), (1.3, 0.3), (2.5, 0.0), (2.0, 1.0)))
def test_erf_fixed_point_and_chi1_match_closed_forms(gain, bias_std):
    q = theory.fixed_point("erf", gain, bias_std)
    mapped = gain**2 * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q)) + bias_std**2
    assert mapped == pytest.approx(q, rel=1e-8, abs=1e-300)
    if q > 0:
        assert theory.chi1("erf", gain, bias_std) == pytest.approx(gain**2 * (4 / math.pi) / math.sqrt(1 + 4 * q),
                                                                   rel=1e-8)


def test_relu_critical_gain_is_root_two_with_or_without_bias():
    assert theory.critical_gain("relu", 0.0) == pytest.approx(math.sqrt(2), rel=1e-14)
    assert theory.critical_gain("relu", 0.3) == pytest.approx(math.sqrt(2), rel=1e-14)
    assert theory.chi1("relu", math.sqrt(2), 0.0) == pytest.approx(1.0, rel=1e-14)


def test_relu_fixed_points_follow_the_linear_length_map():
    # q ↦ (σ_w²/2) q + σ_b²: q* = σ_b²/(1 − σ_w²/2) below criticality, ∞ above, q₁ at it.
    assert theory.fixed_point("relu", 1.2, 0.1) == pytest.approx(0.01 / (1 - 0.72), rel=1e-12)
    assert theory.fixed_point("relu", 1.2, 0.0) == 0.0
    assert theory.fixed_point("relu", 1.5, 0.1) == math.inf
    assert theory.fixed_point("relu", math.sqrt(2), 0.0) == pytest.approx(2.0, rel=1e-14)
    assert theory.chi1("relu", 1.2, 0.1) == pytest.approx(0.72, rel=1e-12)


@pytest.mark.parametrize("slope", (0.01, 0.2, 0.5))
def test_leaky_relu_multiplier_is_one_plus_slope_squared_over_two(slope):
    name = f"leaky_relu({slope})"
    assert theory.critical_gain(name, 0.0) ** 2 == pytest.approx(2 / (1 + slope**2), rel=1e-12)
    assert theory.length_map(name, 1.0, 0.0, 3.0) == pytest.approx(3.0 * (1 + slope**2) / 2, rel=1e-12)
    assert theory.chi1(name, 1.0, 0.0) == pytest.approx((1 + slope**2) / 2, rel=1e-12)


def test_zero_bias_critical_gains_sit_where_the_zero_fixed_point_loses_stability():
    assert theory.critical_gain("tanh", 0.0) == pytest.approx(1.0, rel=1e-12)
    assert theory.critical_gain("erf", 0.0) == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-12)


def test_ordered_phase_correlations_go_to_one_at_the_rate_chi1():
    gain, bias_std = 1.2, math.sqrt(0.05)
    mf = theory.mean_field("tanh", gain, bias_std)
    assert mf.chi1 < 1 and mf.c_star == 1.0
    assert mf.chi_c == pytest.approx(mf.chi1, rel=1e-9)
    assert theory.depth_scales("tanh", gain, bias_std).xi_c == pytest.approx(-1 / math.log(mf.chi1), rel=1e-8)


def test_chaotic_phase_has_a_correlation_fixed_point_below_one():
    gain, bias_std = 2.5, math.sqrt(0.05)
    mf = theory.mean_field("tanh", gain, bias_std)
    assert mf.chi1 > 1 and 0 < mf.c_star < 1
    assert theory.correlation_map("tanh", gain, bias_std, mf.c_star) == pytest.approx(mf.c_star, abs=1e-12)
    assert mf.chi_c < 1 and mf.xi_c == pytest.approx(-1 / math.log(mf.chi_c), rel=1e-12)


def test_depth_scale_of_the_length_map_uses_schoenholz_form():
    """ξ_q⁻¹ = −log(χ₁ + σ_w² E[φ''φ]) with φ'' by autodiff, at q*."""
    for gain, bias_std in ((1.2, 0.2), (1.761 ** 0.5, 0.05 ** 0.5), (2.5, 0.3)):
        q = theory.fixed_point("tanh", gain, bias_std)
        with float64():
            second = float(moments.second_derivative_moment("tanh")(jnp.float64(q)))
        expected = -1 / math.log(theory.chi1("tanh", gain, bias_std) + gain**2 * second)
        assert theory.depth_scales("tanh", gain, bias_std).xi_q == pytest.approx(expected, rel=1e-9)


def test_critical_tanh_has_an_infinite_correlation_depth_scale():
    gain = theory.critical_gain("tanh", math.sqrt(0.05))
    xi_q, xi_c = theory.depth_scales("tanh", gain, math.sqrt(0.05))
    assert xi_c > 1e9 and 0 < xi_q < 10


def test_bias_free_relu_keeps_correlations_polynomially():
    mf = theory.mean_field("relu", math.sqrt(2), 0.0)
    assert mf.c_star == 1.0 and mf.xi_c == math.inf and mf.xi_q == math.inf


def test_relu_correlation_map_is_the_normalised_arc_cosine_kernel():
    c = 0.3
    expected = closed_forms.relu_pair(1.0, 1.0, c) / 0.5
    assert theory.correlation_map("relu", math.sqrt(2), 0.0, c) == pytest.approx(expected, rel=1e-9)
    assert meanfield.correlation_map("relu", 1.0, 0.0, c) == pytest.approx(expected, rel=1e-9)
