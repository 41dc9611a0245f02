"""The first SGD step changes the loss by −η‖∇C‖² to first order, and the stored curvature gives the second.

To second order in the learning rate, the loss change of one SGD step on the same mini-batch is
ΔC₁ = −η‖g‖² + ½η² gᵀHg, so ΔC₁ / (−η‖g‖²) = 1 − ½η gᵀHg / ‖g‖²: the statistic the engine
measures at init is the early loss behaviour, and the curvature along g says where that stops.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sweep
from sweep.config import TrainSpec
from sweep.errors import SpecError
from sweep.io import schema
from sweep.model.network import Architecture
from sweep.train import data as datasets
from sweep.train import loop

FIRST_STEP = ("first_step_grad_sqnorm", "first_step_curvature", "init_sharpness", "first_step_loss_change")


def _spec(**changes):
    raw = {"kind": "train", "name": "first-step", "dataset": "mnist1d", "optimizer": "sgd", "steps": 1,
           "batch": 128, "eval_every": 1, "seeds": 8, "sharpness_iterations": 20,
           "grid": {"activation": ["relu"], "init": ["fan_in"], "profile": ["constant"], "depth": [3], "width": [16],
                    "gain": [math.sqrt(2)], "bias_std": [0.0], "learning_rate": [1e-3]}}
    raw.update(changes)
    return TrainSpec.from_dict(raw)


def test_the_first_step_is_recorded_only_when_asked():
    assert not set(FIRST_STEP) & set(schema.measured(_spec(sharpness_iterations=0)))
    variables = schema.measured(_spec())
    assert set(FIRST_STEP) <= set(variables)
    assert "learning_rate" in variables["first_step_loss_change"].dims
    assert all("learning_rate" not in variables[n].dims for n in FIRST_STEP[:3])
    assert "sharpness_iterations" not in _spec(sharpness_iterations=0).to_dict()


@pytest.mark.parametrize("value", [-1, 1.5, True, "20"])
def test_sharpness_iterations_is_a_count(value):
    with pytest.raises(SpecError, match="sharpness_iterations"):
        _spec(sharpness_iterations=value)


def test_the_first_step_is_the_direct_computation_and_the_sharpness_the_top_eigenvalue():
    """On a network small enough for its dense Hessian: ‖g‖², gᵀHg/‖g‖², ΔC₁ and H's largest eigenvalue.

    The teacher task's tanh net has eigenvalues of both signs at init, the most negative one
    larger in magnitude than λ_max in one of these two: plain power iteration would find that one.
    """
    data = datasets.load("teacher")
    arch = Architecture("tanh", "fan_in", (data.n_features, 6, 6))
    config = loop.Config(arch, data.n_outputs, data.task, "sgd", "highest", data.n_features, 300)
    trainer = loop.make_trainer(config, 2)
    state = trainer.init(jnp.uint32(3), jnp.asarray([0, 1], jnp.uint32), jnp.asarray([1.4, 1.4], jnp.float32),
                         jnp.asarray([0.1, 0.1], jnp.float32))
    rates = jnp.asarray([0.05, 0.2], jnp.float32)
    rows = jnp.arange(32, dtype=jnp.int32)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    got = trainer.first_step(state, rates, x, y, rows)
    negative_on_top = []
    for i in range(2):
        params = jax.tree.map(lambda a: a[i], state.params)
        flat, unravel = ravel_pytree(params)
        loss = lambda v: jnp.mean(loop.loss_terms(config.module.apply({"params": unravel(v)}, x[rows]), y[rows],
                                                  data.task)[0])
        g = np.asarray(jax.grad(loss)(flat), np.float64)
        hessian = np.asarray(jax.hessian(loss)(flat), np.float64)
        eigenvalues = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
        negative_on_top.append(-eigenvalues[0] > eigenvalues[-1] > 0)
        np.testing.assert_allclose(got["grad_sqnorm"][i], g @ g, rtol=1e-5)
        np.testing.assert_allclose(got["curvature"][i], g @ hessian @ g / (g @ g), rtol=1e-4)
        np.testing.assert_allclose(got["sharpness"][i], eigenvalues[-1], rtol=1e-3)
        expected = loss(flat - rates[i] * jnp.asarray(g, jnp.float32)) - loss(flat)
        np.testing.assert_allclose(got["loss_change"][i], expected, rtol=1e-4)
    assert any(negative_on_top)


def _at(ds, activation, gain):
    return ds.sel(activation=activation).sel(gain=gain, method="nearest").squeeze()


@pytest.mark.slow
def test_the_first_steps_loss_change_is_minus_eta_times_the_squared_gradient_norm():
    """relu He and tanh at criticality, depth 10, width 256, MNIST-1D: the median ratio over 8 networks.

    At η = 1e-4 the first-order law holds within 5% (the issue's criterion; float32 rounding of
    C ≈ 2.3 is 2.4e-7, below 1% of these ΔC₁). At η = 1e-2, where relu He departs by about a third,
    the second-order law with each network's stored curvature leaves at most a quarter of the
    departure (median over networks), and the curvature along g never exceeds λ_max, as a Rayleigh
    quotient must not.
    """
    spec = _spec(grid={"activation": ["relu", "tanh"], "init": ["fan_in"], "profile": ["constant"], "depth": [10],
                       "width": [256], "gain": [math.sqrt(2), 1.0], "bias_std": [0.0], "learning_rate": [1e-4, 1e-2]})
    ds = sweep.run(spec, progress=False)
    cases = [("relu", math.sqrt(2)), ("tanh", 1.0)]
    for case in cases:
        one = _at(ds, *case)
        eta = one.learning_rate
        ratio = one.first_step_loss_change / (-eta * one.first_step_grad_sqnorm)
        second_order = 1 - eta * one.first_step_curvature / 2
        small, large = ratio.sel(learning_rate=1e-4), ratio.sel(learning_rate=1e-2)
        assert abs(float(small.median()) - 1) < 0.05, case
        departure = float(np.abs(1 - large).median())
        assert float(np.abs(large - second_order.sel(learning_rate=1e-2)).median()) <= 0.25 * departure, case
        assert (one.first_step_curvature <= one.init_sharpness * (1 + 1e-3)).all(), case
    he = _at(ds, *cases[0])
    assert float(np.abs(1 - he.first_step_loss_change.sel(learning_rate=1e-2)
                        / (-1e-2 * he.first_step_grad_sqnorm)).median()) > 0.1  # the law has a visible end
