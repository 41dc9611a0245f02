"""Parametrisations: Tensor Programs V's table, what it does to a network's init and first step, and the
coordinate check it is judged by."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import plan
from sweep.config import TrainSpec, parametrizations
from sweep.errors import SpecError
from sweep.model import network
from sweep.report.numbers import width_slope
from sweep.train import data as datasets
from sweep.train import loop, schedule

PARAMETRIZATIONS = ["standard", "ntk", "mup"]


def spec(**changes) -> TrainSpec:
    raw = {"kind": "train", "name": "param", "dataset": "digits", "seeds": 2, "batch": 16, "steps": 3, "eval_every": 3,
           "base_width": 16, "grid": {"activation": ["relu"], "depth": [2], "width": [32],
                                      "parametrization": PARAMETRIZATIONS, "learning_rate": [0.05]}}
    grid = changes.pop("grid", {})
    raw.update(changes)
    raw["grid"] = {**raw["grid"], **grid}
    return TrainSpec.from_dict(raw)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_rules_are_tensor_programs_v_table_3(optimizer):
    m = 4.0  # every width four times the base
    rule = lambda name, role, m_in, m_out: parametrizations.rule(name, role, m_in, m_out, optimizer)
    for role in parametrizations.ROLES:
        assert rule("standard", role, m, m) == (1.0, 1.0, 1.0)
    assert rule("ntk", "hidden", m, m) == (1.0, 0.5, 1.0)  # a = m_in^-1/2, effective weights standard
    assert rule("ntk", "input", 1.0, m) == (1.0, 1.0, 1.0)
    assert rule("ntk", "readout", m, 1.0) == (1.0, 0.5, 1.0)
    assert rule("ntk", "bias", 1.0, m) == (1.0, 1.0, 1.0)
    assert rule("mup", "readout", m, 1.0) == (0.5, 1.0, 1 / m)  # init variance 1/fan_in², learning rate 1/m
    sgd = optimizer == "sgd"
    assert rule("mup", "input", 1.0, m) == (1.0, 1.0, m if sgd else 1.0)
    assert rule("mup", "hidden", m, m) == (1.0, 1.0, 1.0 if sgd else 1 / m)
    assert rule("mup", "bias", 1.0, m) == (1.0, 1.0, m if sgd else 1.0)


def test_a_bad_parametrization_or_base_width_is_refused_naming_the_field():
    with pytest.raises(SpecError, match="grid.parametrization.*allowed: standard, ntk, mup"):
        spec(grid={"parametrization": ["mu_p"]})
    with pytest.raises(SpecError, match="^base_width: missing"):
        TrainSpec.from_dict({"kind": "train", "grid": {"parametrization": ["mup"]}})
    with pytest.raises(SpecError, match="^base_width: is only for"):
        TrainSpec.from_dict({"kind": "train", "base_width": 8, "grid": {"parametrization": ["standard"]}})
    with pytest.raises(SpecError, match="^base_width: must be"):
        spec(base_width=0)
    with pytest.raises(SpecError, match="^readout_init: "):
        spec(readout_init="small")


def test_a_spec_without_the_new_keys_reads_as_it_always_has():
    plain = TrainSpec.from_dict({"kind": "train"})
    assert plain.grid.parametrization == () and "parametrization" not in plain.grid.axes
    assert not {"parametrization", "coord_steps", "readout_init", "base_width"} & (set(plain.to_dict()) |
                                                                                 set(plain.to_dict()["grid"]))
    assert spec().grid.axes[5] == "parametrization"
    assert TrainSpec.from_dict(spec().to_dict()) == spec()


@pytest.mark.slow
def test_at_the_base_width_every_parametrization_takes_the_same_first_step():
    at_base = spec(grid={"width": [16]})
    before, after, _ = _first_update(at_base, "standard")
    for other in PARAMETRIZATIONS[1:]:
        jax.tree.map(np.testing.assert_array_equal, _first_update(at_base, other)[:2], (before, after))


@pytest.mark.slow
def test_at_the_base_width_every_parametrization_trains_the_same_network():
    ds = sweep.run(spec(grid={"width": [16]}, seeds=1, steps=2, eval_every=2, coord_steps=1), progress=False)
    measured = [name for name in ds.data_vars if "parametrization" in ds[name].dims]
    assert {"train_loss", "test_loss", "coord_act_abs_mean", "init_grad_weight_meansq"} <= set(measured)
    for name in measured:
        for other in PARAMETRIZATIONS[1:]:
            np.testing.assert_array_equal(ds[name].sel(parametrization=other).values,
                                          ds[name].sel(parametrization="standard").values, err_msg=f"{name} {other}")


def _first_update(the_spec, parametrization):
    """Effective parameters before and after one SGD step of the first network, and its trainer's module."""
    the_plan = plan.make_plan(the_spec, "1GB")
    group = next(g for g in the_plan.groups if dict(zip(g.axes, g.values))["parametrization"] == parametrization)
    job = group.jobs[1]
    data = datasets.load(the_spec.dataset)
    config = loop.Config(job.arch, data.n_outputs, data.task, the_spec.optimizer, "highest", data.n_features, 0,
                         job.parametrization, job.base, the_spec.readout_init)
    trainer = loop.make_trainer(config, job.micro_batch)
    positions = the_plan.positions(job, np.arange(1))
    keys = jnp.asarray(the_plan.key_indices(group, job, positions), jnp.uint32)
    ones = jnp.ones(keys.shape, jnp.float32)
    state = trainer.init(jnp.uint32(the_spec.rng_seed), keys, np.sqrt(2.0) * ones, 0.0 * ones)
    module = config.module
    effective = lambda params: params if module.standard else jax.tree.map(jnp.multiply, params, module.scaling().multiplier)
    before = effective(jax.tree.map(lambda a: a[0], state.params))
    rows = jnp.asarray(schedule.batch_rows(the_spec.rng_seed, len(data.x_train), the_spec.batch, 0, 1))
    state, _ = trainer.train(state, the_spec.grid.learning_rate[0] * ones, jnp.asarray(data.x_train),
                             jnp.asarray(data.y_train), rows, 0, 0.0)
    after = effective(jax.tree.map(lambda a: a[0], state.params))
    return before, after, job.arch


