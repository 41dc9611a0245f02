"""One network family: a trained network starts as the network the statistics kernel draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep import plan
from sweep.config import GRID_AXES, STATIC_AXES, TrainSpec, profiles
from sweep.model import network, streams
from sweep.model.network import Architecture
from sweep.train import loop
from sweep.train.model import Network


def architecture(activation, init, profile, depth, width):
    """The architecture a training sweep of ``SPEC``'s dataset trains at a grid point."""
    return plan.architecture(SPEC, (activation, init, profile, depth, width))

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
        assert architecture(activation, "fan_in", "constant", 2, 40) == Architecture.from_grid(
            activation, "fan_in", "constant", 2, 40)
    assert architecture("relu", "fan_in", "alternating", 4, 16).widths == (40, 16, 32, 16, 32)


def test_initial_weights_are_those_of_the_stats_kernel_at_every_learning_rate():
    g = SPEC.grid
    the_plan = plan.make_plan(SPEC, "1GB")
    checked = 0
    for group in the_plan.groups:
        _, job = group.jobs
        stats_arch = Architecture.from_grid(*(getattr(g, a)[i] for a, i in zip(STATIC_AXES, group.position)))
        # The kernel draws its networks with jit of vmap of network.draw_params.
        kernel_draw = jax.jit(jax.vmap(lambda k, a, b: network.draw_params(k, stats_arch, a, b)))
        trainer = loop.make_trainer(_config(job.arch), job.micro_batch)
        for ids in the_plan.calls(job, np.arange(job.micro_batches)):
            positions = the_plan.positions(job, ids)
            index = the_plan.axis_indices(job, positions)
            gains = np.asarray(g.gain, np.float32)[index["gain"]]
            bias_stds = np.asarray(g.bias_std, np.float32)[index["bias_std"]]
            state = trainer.init(jnp.uint32(SPEC.rng_seed),
                                 jnp.asarray(the_plan.key_indices(group, job, positions), jnp.uint32),
                                 jnp.asarray(gains), jnp.asarray(bias_stds))
            # The index of a statistics sweep: (activation, ..., gain, bias_std, seed), no learning rate.
            flat = np.ravel_multi_index(group.position + (index["gain"], index["bias_std"], index["seed"]),
                                        g.stats.shape + (SPEC.seeds,))
            keys = jax.vmap(lambda i: streams.network_key(SPEC.rng_seed, i))(jnp.asarray(flat))
            expected = kernel_draw(keys, gains, bias_stds)
            jax.tree.map(np.testing.assert_array_equal, state.params["hidden"], expected)
            checked += len(set(positions.tolist()))
    assert checked == SPEC.num_networks


@pytest.fixture(scope="module")
def trained():
    return sweep.run(SPEC, progress=False)


def test_init_statistics_are_those_of_a_stats_sweep(trained):
    stats_spec = sweep.Spec.from_dict({
        "kind": "stats", "rng_seed": SPEC.rng_seed, "seeds": SPEC.seeds, "batch": SPEC.batch, "loss": "mse",
        "outputs": 10, "grid": {a: list(getattr(SPEC.grid, a)) for a in GRID_AXES},
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
    key = streams.network_key(3, 5)
    draw = jax.jit(network.draw_params, static_argnums=1)
    trained = network.layer_list(draw(key, architecture("relu", "fan_in", "constant", 3, 16), 1.3, 0.1))
    stats = network.layer_list(draw(key, Architecture.from_grid("relu", "fan_in", "constant", 3, 16), 1.3, 0.1))
    assert trained[0][0].shape == (40, 16) and stats[0][0].shape == (16, 16)
    for (w, b), (w_s, b_s) in zip(trained[1:], stats[1:]):
        np.testing.assert_array_equal(w, w_s)
        np.testing.assert_array_equal(b, b_s)


def test_key_indices_are_those_of_a_stats_plan():
    spec = SPEC.replace(grid={"activation": ["tanh", "relu"], "depth": [2, 3], "learning_rate": [0.1, 0.2, 0.3]})
    stats_plan = plan.make_plan(sweep.Spec.from_dict(
        {"seeds": spec.seeds, "grid": {a: list(getattr(spec.grid, a)) for a in GRID_AXES}}))
    train_plan = plan.make_plan(spec, "1GB")
    for group, stats_group in zip(train_plan.groups, stats_plan.groups):
        assert group.position == stats_group.position
        (stats_job,), (_, job) = stats_group.jobs, group.jobs
        expected = stats_plan.key_indices(stats_group, stats_job, np.arange(stats_job.networks))
        positions = np.arange(job.networks)
        keys = train_plan.key_indices(group, job, positions)
        rates = train_plan.axis_indices(job, positions)["learning_rate"]
        for r in range(3):  # every learning rate: the stats networks, in the stats order
            np.testing.assert_array_equal(keys[rates == r], expected)


def test_the_module_is_the_family_forward_plus_a_readout():
    arch = Architecture("tanh", "fan_avg", (5,) + profiles.widths("alternating", 8, 3)[1:])
    module = Network(arch, 4)

    @jax.jit
    def both(key, x):
        variables = module.draw(key, 1.5, 0.2)
        params = variables["params"]
        family = network.apply(params["hidden"], arch, x) @ params["readout"]["kernel"] + params["readout"]["bias"]
        return module.apply(variables, x), family, params

    got, expected, params = both(streams.network_key(0, 1), jax.random.normal(jax.random.key(9), (6, 5)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert params["readout"]["kernel"].shape == (8, 4)
    np.testing.assert_array_equal(params["readout"]["bias"], 0)
