"""predict(spec): layout beside the measurement and the recursions' exact identities."""

import math

import numpy as np
import pytest
import xarray as xr

from sweep import Grid, Spec
from sweep.config import GRID_AXES, profiles
from sweep.io import schema as store
from sweep.theory import closed_forms, finite_width, predict
from sweep.theory.predict import LAYER_STATS, LOG_NORM_STATS

RELU = dict(activation=("relu",), gain=(math.sqrt(2),), bias_std=(0.0,))


def relu_spec(**grid):
    return Spec(seeds=2, batch=4, grid=Grid(**{**RELU, **grid}))


def test_dataset_aligns_with_the_measurement_layout():
    spec = Spec(seeds=3, batch=2, grid=Grid(activation=("relu", "tanh"), init=("fan_in", "orthogonal"),
                                            profile=("constant", "alternating"), depth=(2, 5), width=(8, 16),
                                            gain=(1.0, 1.5), bias_std=(0.0, 0.2)))
    measured = store.to_dataset(spec, store.empty_arrays(spec))
    theory = predict(spec)
    for stat in LAYER_STATS:
        assert theory[f"theory_{stat}"].dims == measured[stat].dims[:-2] + ("layer",)
    assert theory["theory_loss"].dims == GRID_AXES
    for axis in GRID_AXES + ("layer",):
        assert theory[axis].dtype == measured[axis].dtype
        np.testing.assert_array_equal(theory[axis].values, measured[axis].values)
    xr.align(measured, theory, join="exact")
    ratio = measured.preact_meansq / theory.theory_preact_meansq
    assert ratio.dims == measured.preact_meansq.dims


def test_layers_beyond_a_network_depth_are_nan():
    theory = predict(relu_spec(depth=(2, 4)))
    short = theory.sel(depth=2).theory_preact_meansq
    assert np.isfinite(short.sel(layer=[1, 2])).all() and np.isnan(short.sel(layer=[3, 4])).all()
    assert np.isfinite(theory.sel(depth=4).theory_grad_weight_meansq).all()


def test_he_init_keeps_relu_signals_and_gradients_flat():
    # The projection readout's gradient is independent of x_L, so G_L = G_{L-1} exactly
    # (the mse readout adds a last-layer correction, tested below).
    theory = predict(relu_spec(depth=(6,), width=(32,)).replace(loss="projection")).squeeze()
    np.testing.assert_allclose(theory.theory_preact_meansq, 2.0, rtol=1e-12)
    np.testing.assert_allclose(theory.theory_act_meansq, 1.0, rtol=1e-12)
    np.testing.assert_allclose(theory.theory_act_mean, 1 / math.sqrt(math.pi), rtol=1e-12)
    np.testing.assert_allclose(theory.theory_act_var, 1 - 1 / math.pi, rtol=1e-12)
    grad = theory.theory_grad_act_meansq.values
    np.testing.assert_allclose(grad, grad[-1], rtol=1e-12)


def test_fan_out_on_unequal_widths_makes_the_forward_product_a_width_ratio():
    """He et al.: with only the backward condition, E[x_l²] = n_0/n_l instead of a power of depth."""
    depth, width = 7, 16
    widths = profiles.widths("alternating", width, depth)
    theory = predict(relu_spec(init=("fan_out",), profile=("alternating",), depth=(depth,), width=(width,)))
    act = theory.theory_act_meansq.squeeze().values
    np.testing.assert_allclose(act, [widths[0] / n for n in widths[1:]], rtol=1e-12)
    grad = theory.theory_grad_preact_meansq.squeeze().values
    np.testing.assert_allclose(grad, grad[-1], rtol=1e-12)


def test_fan_in_on_unequal_widths_makes_the_backward_product_a_width_ratio():
    depth, width = 7, 16
    widths = profiles.widths("alternating", width, depth)
    spec = relu_spec(init=("fan_in",), profile=("alternating",), depth=(depth,), width=(width,))
    theory = predict(spec.replace(loss="projection"))
    np.testing.assert_allclose(theory.theory_act_meansq.squeeze(), 1.0, rtol=1e-12)
    grad = theory.theory_grad_act_meansq.squeeze().values
    np.testing.assert_allclose(grad / grad[-1], [widths[-1] / n for n in widths[1:]], rtol=1e-12)


def test_fan_avg_and_orthogonal_use_their_own_fans():
    depth, width = 3, 8
    n = profiles.widths("alternating", width, depth)
    for init, fan in (("fan_avg", lambda a, b: (a + b) / 2), ("orthogonal", max)):
        theory = predict(relu_spec(init=(init,), profile=("alternating",), depth=(depth,), width=(width,)))
        q, m = [], 1.0
        for l in range(1, depth + 1):
            q.append(2 * n[l - 1] / fan(n[l - 1], n[l]) * m)
            m = q[-1] / 2
        np.testing.assert_allclose(theory.theory_preact_meansq.squeeze(), q, rtol=1e-12)


