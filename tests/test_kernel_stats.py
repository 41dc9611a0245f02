"""The kernel measures exactly what a plain autodiff network gives, and keeps extremes finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import plain_statistics, slow

from sweep import kernel
from sweep.model import network, streams

CASES = [
    ("relu", "fan_in", "constant", "mse", 0.0),
    slow("relu", "fan_out", "alternating", "mse", 0.3),
    slow("leaky_relu(0.2)", "fan_avg_uniform", "taper", "projection", 0.1),
    ("tanh", "fan_in_truncated", "alternating", "mse", 0.2),
    ("gelu", "orthogonal", "constant", "projection", 0.0),
    slow("selu", "fan_in", "taper", "mse", 0.1),
    ("erf", "fan_avg", "constant", "mse", 0.0),
]


@pytest.mark.parametrize("activation, init, profile, loss, bias_std", CASES)
def test_kernel_equals_plain_autodiff(activation, init, profile, loss, bias_std):
    arch = network.Architecture.from_grid(activation, init, profile, 6, 16)
    probe = kernel.Probe(batch=8, loss=loss, outputs=3, precision="highest", jacobian=False)
    run = kernel.architecture_kernel(arch, probe, 1)
    gains = jnp.asarray([0.9, 1.6], jnp.float32)
    stats = kernel.finish(run(jnp.uint32(5), jnp.asarray([11, 12], jnp.uint32), gains, jnp.full(2, bias_std, jnp.float32)))
    for i, index in enumerate((11, 12)):
        expected, loss_value = plain_statistics(arch, probe, streams.network_key(5, index), gains[i], bias_std)
        for name, values in expected.items():
            # float32 results that differ only in the order of summation
            np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)
        assert not stats["overflow"][i].any()


def test_relu_homogeneity_holds_far_beyond_float32():
    """Bias-free relu networks: z_l(g W) = g^l z_l(W), so every statistic scales as a power of g.

    At gain 10 and depth 60 the pre-activations reach about 50^60 ≈ 1e102 and the weight
    gradients about 50^119 ≈ 1e202, far beyond float32; the kernel's power-of-two scale
    tracking must still give the exact powers.
    """
    depth, gain = 60, 10.0
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", depth, 16)
    # The projection loss has ∂ℓ/∂x_L = u whatever the output, so the backward pass is
    # homogeneous too: δ_l ~ g^{L-l} and ∂C/∂W_l = x_{l-1} δ_l ~ g^{L-1} in every layer.
    probe = kernel.Probe(batch=4, loss="projection", outputs=1, precision="highest", jacobian=False)
    run = kernel.architecture_kernel(arch, probe, 1)
    same_network = jnp.asarray([3, 3], jnp.uint32)
    stats = kernel.finish(run(jnp.uint32(0), same_network, jnp.asarray([1.0, gain], jnp.float32), jnp.zeros(2, jnp.float32)))
    layer = np.arange(1, depth + 1)
    assert not stats["overflow"].any()
    for name, power in [("preact_meansq", 2 * layer), ("act_meansq", 2 * layer), ("act_mean", layer),
                        ("grad_preact_meansq", 2 * (depth - layer)), ("grad_weight_meansq", 2 * (depth - 1) + 0 * layer)]:
        ratio = stats[name][1] / stats[name][0]
        np.testing.assert_allclose(np.log10(ratio), power * np.log10(gain), rtol=0, atol=1e-4, err_msg=name)
    assert stats["preact_meansq"][1, -1] > 1e100


def test_tiny_relu_signals_stay_finite():
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", 60, 16)
    probe = kernel.Probe(batch=4, loss="mse", outputs=2, precision="highest", jacobian=False)
    stats = kernel.finish(kernel.architecture_kernel(arch, probe, 1)(
        jnp.uint32(0), jnp.arange(3, dtype=jnp.uint32), jnp.full(3, 0.2, jnp.float32), jnp.zeros(3, jnp.float32)))
    assert not stats["overflow"].any()
    assert np.all(stats["preact_meansq"][:, -1] < 1e-60) and np.all(stats["preact_meansq"][:, -1] > 0)
    assert np.all(np.isfinite(stats["grad_weight_meansq"])) and np.all(stats["grad_weight_meansq"] > 0)


def test_overflow_is_marked_and_does_not_touch_other_networks():
    arch = network.Architecture.from_grid("gelu", "fan_in", "constant", 40, 16)
    probe = kernel.Probe(batch=4, loss="mse", outputs=2, precision="highest", jacobian=False)
    run = kernel.architecture_kernel(arch, probe, 1)
    indices = jnp.asarray([0, 1], jnp.uint32)
    both = kernel.finish(run(jnp.uint32(0), indices, jnp.asarray([1.0, 50.0], jnp.float32), jnp.zeros(2, jnp.float32)))
    alone = kernel.finish(run(jnp.uint32(0), indices, jnp.asarray([1.0, 1.0], jnp.float32), jnp.zeros(2, jnp.float32)))
    assert both["overflow"][1].any() and not both["overflow"][0].any()
    assert not np.isfinite(both["preact_meansq"][1][both["overflow"][1]]).all()
    for name in kernel.LAYER_STATS:
        np.testing.assert_array_equal(both[name][0], alone[name][0], err_msg=name)
    # A layer is marked exactly where one of its statistics is not finite.
    finite = np.all([np.isfinite(both[k][1]) for k in kernel.LAYER_STATS], axis=0)
    np.testing.assert_array_equal(both["overflow"][1], ~finite)


@pytest.mark.parametrize("on_host", [True, False])
def test_jacobian_singular_values_equal_those_of_jacfwd(on_host):
    arch = network.Architecture.from_grid("tanh", "orthogonal", "constant", 5, 12)
    probe = kernel.Probe(batch=3, loss="mse", outputs=2, precision="highest", jacobian=True,
                         jacobian_on_host=on_host)
    stats = kernel.finish(kernel.architecture_kernel(arch, probe, 1)(
        jnp.uint32(1), jnp.asarray([4], jnp.uint32), jnp.asarray([1.3], jnp.float32), jnp.asarray([0.2], jnp.float32)))
    key = streams.network_key(1, 4)
    params = network.draw_params(key, arch, 1.3, 0.2)
    x0 = streams.inputs(key, 3, 12)[0]
    jac = jax.jacfwd(lambda x: network.apply(params, arch, x[None])[0])(x0)
    np.testing.assert_allclose(stats["jacobian_singular_values"][0], np.linalg.svd(np.asarray(jac), compute_uv=False),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_network_is_the_same_in_calls_of_any_size():
    """Within a fixed micro-batch, how many networks a call holds changes no bit of any."""
    arch = network.Architecture.from_grid("tanh", "fan_in", "alternating", 4, 8)
    probe = kernel.Probe(batch=5, loss="mse", outputs=2, precision="highest", jacobian=False)
    run = kernel.architecture_kernel(arch, probe, 4)

    def stats_of(indices):
        n = len(indices)
        return kernel.finish(run(jnp.uint32(2), jnp.asarray(indices, jnp.uint32), jnp.full(n, 1.2, jnp.float32),
                                 jnp.zeros(n, jnp.float32)))

    reference = stats_of(range(4, 8))
    for indices in (range(0, 8), range(4, 16), range(0, 64)):
        crowd = stats_of(list(indices))
        position = list(indices).index(6)
        for name in kernel.LAYER_STATS + ("loss",):
            np.testing.assert_array_equal(crowd[name][position], reference[name][2], err_msg=name)


def test_segments_cover_the_layers_in_order():
    for profile in ("constant", "alternating", "taper"):
        arch = network.Architecture.from_grid("relu", "fan_in", profile, 13, 64)
        shapes = []
        for seg in network.segments(arch.shapes):
            shapes.extend(seg.block * seg.repeats)
        assert tuple(shapes) == arch.shapes
    assert len(network.segments(network.Architecture.from_grid("relu", "fan_in", "constant", 50, 8).shapes)) == 1


@pytest.mark.slow
def test_each_layer_is_its_scale_times_the_raw_draw_from_its_own_key():
    """Layer l of a network is gain · scale_l · a raw draw from ``fold_in(fold_in(layers, l), 0)``, whatever the profile."""
    for init, profile in (("orthogonal", "taper"), ("fan_in", "alternating"), ("fan_out_uniform", "taper")):
        arch = network.Architecture.from_grid("relu", init, profile, 5, 24)
        key = streams.network_key(3, 11)
        layers = network.layer_list(jax.jit(lambda k: network.draw_params(k, arch, 1.5, 0.0))(key))
        layers_key = jax.random.fold_in(key, streams.LAYER_STREAM)
        for l, ((w, _), shape, scale) in enumerate(zip(layers, arch.shapes, arch.layer_scales), start=1):
            raw = streams.raw_weights(jax.random.fold_in(jax.random.fold_in(layers_key, l), 0), shape, arch.distribution)
            # Up to the rounding of gain · scale · raw, which XLA may associate with the raw draw's
            # own last multiplication: two ulps.
            np.testing.assert_allclose(w, (np.float32(1.5) * scale) * raw, rtol=2 * 2.0**-23, atol=0,
                                       err_msg=f"{init} {profile} layer {l}")


@pytest.mark.slow
def test_a_network_in_a_deeper_program_is_the_network_alone():
    """Depth and fan mode are arguments of a program: a network of depth 3 inside the program
    of depth 7 equals its own program's result (to float32 rounding), for every fan mode."""
    probe = kernel.Probe(batch=4, loss="mse", outputs=2, precision="highest", jacobian=True)
    for profile in ("constant", "alternating"):
        deep = network.Architecture.from_grid("tanh", "fan_in", profile, 7, 6)
        for init in ("fan_in", "fan_out", "fan_avg"):
            arch = network.Architecture.from_grid("tanh", init, profile, 3 if profile == "constant" else 5, 6)
            program = network.programs([deep, arch])[arch]
            assert program == network.programs([deep])[deep]
            indices, gains, biases = np.arange(4, dtype=np.uint32), np.full(4, 1.2, np.float32), np.full(4, 0.1, np.float32)
            inside = kernel.finish(kernel.make_kernel(program, probe, 2)(0, arch.prefix(program), indices, gains, biases),
                                   arch.depth)
            alone = kernel.finish(kernel.architecture_kernel(arch, probe, 2)(0, indices, gains, biases))
            assert inside.keys() == alone.keys()
            for name in alone:
                np.testing.assert_allclose(inside[name], alone[name], rtol=2e-6, atol=0, err_msg=f"{profile} {init} {name}")


@pytest.mark.parametrize("name, expected", [("relu", True), ("leaky_relu(0.2)", True), ("linear", True),
                                            ("leaky_relu(-0.5)", False), ("tanh", False), ("selu", False)])
def test_slope_from_output_is_the_slope_at_z(name, expected):
    """Where the registry says so, φ'(z) = φ'(c·φ(z)) for c > 0, zero and the kink included."""
    from sweep.config import activations

    act = activations.get(name)
    assert act.slope_from_output is expected
    z = jnp.asarray(np.concatenate([np.linspace(-3, 3, 61), [0.0, -1e-30, 1e-30]]), jnp.float32)
    slope = jax.vmap(jax.grad(act.fn))
    # Where it says no, taking the slope at the output would indeed be wrong.
    assert bool(jnp.array_equal(slope(z), slope(0.375 * act.fn(z)))) is expected
