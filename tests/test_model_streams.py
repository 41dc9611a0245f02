"""The random streams are the reproducibility contract: each draw from its documented key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import inits
from sweep.model import streams


def test_every_draw_comes_from_its_tagged_stream_of_the_network_key():
    key = streams.network_key(7, 123)
    assert jax.random.key_data(key).tolist() == jax.random.key_data(jax.random.fold_in(jax.random.key(7), 123)).tolist()
    normal = lambda tag, shape: np.asarray(jax.random.normal(jax.random.fold_in(key, tag), shape))
    np.testing.assert_array_equal(streams.inputs(key, 5, 9), normal(1, (5, 9)))
    np.testing.assert_array_equal(streams.targets(key, 5, 3), normal(2, (5, 3)))
    np.testing.assert_array_equal(streams.readout(key, 16, 3), normal(3, (16, 3)) / np.float32(4.0))
    np.testing.assert_array_equal(streams.projection(key, 16), normal(3, (16,)) / np.float32(4.0))
    for l in range(1, 4):
        expected = jax.random.fold_in(jax.random.fold_in(key, streams.LAYER_STREAM), l)
        assert jax.random.key_data(streams.layer_key(key, l)).tolist() == jax.random.key_data(expected).tolist()


@pytest.mark.parametrize("init", [n for n in inits.NAMES if n != "delta_orthogonal"])  # conv only: test_kernel_conv
def test_a_layer_is_its_scale_times_a_raw_draw_as_jax_initializers_draw_it(init):
    key = streams.layer_key(streams.network_key(0, 1), 1)
    spec = inits.get(init)
    for shape in [(6, 4), (4, 6)]:
        scale = np.float32(1.5) * np.float32(spec.scale(*shape))
        w, b = streams.layer(key, shape, spec.distribution, scale, 0.25)
        raw = streams.raw_weights(jax.random.fold_in(key, 0), shape, spec.distribution)
        np.testing.assert_array_equal(w, scale * raw)
        np.testing.assert_array_equal(b, np.float32(0.25) * jax.random.normal(jax.random.fold_in(key, 1), (shape[1],)))
        if spec.distribution == "orthogonal":
            reference = jax.nn.initializers.orthogonal()(jax.random.fold_in(key, 0), shape)
            np.testing.assert_allclose(raw, reference, atol=2e-6)
        else:
            reference = jax.nn.initializers.variance_scaling(1.0, spec.mode, spec.distribution)(
                jax.random.fold_in(key, 0), shape)
            # The same draw; the initializer multiplies by sqrt(variance) in its own order.
            np.testing.assert_allclose(np.float32(spec.scale(*shape)) * raw, reference, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 6), (3, 5), (1, 1), (128, 33)])
def test_the_conditional_samplers_draws_are_jax_normals(shape):
    """G and H are ``jax.random.normal`` of their tagged keys, bit for bit."""
    key = streams.layer_key(streams.network_key(3, 17), 2)
    g, h = (np.asarray(jax.random.normal(jax.random.fold_in(key, tag), shape)) for tag in (2, 3))
    np.testing.assert_array_equal(jax.jit(streams.conditional_forward, static_argnums=(1, 2))(key, *shape), g)
    np.testing.assert_array_equal(jax.jit(streams.conditional_backward, static_argnums=(1, 2))(key, *shape), h)


@pytest.mark.parametrize("shape", [(7,), (2, 3, 5)])
def test_the_fused_normals_are_jax_normals_of_any_shape(shape):
    key = jax.random.key(11)
    np.testing.assert_array_equal(jax.jit(lambda k: streams._normal(k, shape))(key), jax.random.normal(key, shape))


@pytest.mark.parametrize("shape", [(16, 8), (3, 3, 4, 5)])
def test_gaussian_weights_are_jax_normals_bit_for_bit_jitted_and_vmapped(shape):
    keys = jax.vmap(lambda i: streams.layer_key(streams.network_key(5, i), 3))(jnp.arange(3))
    drawn = jax.jit(jax.vmap(lambda k: streams.raw_weights(k, shape, "normal")))(keys)
    np.testing.assert_array_equal(drawn, jax.vmap(lambda k: jax.random.normal(k, shape))(keys))


def test_keys_of_another_implementation_draw_with_jax():
    key = jax.random.key(2, impl="rbg")
    np.testing.assert_array_equal(streams.raw_weights(key, (4, 3), "normal"), jax.random.normal(key, (4, 3)))


@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal"])
def test_uniform_and_truncated_weights_are_jax_draws_bit_for_bit(distribution):
    keys = jax.vmap(lambda i: streams.layer_key(streams.network_key(6, i), 2))(jnp.arange(3))
    shape = (33, 17)
    drawn = jax.jit(jax.vmap(lambda k: streams.raw_weights(k, shape, distribution)))(keys)
    if distribution == "uniform":
        reference = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, shape, minval=-1.0)))(keys)
    else:
        reference = jax.jit(jax.vmap(lambda k: jax.random.truncated_normal(k, -2.0, 2.0, shape)))(keys)
    np.testing.assert_array_equal(drawn, reference)
    edge = 1.0 if distribution == "uniform" else 2.0
    assert -edge <= float(drawn.min()) and float(drawn.max()) < edge