def test_mse_readout_gradient_is_exact_given_the_last_layer():
    """E[(∂ℓ/∂x_L)²] per unit = (O/n)(1 + m (1 + (O+1)/n)) for a Gaussian readout and targets."""
    outputs, width = 10, 64
    spec = relu_spec(depth=(3,), width=(width,)).replace(outputs=outputs)
    last = predict(spec).squeeze().isel(layer=-1)
    m = float(last.theory_act_meansq)
    expected = outputs / width * (1 + m * (1 + (outputs + 1) / width))
    assert float(last.theory_grad_act_meansq) == pytest.approx(expected, rel=1e-12)
    assert float(predict(spec).theory_loss.squeeze()) == pytest.approx(outputs / 2 * (m + 1), rel=1e-12)


def test_projection_readout_gradient_is_one_over_width():
    spec = relu_spec(depth=(3,), width=(64,)).replace(loss="projection")
    theory = predict(spec).squeeze()
    assert float(theory.theory_grad_act_meansq.isel(layer=-1)) == pytest.approx(1 / 64, rel=1e-12)
    assert float(theory.theory_grad_preact_meansq.isel(layer=-1)) == pytest.approx(0.5 / 64, rel=1e-12)
    assert float(theory.theory_loss) == 0.0


def test_weight_gradient_mixes_the_batch_through_cross_example_moments():
    """Layer 1 sees independent inputs (no cross term); deeper layers add (1 − 1/B) K D×."""
    spec = relu_spec(depth=(3,), width=(64,)).replace(loss="projection")
    one = predict(spec.replace(batch=1)).squeeze()
    many = predict(spec.replace(batch=8)).squeeze()
    g1, g8 = one.theory_grad_weight_meansq.values, many.theory_grad_weight_meansq.values
    assert g8[0] == pytest.approx(g1[0] / 8, rel=1e-12)
    np.testing.assert_allclose(g1, one.theory_grad_preact_meansq.values * np.r_[1.0, one.theory_act_meansq[:-1]])
    # Layer 2 with projection: D×_2 = (1/n) E[relu'relu'] at the layer's correlation c₂ = 1/π.
    k1 = closed_forms.relu_pair(2.0, 2.0, 0.0)
    q, cov = 2.0, 2.0 * k1
    d_cross = 2.0 * closed_forms.relu_slope_pair(q, q, cov) * (1 / 64) * closed_forms.relu_slope_pair(
        q, q, 2.0 * closed_forms.relu_pair(q, q, cov))
    expected = (1.0 * one.theory_grad_preact_meansq.values[1]) / 8 + (7 / 8) * k1 * d_cross
    assert g8[1] == pytest.approx(expected, rel=1e-9)


def test_dead_fraction_is_the_batch_orthant_probability():
    theory = predict(relu_spec(depth=(2,), width=(16,)).replace(batch=2)).squeeze()
    assert float(theory.theory_dead_fraction.isel(layer=0)) == pytest.approx(0.25, rel=1e-12)
    c = 1 / math.pi  # correlation after one relu layer from independent inputs
    assert float(theory.theory_dead_fraction.isel(layer=1)) == pytest.approx(0.25 + math.asin(c) / (2 * math.pi),
                                                                              rel=1e-9)
    tanh = predict(Spec(batch=2, grid=Grid(activation=("tanh",), depth=(2,), width=(16,))))
    assert float(abs(tanh.theory_dead_fraction).max()) == 0.0


def test_log_norm_law_appears_only_where_it_is_exact():
    spec = Spec(grid=Grid(activation=("relu", "tanh"), init=("fan_in", "orthogonal"), depth=(4,), width=(16,),
                          gain=(math.sqrt(2),), bias_std=(0.0, 0.1)))
    theory = predict(spec)
    exact = theory.theory_log_act_norm_mean.sel(activation="relu", init="fan_in", bias_std=0.0).squeeze()
    assert np.isfinite(exact).all()
    others = theory.theory_log_act_norm_mean.drop_sel(activation="relu")
    assert np.isnan(others).all()
    assert np.isnan(theory.theory_log_act_norm_mean.sel(init="orthogonal")).all()
    assert np.isnan(theory.theory_log_act_norm_mean.sel(bias_std=0.1)).all()
    # Each layer adds E[log R] of the reference table (n = 16: −0.1764 ± 5e-5).
    np.testing.assert_allclose(np.diff(exact.values), -0.1764, atol=5e-5)
    var = theory.theory_log_act_norm_var.sel(activation="relu", init="fan_in", bias_std=0.0).squeeze().values
    np.testing.assert_allclose(np.diff(var), 0.4196, atol=5e-5)
    for stat in LOG_NORM_STATS:
        assert theory[f"theory_{stat}"].dims == GRID_AXES + ("layer",)


def test_reference_table_of_the_exact_law():
    assert finite_width.log_ratio_moments(16).mean == pytest.approx(-0.1764, abs=5e-5)
    assert finite_width.log_ratio_moments(16).var == pytest.approx(0.4196, abs=5e-5)
    assert finite_width.log_ratio_moments(64).mean == pytest.approx(-0.0401, abs=5e-5)
    assert finite_width.log_ratio_moments(64).var == pytest.approx(0.0830, abs=5e-5)


def test_exact_law_approaches_its_large_width_form():
    for n in (256, 1024, 4096):
        exact = finite_width.log_ratio_moments(n)
        assert exact.mean * n == pytest.approx(-2.5, rel=12 / n)
        assert exact.var * n == pytest.approx(5.0, rel=12 / n)