def _layers(params):
    return network.layer_list(params["hidden"]) + [(params["readout"]["kernel"], params["readout"]["bias"])]


@pytest.mark.slow
def test_ntk_starts_as_the_standard_network_and_steps_its_effective_weights_by_a_squared():
    the_spec = spec()
    m = 32 / 16
    std0, std1, arch = _first_update(the_spec, "standard")
    ntk0, ntk1, _ = _first_update(the_spec, "ntk")
    factors = [1.0] + [1 / m] * (arch.depth - 1) + [1 / m]  # a² of the input layer, hidden layers, readout
    for (w0, b0), (v0, c0), (w1, b1), (v1, c1), f in zip(_layers(std0), _layers(ntk0), _layers(std1), _layers(ntk1),
                                                           factors):
        np.testing.assert_allclose(v0, w0, rtol=2e-7, atol=1e-9)
        # a step is a difference of float32 weights: each side rounds to eps·|w|
        resolution = 2 * np.finfo(np.float32).eps * float(np.abs(w0).max())
        np.testing.assert_allclose(v1 - v0, f * (w1 - w0), rtol=1e-4, atol=resolution)
        np.testing.assert_allclose(c1 - c0, b1 - b0, rtol=1e-4, atol=resolution)  # biases are standard


def test_mup_scales_the_readout_init_and_each_tensors_step_as_its_table_says():
    m = 32 / 16
    normal = spec()
    std0, _, _ = _first_update(normal, "standard")
    mup0, _, _ = _first_update(normal, "mup")
    np.testing.assert_allclose(mup0["readout"]["kernel"], std0["readout"]["kernel"] / math.sqrt(m), rtol=2e-7)
    # From a zero readout both start as one network, so one step differs only by the learning-rate factors.
    zero = spec(readout_init="zero")
    std0, std1, _ = _first_update(zero, "standard")
    mup0, mup1, _ = _first_update(zero, "mup")
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), mup0, std0)
    step = lambda a, b: b["readout"]["kernel"] - a["readout"]["kernel"]
    assert np.abs(step(std0, std1)).max() > 0
    np.testing.assert_allclose(step(mup0, mup1), step(std0, std1) / m, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(mup1["readout"]["bias"], std1["readout"]["bias"], rtol=1e-5)  # readout bias: m_out = 1


def test_the_coordinates_are_the_forward_passs_sizes():
    the_spec = spec(grid={"parametrization": ["ntk"]})
    ds = sweep.run(the_spec, progress=False)
    before, _, arch = _first_update(the_spec, "ntk")
    data = datasets.load(the_spec.dataset)
    rows = schedule.batch_rows(the_spec.rng_seed, len(data.x_train), the_spec.batch, 0, 1)[0]
    x = np.asarray(data.x_train[rows], np.float64)
    stored = ds.isel(seed=0, coord_step=0).squeeze()
    for l, (w, b) in enumerate(network.layer_list(before["hidden"]), start=1):
        z = x @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        x = np.maximum(z, 0)
        for name, value in (("preact_abs_mean", np.abs(z).mean()), ("preact_rms", np.sqrt((z**2).mean())),
                            ("act_abs_mean", np.abs(x).mean()), ("act_rms", np.sqrt((x**2).mean()))):
            np.testing.assert_allclose(float(stored[f"coord_{name}"].sel(layer=l)), value, rtol=1e-5, err_msg=name)
    y = x @ np.asarray(before["readout"]["kernel"], np.float64)
    np.testing.assert_allclose(float(stored.coord_output_abs_mean), np.abs(y).mean(), rtol=1e-5)
    assert ds.coord_step.values.tolist() == [0, 1, 2, 3]  # 0..coord_steps, and the evaluations at 0 and 3
    assert ds.coord_act_abs_mean.attrs["long_name"] == "mean |activation|"


@pytest.mark.slow
def test_mup_is_flat_in_width_and_standard_is_not():
    """The coordinate check of issue 18 on the paper's spec: widths 64..4096, 8 seeds, 3 SGD steps at η = 0.1.

    Every μP exponent of mean |x_l| (3 hidden layers and the readout, after 1, 2 and 3 steps: 12
    exponents) is within 2 standard errors of 0, the acceptance's bound for each, with no correction
    for the 12 comparisons (a correction would only widen it). The test has power: the standard
    parametrisation's readout exponent is at least 0.4 after one step and beyond 2 standard errors at
    every step, and a fit without the finite-width term is not needed to see it.
    """
    ds = sweep.run(sweep.load_spec("analysis/specs/coord_check.toml"), progress=False)
    for step in (1, 2, 3):
        at = ds.sel(coord_step=step).squeeze()
        for layer in at.layer.values:
            b = width_slope(at.coord_act_abs_mean.sel(parametrization="mup", layer=layer))
            assert abs(b.value) <= 2 * b.se, (step, layer, b)
        b = width_slope(at.coord_output_abs_mean.sel(parametrization="mup"))
        assert abs(b.value) <= 2 * b.se, (step, "readout", b)
        standard = width_slope(at.coord_output_abs_mean.sel(parametrization="standard"))
        assert standard.value > 2 * standard.se, (step, standard)
    one_step = ds.coord_output_abs_mean.sel(coord_step=1, parametrization="standard").squeeze()
    assert width_slope(one_step).value >= 0.4
    assert width_slope(one_step, finite_width=False).value >= 0.4

