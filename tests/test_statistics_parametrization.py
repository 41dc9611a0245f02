"""Parametrisations in a statistics sweep: the same effective network, μP's probe readout, and the gradient
and SGD step of each trained tensor (``grad_param_meansq``, ``sgd_update_meansq``), measured and predicted."""

import numpy as np
import pytest
from helpers import slow, z_threshold

import sweep
from sweep import plan, theory
from sweep.config import parametrizations
from sweep.errors import SpecError

PARAMETRIZATIONS = ["standard", "ntk", "mup"]
TRAINED = ("grad_param_meansq", "sgd_update_meansq")


def spec(width, base_width=16, **changes) -> sweep.Spec:
    grid = {"activation": ["relu"], "depth": [3], "width": [width], "gain": [1.2, 1.5], "bias_std": [0.0, 0.1],
            "parametrization": PARAMETRIZATIONS, **changes.pop("grid", {})}
    return sweep.Spec.from_dict({"name": "param", "seeds": 3, "batch": 4, "base_width": base_width, "grid": grid,
                                 **changes})


def by(ds, name):
    return ds.sel(parametrization=name)


def test_a_statistics_spec_takes_the_axis_and_base_width_and_refuses_them_apart():
    s = spec(64)
    assert s.grid.axes[5] == "parametrization" and s.base_width == 16
    assert sweep.Spec.from_dict(s.to_dict()) == s and sweep.Spec.from_json(s.to_json()) == s
    with pytest.raises(SpecError, match="^base_width: missing"):
        sweep.Spec.from_dict({"grid": {"parametrization": ["standard", "mup"]}})
    with pytest.raises(SpecError, match="^base_width: is only for"):
        sweep.Spec.from_dict({"base_width": 8})
    with pytest.raises(SpecError, match="^grid.parametrization: unknown parametrization 'sp'"):
        sweep.Spec.from_dict({"grid": {"parametrization": ["sp"]}})
    assert "base_width" not in sweep.Spec.from_dict({}).to_dict()


def test_the_factors_are_the_tables_for_a_network_whose_input_grows_with_width():
    # Every layer of a statistics network, the first too (its input has `width` dimensions), is a hidden one.
    s = spec(64, grid={"profile": ["alternating"], "depth": [4]})
    for name in PARAMETRIZATIONS:
        factors = plan.trained_factors(s, ("relu", "fan_in", "alternating", 4, 64, name))
        a = parametrizations.rule(name, "hidden", 4.0, 4.0).multiplier
        c = parametrizations.rule(name, "hidden", 4.0, 4.0, "sgd").learning_rate
        np.testing.assert_array_equal(factors.grad_param, np.full(4, a**2))
        np.testing.assert_array_equal(factors.sgd_update, np.full(4, (c * a**2) ** 2))
        assert factors.readout == (0.5 if name == "mup" else 1.0)  # μP: m_in^-1/2 of the width it reads, m = 4


def test_at_the_base_width_every_parametrization_is_the_standard_network_bit_for_bit():
    ds = sweep.run(spec(16, grid={"gain": [1.5]}), progress=False)
    with_axis = [name for name in ds.data_vars if "parametrization" in ds[name].dims]
    assert {"grad_param_meansq", "sgd_update_meansq", "theory_grad_param_meansq", "theory_fw_loss"} <= set(with_axis)
    for name in with_axis:
        for other in ("ntk", "mup"):
            np.testing.assert_array_equal(by(ds, other)[name].values, by(ds, "standard")[name].values,
                                          err_msg=f"{name} {other}")
    for stat in TRAINED:
        np.testing.assert_array_equal(ds[stat].values, ds.grad_weight_meansq.values)
    assert ds.attrs["base_width"] == 16 and ds.attrs["parametrization_table"] == parametrizations.TABLE


def run_at_four_times_the_base_width(loss: str):
    """relu He, depth 6, width 128 against base 32 (m = 4; μP's readout variance 1/4), batch 1 (the exact
    finite-width means apply to every backward statistic), 512 networks per parametrisation."""
    s = sweep.Spec.from_dict({"name": "param", "seeds": 512, "batch": 1, "loss": loss, "base_width": 32,
                              "grid": {"activation": ["relu"], "depth": [6], "width": [128],
                                       "parametrization": PARAMETRIZATIONS}})
    assert [g.jobs[0].prefix.readout_scale for g in plan.make_plan(s).groups] == [1.0, 1.0, 0.5]
    return sweep.run(s, progress=False)


@pytest.fixture(scope="module")
def mse():
    return run_at_four_times_the_base_width("mse")


