"""Training conv and residual networks: the trainer starts from the statistics kernel's networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import sweep
from sweep import plan
from sweep.config import TrainSpec
from sweep.io import schema
from sweep.kernel import reference
from sweep.model import network, streams
from sweep.plan.probe import Probe
from sweep.train.model import Network

RESIDUAL = {"kind": "train", "name": "residual_training", "rng_seed": 4, "seeds": 3, "batch": 8, "steps": 4,
            "eval_every": 2, "block": "residual", "branch_depth_exponent": -0.5,
            "grid": {"init": ["fan_in", "fixup"], "depth": [3], "width": [8], "branch_scale": [0.5, 1.0],
                     "learning_rate": [0.05, 0.1]}}


def _stats_twin(train: TrainSpec) -> sweep.Spec:
    """The statistics sweep of a training sweep's initial networks: same grid, keys, batch and mse readout."""
    raw = train.to_dict()
    grid = {k: v for k, v in raw["grid"].items() if k != "learning_rate"}
    family = {k: raw[k] for k in ("layer", "block", "branch_depth_exponent") if k in raw}
    if train.conv:
        family["spatial"] = list(train.spatial)
    return sweep.Spec.from_dict({"rng_seed": train.rng_seed, "seeds": train.seeds, "batch": train.batch, "loss": "mse",
                                 "outputs": 10, "grid": grid, **family})


@pytest.mark.parametrize("family", [
    {}, pytest.param({"layer": "conv", "grid": {**RESIDUAL["grid"], "width": [4]}}, marks=pytest.mark.slow),
], ids=["dense", "conv"])
def test_a_trained_residual_network_starts_as_the_statistics_network(family):
    spec = TrainSpec.from_dict({**RESIDUAL, **family})
    trained = sweep.run(spec, progress=False)
    stats = sweep.run(_stats_twin(spec), progress=False)
    assert trained.attrs["network"] == stats.attrs["network"]
    names = [n for n in schema.measured(spec) if n.startswith("init_")]
    assert {"init_stream_meansq", "init_grad_stream_meansq", "init_stream_mean"} <= set(names)
    for name in names:
        assert trained[name].dims == stats[name[5:]].dims, name
        np.testing.assert_array_equal(trained[name].values, stats[name[5:]].values, err_msg=name)
    assert list(trained.branch_layer.values) == [1, 2]
    assert trained["train_loss"].dims == spec.grid.axes + ("seed", "step")
    assert np.isfinite(trained["train_loss"]).all()


@pytest.mark.parametrize("arch", [
    pytest.param(network.Architecture("relu", "fan_in", (1, 6, 6), network.Conv(3, (8, 8))), marks=pytest.mark.slow),
    pytest.param(network.Architecture("tanh", "fan_avg", (1, 5, 7, 5), network.Conv(5, (40,))), marks=pytest.mark.slow),
    network.Architecture("gelu", "fan_in", (6, 4, 4), None, 0.5),
    pytest.param(network.Architecture("relu", "fan_in", (4, 3, 3), network.Conv(3, (8, 8)), 0.7), marks=pytest.mark.slow),
], ids=["conv2d", "conv1d", "residual", "residual-conv"])
def test_the_trained_network_computes_the_statistics_kernels_loss_at_init(arch):
    key, batch, outputs = streams.network_key(2, 7), 5, 10
    module = Network(arch, outputs)
    params = module.draw(key, 1.3, 0.1, features=int(np.prod(arch.conv.spatial)) if arch.conv else 9)["params"]
    x0 = network.inputs(key, arch, batch)
    if arch.is_residual:  # the stream x_0 the kernel feeds, past the trained input map
        pooled = network.pooled(network.apply(params["hidden"], arch, x0))
        prediction = pooled @ params["readout"]["kernel"] + params["readout"]["bias"]
    else:  # the kernel's one-channel images are the dataset's features, flattened
        prediction = module.apply({"params": params}, x0.reshape(batch, -1))
    loss = 0.5 * jnp.mean(jnp.sum(jnp.square(prediction - streams.targets(key, batch, outputs)), -1))
    _, expected = reference.plain_statistics(arch, Probe(batch, "mse", outputs, "highest", False), key, 1.3, 0.1)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
    hidden = network.draw_params(key, arch, 1.3, 0.1)
    jax.tree.map(np.testing.assert_array_equal, params["hidden"], hidden)


def test_a_residual_networks_input_map_reads_the_features_into_the_stream():
    dense = network.Architecture("relu", "fan_in", (16, 8, 8), None, 1.0)
    conv = dense._replace(conv=network.Conv(3, (40,)))
    assert dense.input_map_shape(40) == (40, 16) and conv.input_map_shape(40) == (3, 1, 16)
    key = streams.network_key(0, 3)
    variables = Network(conv, 10).draw(key, 1.4, 0.0, features=40)
    x = jax.random.normal(jax.random.key(1), (64, 40))
    assert Network(conv, 10).apply(variables, x).shape == (64, 10)
    kernel = variables["params"]["input_map"]["kernel"]
    np.testing.assert_array_equal(kernel, streams.input_map(key, (3, 1, 16)))
    assert variables["params"]["readout"]["kernel"].shape == (16, 10)  # reads the stream
    with pytest.raises(ValueError, match="features"):
        Network(dense, 10).draw(key, 1.4, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("dataset, kernel_size", [("digits", 3), ("mnist1d", 5)])
def test_a_conv_net_learns_its_dataset(dataset, kernel_size):
    spec = TrainSpec.from_dict({
        "kind": "train", "name": f"conv_{dataset}", "dataset": dataset, "layer": "conv", "seeds": 3, "batch": 32,
        "steps": 40, "eval_every": 20, "optimizer": "adam", "rng_seed": 1,
        "grid": {"depth": [2], "width": [8], "kernel_size": [kernel_size], "learning_rate": [3e-3]},
    })
    ds = sweep.run(spec, progress=False)
    assert "circular convolutions" in ds.attrs["network"] and "one-channel" in ds.attrs["architecture"]
    test_loss = ds["test_loss"].squeeze(drop=True)
    assert bool((test_loss.isel(eval_step=-1) < test_loss.isel(eval_step=0)).all())
    assert ds["layer_width"].sel(layer=1).item() == 8


@pytest.mark.slow
def test_a_residual_conv_training_store_is_the_same_whatever_the_memory_budget():
    spec = TrainSpec.from_dict({**RESIDUAL, "layer": "conv", "seeds": 17,
                                "grid": {**RESIDUAL["grid"], "width": [4], "init": ["fan_in"], "branch_scale": [1.0]}})
    job = plan.make_plan(spec, "1GB").groups[0].jobs[1]
    assert job.networks > job.micro_batch  # two micro-batches, the last one padded
    stores = [sweep.run(spec, memory=m * job.micro_batch * job.bytes_per_network, progress=False) for m in (1, 2)]
    xr.testing.assert_identical(stores[0].drop_attrs(), stores[1].drop_attrs())
