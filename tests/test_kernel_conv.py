"""Conv networks: the kernel measures exactly what plain autodiff of the same conv net gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import plain_statistics

from sweep import kernel
from sweep.config import inits
from sweep.kernel import reference
from sweep.model import layers, network, streams

slow = pytest.mark.slow
CASES = [  # activation, init, profile, spatial, kernel size, loss, bias std, common random numbers
    ("relu", "fan_in", "constant", (8,), 3, "mse", 0.0, False),
    pytest.param("relu", "fan_out", "alternating", (6, 6), 3, "mse", 0.3, True, marks=slow),
    pytest.param("tanh", "fan_avg_uniform", "constant", (8,), 5, "projection", 0.2, False, marks=slow),
    pytest.param("tanh", "orthogonal", "alternating", (4, 4), 3, "mse", 0.0, True, marks=slow),
    pytest.param("gelu", "fan_in_truncated", "constant", (5, 5), 3, "mse", 0.1, False, marks=slow),
    pytest.param("gelu", "delta_orthogonal", "constant", (4, 4), 3, "projection", 0.1, True, marks=slow),
]


@pytest.mark.parametrize("activation, init, profile, spatial, k, loss, bias_std, crn", CASES)
def test_conv_kernel_equals_plain_autodiff(activation, init, profile, spatial, k, loss, bias_std, crn):
    arch = network.Architecture.from_grid(activation, init, profile, 4, 6, network.Conv(k, spatial))
    probe = kernel.Probe(batch=3, loss=loss, outputs=3, precision="highest", jacobian=False,
                         gains_per_draw=2 if crn else 1)
    run = kernel.architecture_kernel(arch, probe, 2)
    gains = jnp.asarray([0.9, 1.6], jnp.float32)
    stats = kernel.finish(run(jnp.uint32(5), jnp.asarray([11, 12], jnp.uint32), gains,
                              jnp.full(2, bias_std, jnp.float32)))
    for i, index in enumerate((11, 12)):
        # With common random numbers both networks are the draw of the first index.
        key = streams.network_key(5, 11 if crn else index)
        expected, loss_value = plain_statistics(arch, probe, key, gains[i], bias_std)
        for name, values in expected.items():
            np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)
        assert not stats["overflow"][i].any()


@slow
def test_conv_scaled_copies_equal_plain_autodiff():
    """relu without bias: the gains of a draw run as scaled copies of one conv net."""
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", 5, 4, network.Conv(3, (8, 8)))
    for loss in ("mse", "projection"):
        probe = kernel.Probe(3, loss, 2, "highest", False, gains_per_draw=3, scaled_copies=True)
        assert probe.runs_scaled_copies(arch)
        gains = jnp.asarray([0.5, 1.0, 3.0], jnp.float32)
        stats = kernel.finish(kernel.architecture_kernel(arch, probe, 3)(
            jnp.uint32(2), jnp.asarray([7, 8, 9], jnp.uint32), gains, jnp.zeros(3, jnp.float32)))
        for i in range(3):
            expected, loss_value = plain_statistics(arch, probe, streams.network_key(2, 7), gains[i], 0.0)
            for name, values in expected.items():
                np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=f"{loss} {name}")
            np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)


def test_relu_conv_homogeneity_holds_far_beyond_float32():
    """z_l(g W) = g^l z_l(W) in a bias-free relu conv net, at scales float32 cannot hold."""
    depth, gain = 50, 20.0
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", depth, 12, network.Conv(3, (8,)))
    probe = kernel.Probe(batch=2, loss="projection", outputs=1, precision="highest", jacobian=False)
    stats = kernel.finish(kernel.architecture_kernel(arch, probe, 1)(
        jnp.uint32(0), jnp.asarray([3, 3], jnp.uint32), jnp.asarray([1.0, gain], jnp.float32), jnp.zeros(2, jnp.float32)))
    layer = np.arange(1, depth + 1)
    assert not stats["overflow"].any()
    for name, power in [("preact_meansq", 2 * layer), ("grad_preact_meansq", 2 * (depth - layer))]:
        np.testing.assert_allclose(np.log10(stats[name][1] / stats[name][0]), power * np.log10(gain), atol=1e-4)
    assert stats["preact_meansq"][1, -1] > 1e100


@pytest.mark.parametrize("mode, distribution", [("fan_in", "normal"), ("fan_out", "uniform"),
                                                ("fan_avg", "truncated_normal")])
def test_conv_layers_are_jax_variance_scaling_draws(mode, distribution):
    """A unit-gain conv layer is ``jax.nn.initializers.variance_scaling`` with the conv axes."""
    suffix = {"normal": "", "uniform": "_uniform", "truncated_normal": "_truncated"}[distribution]
    init = inits.get(mode + suffix)
    shape = (3, 3, 4, 6)
    key = jax.random.key(0)
    w, _ = streams.layer(key, shape, init.distribution, init.kernel_scale(shape), 0.0)
    expected = jax.nn.initializers.variance_scaling(1.0, mode, distribution, in_axis=-2, out_axis=-1)(
        jax.random.fold_in(key, 0), shape)
    np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-7)


@slow
def test_conv_orthogonal_draws_are_jax_orthogonal_and_delta_orthogonal():
    key = jax.random.key(3)
    for shape in [(3, 4, 6), (3, 3, 2, 5), (3, 8, 4)]:
        np.testing.assert_allclose(streams.raw_weights(key, shape, "orthogonal"),
                                   jax.nn.initializers.orthogonal()(key, shape), atol=2e-6)
    for shape in [(3, 4, 6), (5, 5, 3, 3)]:
        np.testing.assert_allclose(streams.raw_weights(key, shape, "delta_orthogonal"),
                                   jax.nn.initializers.delta_orthogonal()(key, shape), atol=2e-6)


def test_conv_fans_count_the_taps():
    """He et al.: n_l = k²c (fan_in) and n̂_l = k²d (fan_out) for a k × k conv from c to d channels."""
    assert inits.fans((3, 3, 16, 32)) == (144, 288)
    assert inits.get("fan_in").variance_fan((3, 3, 16, 32)) == 144
    assert inits.get("fan_out").variance_fan((3, 3, 16, 32)) == 288
    assert inits.get("fan_avg").variance_fan((3, 3, 16, 32)) == 216
    assert inits.get("delta_orthogonal").ratios((3, 3, 16, 32)) == (0.5, 1.0)
    assert inits.get("fan_in").ratios((3, 3, 16, 32)) == (1.0, 2.0)


def test_circular_convolution_transposes_are_exact_adjoints():
    """⟨conv(h), g⟩ = ⟨h, convᵀ(g)⟩ = ⟨W, ∂/∂W⟩: the maps the backward pass uses."""
    keys = jax.random.split(jax.random.key(1), 3)
    h = jax.random.normal(keys[0], (2, 5, 7, 3))
    w = jax.random.normal(keys[1], (3, 3, 3, 4))
    g = jax.random.normal(keys[2], (2, 5, 7, 4))
    hi = jax.lax.Precision.HIGHEST
    z = layers.linear(h, w, hi)
    assert z.shape == (2, 5, 7, 4)
    lhs = jnp.sum(z * g)
    np.testing.assert_allclose(jnp.sum(h * layers.linear_transpose(g, w, hi)), lhs, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(w * layers.weight_gradient(h, g, w.shape, hi)), lhs, rtol=1e-5)
    # circular: shifting the input shifts the output; and it is XLA's convolution of the wrapped input
    np.testing.assert_allclose(layers.linear(jnp.roll(h, 2, axis=1), w, hi), jnp.roll(z, 2, axis=1), atol=1e-5)
    np.testing.assert_allclose(z, reference.circular_conv(h, w, hi), rtol=1e-5, atol=1e-5)
    w1 = jax.random.normal(keys[1], (5, 3, 4))
    np.testing.assert_allclose(layers.linear(h[:, 0], w1, hi), reference.circular_conv(h[:, 0], w1, hi), rtol=1e-5, atol=1e-5)
