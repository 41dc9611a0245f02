"""Common random numbers across gains measure, for each gain, exactly the network that plain
autodiff gives for the shared draw, also where the gains run as scaled copies of one network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import plain_statistics, slow

import sweep
from sweep import kernel, plan
from sweep.kernel import passes
from sweep.model import network, streams


@pytest.mark.parametrize("activation, loss", [slow("relu", "mse"), ("tanh", "projection")])
def test_kernel_with_the_gram_path_equals_plain_autodiff(activation, loss):
    arch = network.Architecture.from_grid(activation, "fan_in", "constant", 4, 48)
    probe = kernel.Probe(batch=4, loss=loss, outputs=3, precision="highest", jacobian=False)
    assert passes.gram_is_cheaper(probe.batch, 48, 48)
    run = kernel.architecture_kernel(arch, probe, 2)
    gains = jnp.asarray([1.0, 1.7], jnp.float32)
    stats = kernel.finish(run(jnp.uint32(1), jnp.asarray([3, 4], jnp.uint32), gains, jnp.full(2, 0.1, jnp.float32)))
    for i, index in enumerate((3, 4)):
        expected, loss_value = plain_statistics(arch, probe, streams.network_key(1, index), gains[i], 0.1)
        for name, values in expected.items():
            np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)


CRN_CASES = [
    slow("relu", "fan_in", "constant", "mse", 0.0, 16),
    slow("tanh", "fan_avg", "alternating", "mse", 0.2, 16),
    ("relu", "fan_in", "constant", "mse", 0.1, 64),  # with the Gram path
    slow("gelu", "orthogonal", "constant", "projection", 0.0, 40),
]


@pytest.mark.parametrize("activation, init, profile, loss, bias_std, width", CRN_CASES)
def test_common_random_numbers_equal_plain_autodiff(activation, init, profile, loss, bias_std, width):
    """Each gain of a draw is the network plain autodiff gives for gain · (the draw's weights)."""
    arch = network.Architecture.from_grid(activation, init, profile, 5, width)
    gains_per_draw = 3
    probe = kernel.Probe(batch=4, loss=loss, outputs=3, precision="highest", jacobian=False,
                         gains_per_draw=gains_per_draw)
    run = kernel.architecture_kernel(arch, probe, 2 * gains_per_draw)
    gains = jnp.asarray([0.9, 1.6, 2.0] * 2, jnp.float32)
    indices = np.asarray([11, 12, 13, 20, 21, 22], np.uint32)
    stats = kernel.finish(run(jnp.uint32(5), jnp.asarray(indices), gains, jnp.full(6, bias_std, jnp.float32)))
    for i in range(6):
        key = streams.network_key(5, int(indices[i - i % gains_per_draw]))  # the draw's first network
        expected, loss_value = plain_statistics(arch, probe, key, gains[i], bias_std)
        for name, values in expected.items():
            np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)


@pytest.mark.parametrize("activation, as_copies, on_host", [("tanh", False, True), ("relu", True, True),
                                                           ("relu", True, False)])
def test_common_random_numbers_jacobian(activation, as_copies, on_host):
    arch = network.Architecture.from_grid(activation, "fan_in", "constant", 3, 6)
    probe = kernel.Probe(batch=3, loss="mse", outputs=2, precision="highest", jacobian=True, gains_per_draw=2,
                         scaled_copies=as_copies, jacobian_on_host=on_host)
    assert probe.runs_scaled_copies(arch) is as_copies
    stats = kernel.finish(kernel.architecture_kernel(arch, probe, 2)(
        jnp.uint32(1), jnp.asarray([4, 9], jnp.uint32), jnp.asarray([0.7, 1.3], jnp.float32), jnp.zeros(2, jnp.float32)))
    key = streams.network_key(1, 4)
    x0 = streams.inputs(key, 3, 6)[0]
    for i, gain in enumerate((0.7, 1.3)):
        params = network.draw_params(key, arch, gain, 0.0)
        jac = jax.jacfwd(lambda x: network.apply(params, arch, x[None])[0])(x0)
        expected = np.linalg.svd(np.asarray(jac), compute_uv=False)
        # Dead relu units make some singular values 0, computed as round-off of the largest.
        np.testing.assert_allclose(stats["jacobian_singular_values"][i], expected, rtol=1e-4, atol=1e-6 * expected[0])


