"""One network family: a trained network starts as the network the statistics kernel draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import network
from sweep.network import Architecture
from sweep.train import TrainSpec, loop, plan, run_training
from sweep.train.model import Network, architecture

# mnist1d has 40 features: with width 40 the trained architecture is the statistics one.
SPEC = TrainSpec.from_dict({
    "kind": "train", "name": "identity", "dataset": "mnist1d", "rng_seed": 7, "seeds": 2, "batch": 16,
    "steps": 2, "eval_every": 1,
    "grid": {"activation": ["tanh"], "depth": [2], "width": [40], "gain": [1.0, 2.0],
             "bias_std": [0.0, 0.1], "learning_rate": [0.01, 0.1]},
})


def _config(arch, outputs=10):
    return loop.Config(arch, outputs, "classification", "sgd", "highest")


def test_the_trained_architecture_is_the_stats_architecture_when_n0_equals_width():
    for activation in SPEC.grid.activation:
        assert architecture(activation, "fan_in", "constant", 2, 40, 40) == Architecture.from_grid(
            activation, "fan_in", "constant", 2, 40)
    assert architecture("relu", "fan_in", "alternating", 4, 16, 40).widths == (40, 16, 32, 16, 32)


def test_initial_weights_are_those_of_the_stats_kernel_at_every_learning_rate():
    g = SPEC.grid
    groups = plan.make_groups(SPEC, 40, 10, "1GB")
    checked = 0
    for group in groups:
        stats_arch = Architecture.from_grid(*(getattr(g, a)[i] for a, i in zip(plan.STATIC_AXES, group.position)))
        # The kernel draws its networks with jit of vmap of network.draw_params.
        kernel_draw = jax.jit(jax.vmap(lambda k, a, b: network.draw_params(k, stats_arch, a, b)))
        trainer = loop.make_trainer(_config(group.arch), group.micro_batch)
        for chunk in plan.chunks(SPEC, group):
            gains = np.asarray(g.gain, np.float32)[chunk.gain]
            bias_stds = np.asarray(g.bias_std, np.float32)[chunk.bias_std]
            state = trainer.init(jnp.uint32(SPEC.rng_seed), jnp.asarray(chunk.keys, jnp.uint32),
                                 jnp.asarray(gains), jnp.asarray(bias_stds))
            # The index of a statistics sweep: (activation, ..., gain, bias_std, seed), no learning rate.
            index = np.ravel_multi_index(group.position + (chunk.gain, chunk.bias_std, chunk.seed),
                                         g.stats.shape + (SPEC.seeds,))
            keys = jax.vmap(lambda i: network.network_key(SPEC.rng_seed, i))(jnp.asarray(index))
            expected = kernel_draw(keys, gains, bias_stds)
            jax.tree.map(np.testing.assert_array_equal, state.params["hidden"], expected)
            checked += chunk.valid
    assert checked == SPEC.num_networks


@pytest.fixture(scope="module")
def trained():
    return run_training(SPEC, progress=False)


def test_init_statistics_are_those_of_a_stats_sweep(trained):
    stats_spec = sweep.Spec.from_dict({
        "kind": "stats", "rng_seed": SPEC.rng_seed, "seeds": SPEC.seeds, "batch": SPEC.batch, "loss": "mse",
        "outputs": 10, "grid": {a: list(getattr(SPEC.grid, a)) for a in sweep.spec.GRID_AXES},
    })
    stats = sweep.run(stats_spec, progress=False)
    for name in sweep.kernel.LAYER_STATS + ("overflow",):
        np.testing.assert_array_equal(trained[f"init_{name}"].values, stats[name].values, err_msg=name)
    assert trained["init_preact_meansq"].dims == stats["preact_meansq"].dims


def test_every_learning_rate_trains_the_same_initial_network(trained):
    first = trained["train_loss"].isel(step=0)
    np.testing.assert_array_equal(first.isel(learning_rate=0).values, first.isel(learning_rate=1).values)
    at_init = trained["test_loss"].isel(eval_step=0)
    np.testing.assert_array_equal(at_init.isel(learning_rate=0).values, at_init.isel(learning_rate=1).values)
    assert not np.array_equal(trained["test_loss"].isel(eval_step=-1, learning_rate=0).values,
                              trained["test_loss"].isel(eval_step=-1, learning_rate=1).values)


def test_when_n0_differs_only_layer_1_differs_from_the_stats_network():
    key = network.network_key(3, 5)
    draw = jax.jit(network.draw_params, static_argnums=1)
    trained = network.layer_list(draw(key, architecture("relu", "fan_in", "constant", 3, 16, 40), 1.3, 0.1))
    stats = network.layer_list(draw(key, Architecture.from_grid("relu", "fan_in", "constant", 3, 16), 1.3, 0.1))
    assert trained[0][0].shape == (40, 16) and stats[0][0].shape == (16, 16)
    for (w, b), (w_s, b_s) in zip(trained[1:], stats[1:]):
        np.testing.assert_array_equal(w, w_s)
        np.testing.assert_array_equal(b, b_s)


def test_key_indices_are_those_of_a_stats_plan():
    spec = SPEC.replace(grid={"activation": ["tanh", "relu"], "depth": [2, 3], "learning_rate": [0.1, 0.2, 0.3]})
    stats_plan = sweep.plan.make_plan(sweep.Spec.from_dict(
        {"seeds": spec.seeds, "grid": {a: list(getattr(spec.grid, a)) for a in sweep.spec.GRID_AXES}}))
    groups = plan.make_groups(spec, 40, 10, "1GB")
    for group, stats_group in zip(groups, stats_plan.groups):
        assert group.position == stats_group.position
        expected = stats_plan.global_indices(stats_group, np.arange(stats_plan.networks_per_group))
        chunks = list(plan.chunks(spec, group))
        keys = np.concatenate([c.keys[: c.valid] for c in chunks])
        rates = np.concatenate([c.learning_rate[: c.valid] for c in chunks])
        for r in range(3):  # every learning rate: the stats networks, in the stats order
            np.testing.assert_array_equal(keys[rates == r], expected)


def test_the_module_is_the_family_forward_plus_a_readout():
    arch = architecture("tanh", "fan_avg", "alternating", 3, 8, 5)
    module = Network(arch, 4)

    @jax.jit
    def both(key, x):
        variables = module.draw(key, 1.5, 0.2)
        params = variables["params"]
        family = network.apply(params["hidden"], arch, x) @ params["readout"]["kernel"] + params["readout"]["bias"]
        return module.apply(variables, x), family, params

    got, expected, params = both(network.network_key(0, 1), jax.random.normal(jax.random.key(9), (6, 5)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert params["readout"]["kernel"].shape == (8, 4)
    np.testing.assert_array_equal(params["readout"]["bias"], 0)