def test_ntk_is_the_standard_network_with_a_squared_times_its_gradient_and_mup_changes_the_readout_only(mse):
    standard, ntk, mup = (by(mse, name) for name in PARAMETRIZATIONS)
    a2 = parametrizations.rule("ntk", "hidden", 4.0, 4.0).multiplier ** 2
    measured = [name for name in sweep.io.schema.measured(ds_spec(mse)) if name not in TRAINED]
    for name in measured:  # the same draws and effective weights, and NTK's probe readout is the standard one
        np.testing.assert_array_equal(ntk[name].values, standard[name].values, err_msg=name)
    for prefix in ("", "theory_", "theory_fw_"):
        weight = standard[f"{prefix}grad_weight_meansq"].values
        assert np.all(np.isfinite(weight)), prefix
        np.testing.assert_array_equal(ntk[f"{prefix}grad_param_meansq"].values, weight * a2)
        np.testing.assert_array_equal(ntk[f"{prefix}sgd_update_meansq"].values, weight * a2**2)  # SGD factor 1
    forward = [name for name in measured if name.startswith(("preact", "act", "dead"))]
    for name in forward:
        np.testing.assert_array_equal(mup[name].values, standard[name].values, err_msg=name)
    for name in ("loss", "grad_act_meansq", "grad_weight_meansq"):
        assert np.all(mup[name].values != standard[name].values), name
    for stat in TRAINED:  # μP's hidden layers: a = 1 and an SGD factor of 1
        np.testing.assert_array_equal(mup[stat].values, mup.grad_weight_meansq.values)


def ds_spec(ds) -> sweep.Spec:
    return sweep.Spec.from_json(ds.attrs["spec"])


def check_mup_against_theory(ds, loss: str):
    """Every backward statistic and the loss of μP's networks within the Bonferroni threshold of their exact
    finite-width means, and the standard readout's means (the same networks at s² = 1) rejected."""
    dev = theory.deviation(ds.sel(parametrization=["mup"]))
    stats = ["fw_grad_act_meansq", "fw_grad_preact_meansq", "fw_grad_weight_meansq"] + (["fw_loss"] if loss == "mse" else [])
    z = np.concatenate([dev[k].values.ravel() for k in stats])
    assert np.all(np.isfinite(z)) and z.size == 3 * 6 + (1 if loss == "mse" else 0)
    threshold = z_threshold(z.size)
    assert np.max(np.abs(z)) < threshold, dict(zip(stats, (np.round(dev[k].values.ravel(), 2) for k in stats)))
    mup, wrong = by(ds, "mup"), by(ds, "standard")
    for stat in ("grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq") + (("loss",) if loss == "mse" else ()):
        x = mup[stat]
        z_wrong = (x.mean("seed") - wrong[f"theory_fw_{stat}"]) / (x.std("seed", ddof=1) / np.sqrt(x.sizes["seed"]))
        assert np.all(np.abs(z_wrong.values) > threshold), (stat, z_wrong.values)


def test_mups_readout_and_its_effect_on_the_backward_statistics_agree_with_theory(mse):
    check_mup_against_theory(mse, "mse")


@pytest.mark.slow
def test_mups_projection_readout_scales_every_backward_statistic_as_theory_says():
    check_mup_against_theory(run_at_four_times_the_base_width("projection"), "projection")


@pytest.mark.parametrize("family", [{"block": "residual"}, slow({"layer": "conv", "spatial": [8]})])
def test_residual_and_conv_networks_take_the_axis_and_the_projections_theory_scales_by_the_readout_variance(family):
    s = sweep.Spec.from_dict({"name": "param", "seeds": 4, "batch": 2, "loss": "projection", "base_width": 8, **family,
                              "grid": {"depth": [2], "width": [32], "parametrization": PARAMETRIZATIONS}})
    ds = sweep.run(s, progress=False)
    standard, ntk, mup = (by(ds, name) for name in PARAMETRIZATIONS)
    assert ds.grad_param_meansq.dims == ds.grad_weight_meansq.dims
    np.testing.assert_array_equal(ntk.grad_param_meansq.values, standard.grad_weight_meansq.values * 0.25)
    # The projection's loss is linear in it: μP's readout at 1/2 the standard scale quarters every backward mean.
    for stat in ("grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq"):
        np.testing.assert_allclose(mup[f"theory_{stat}"].values, standard[f"theory_{stat}"].values / 4, rtol=1e-12)
        np.testing.assert_allclose(mup[stat].values, standard[stat].values / 4, rtol=1e-5)