SCALED_COPY_CASES = [
    ("relu", "fan_in", "constant", "mse", 16, 5),
    ("relu", "fan_in", "constant", "mse", 64, 5),  # with the Gram path
    slow("leaky_relu(0.2)", "orthogonal", "taper", "projection", 16, 4),
    slow("linear", "fan_avg", "alternating", "mse", 16, 5),
    ("relu", "fan_in", "constant", "mse", 16, 14),  # gains^14 from 5e-8 to 3e8
]


@pytest.mark.parametrize("activation, init, profile, loss, width, depth", SCALED_COPY_CASES)
def test_scaled_copies_equal_plain_autodiff(activation, init, profile, loss, width, depth):
    """Without biases, one unit-gain network and its backpropagated streams give every gain's
    statistics: each equals plain autodiff of gain · (the draw's weights)."""
    arch = network.Architecture.from_grid(activation, init, profile, depth, width)
    probe = kernel.Probe(batch=4, loss=loss, outputs=3, precision="highest", jacobian=False,
                         gains_per_draw=3, scaled_copies=True)
    assert probe.runs_scaled_copies(arch)
    run = kernel.architecture_kernel(arch, probe, 6)
    gains = jnp.asarray([0.3, 1.0 / 0.7, 4.0] * 2, jnp.float32)
    indices = np.asarray([7, 8, 9, 30, 31, 32], np.uint32)
    stats = kernel.finish(run(jnp.uint32(2), jnp.asarray(indices), gains, jnp.zeros(6, jnp.float32)))
    for i in range(6):
        key = streams.network_key(2, int(indices[i - i % 3]))
        expected, loss_value = plain_statistics(arch, probe, key, gains[i], 0.0)
        for name, values in expected.items():
            # A mean of terms of both signs is rounded relative to their size, its RMS: the
            # scales of the layers and gains differ by up to 10^17, so no absolute tolerance fits all.
            scale = np.sqrt(expected[name + "sq"]) if name.endswith("_mean") else np.abs(values)
            np.testing.assert_array_less(np.abs(stats[name][i] - values), 2e-5 * scale + 1e-300,
                                         err_msg=f"{name}, gain {gains[i]}")
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)
    assert not stats["overflow"].any()


def test_scaled_copies_apply_only_without_biases_to_homogeneous_activations():
    probe = kernel.Probe(4, "mse", 3, "highest", False, gains_per_draw=3, scaled_copies=True)
    relu = network.Architecture.from_grid("relu", "fan_in", "constant", 3, 8)
    tanh = network.Architecture.from_grid("tanh", "fan_in", "constant", 3, 8)
    assert probe.runs_scaled_copies(relu)
    assert not probe.runs_scaled_copies(tanh)
    assert not probe._replace(scaled_copies=False).runs_scaled_copies(relu)
    assert not probe._replace(gains_per_draw=1).runs_scaled_copies(relu)
    grid = {"activation": ["relu"], "depth": [4], "width": [16], "gain": [0.5, 1.0], "bias_std": [0.0]}
    for grid_changes, spec_changes, expected in [
        ({}, {}, True), ({"bias_std": [0.0, 0.1]}, {}, False), ({"gain": [0.0, 1.0]}, {}, False),
        ({}, {"scaled_copies": False}, False),
    ]:
        spec = crn_spec(grid={**grid, **grid_changes}, **spec_changes)
        assert plan.make_plan(spec).groups[0].jobs[0].probe.scaled_copies is expected
    with pytest.raises(sweep.SpecError, match="scaled_copies"):
        sweep.Spec.from_dict({"scaled_copies": 1})


@pytest.mark.slow
def test_scaled_copies_store_equals_every_gains_passes():
    grid = {"activation": ["relu", "tanh"], "depth": [3], "width": [8], "gain": [0.5, 1.3, 2.0], "bias_std": [0.0]}
    scaled = sweep.run(crn_spec(grid=grid, seeds=4), progress=False, with_theory=False)
    plain = sweep.run(crn_spec(grid=grid, seeds=4, scaled_copies=False), progress=False, with_theory=False)
    relu, tanh = {"activation": "relu"}, {"activation": "tanh"}
    for name in kernel.LAYER_STATS + ("loss",):
        scale = np.sqrt(plain[name + "sq"]) if name.endswith("_mean") else np.abs(plain[name])
        assert float((np.abs(scaled[name] - plain[name]) / scale).sel(relu).max()) < 2e-5, name
        # tanh is not homogeneous: the same passes run either way.
        np.testing.assert_array_equal(scaled[name].sel(tanh).values, plain[name].sel(tanh).values)
    assert not np.array_equal(scaled.preact_meansq.sel(relu).values, plain.preact_meansq.sel(relu).values)


def crn_spec(**changes):
    raw = {"name": "crn", "seeds": 3, "batch": 8, "common_random_numbers": True,
           "grid": {"activation": ["relu"], "depth": [4], "width": [16], "gain": [0.5, 1.0, 2.0], "bias_std": [0.0, 0.3]}}
    raw.update(changes)
    return sweep.Spec.from_dict(raw)


@pytest.mark.slow
def test_common_random_numbers_share_the_first_gains_draws():
    shared = sweep.run(crn_spec(), progress=False)
    independent = sweep.run(crn_spec(common_random_numbers=False), progress=False)
    # The first gain is 0.5, a power of two: gain · W is exact, so the first gain's networks are
    # the independent run's own. Only rounding may differ: a shared draw's micro-batch holds a
    # multiple of the 3 gains, a plain one a power of two, and XLA's CPU code for a GEMM (and so
    # its summation order) depends on its shape. Eight float32 ulps allow that (1.2 were seen);
    # other draws differ by the law's spread, here 3.4 times the value at the second gain.
    rounding = 8 * np.finfo(np.float32).eps
    for name in ("preact_meansq", "grad_weight_meansq", "loss"):
        np.testing.assert_allclose(shared[name].isel(gain=0).values, independent[name].isel(gain=0).values,
                                   rtol=rounding, atol=0, err_msg=name)
    assert not np.allclose(shared.preact_meansq.isel(gain=1).values, independent.preact_meansq.isel(gain=1).values,
                           rtol=1e-2)
    # Without biases a relu network is homogeneous in its gain: with common draws, gain 2
    # versus gain 0.5 multiplies E[z_l²] by exactly 4^(2l).
    ratio = (shared.preact_meansq.isel(gain=2) / shared.preact_meansq.isel(gain=0)).sel(bias_std=0.0).squeeze(drop=True)
    np.testing.assert_allclose(np.log(ratio.values) / np.log(4.0), np.tile(2.0 * np.arange(1, 5), (3, 1)), rtol=1e-5)


def test_common_random_numbers_results_do_not_depend_on_the_budget():
    spec = crn_spec(seeds=20)
    the_plan = plan.make_plan(spec)
    job = the_plan.groups[0].jobs[0]
    assert job.micro_batch % len(spec.grid.gain) == 0
    one_micro_batch = job.micro_batch * job.bytes_per_network
    assert plan.make_plan(spec, one_micro_batch).call_size(job) == 1
    big = sweep.run(spec, progress=False)
    small = sweep.run(spec, memory=one_micro_batch, progress=False)
    for name in big.data_vars:
        np.testing.assert_array_equal(big[name].values, small[name].values, err_msg=name)


def test_common_random_numbers_is_a_checked_option():
    assert sweep.Spec.from_dict({}).common_random_numbers is False
    with pytest.raises(sweep.SpecError, match="common_random_numbers"):
        sweep.Spec.from_dict({"common_random_numbers": "yes"})


def test_common_random_numbers_put_the_gains_of_a_draw_side_by_side():
    shared, independent = plan.make_plan(crn_spec()), plan.make_plan(crn_spec(common_random_numbers=False))
    job = shared.groups[0].jobs[0]
    slots = shared.positions(job, np.arange(job.micro_batches))[:18]
    # Flat order is (gain, bias_std, seed) with 2 · 3 = 6 networks per gain.
    assert list(slots[:6]) == [0, 6, 12, 1, 7, 13]
    assert sorted(slots) == list(range(18))
    np.testing.assert_array_equal(shared.slots(job, slots), np.arange(18))
    plain = independent.groups[0].jobs[0]
    np.testing.assert_array_equal(independent.positions(plain, np.arange(plain.micro_batches))[:18], np.arange(18))


def test_common_random_numbers_store_does_not_depend_on_the_tiles(tmp_path):
    """Tiles of one gain each take their values from micro-batches that hold every gain."""
    spec = crn_spec(seeds=5)
    whole = sweep.run(spec, out=tmp_path / "whole.zarr", progress=False, with_theory=False)
    tiled = sweep.run(spec, out=tmp_path / "tiled.zarr", chunk_networks=2, progress=False, with_theory=False)
    assert tiled.preact_meansq.encoding["chunks"][5:8] == (1, 1, 2)
    for name in whole.data_vars:
        np.testing.assert_array_equal(whole[name].values, tiled[name].values, err_msg=name)
    np.testing.assert_array_equal(whole.preact_meansq.values, sweep.run(spec, progress=False).preact_meansq.values)
