"""The random streams are the reproducibility contract: each draw from its documented key."""

import jax
import numpy as np

from sweep.model import streams


def test_every_draw_comes_from_its_tagged_stream_of_the_network_key():
    key = streams.network_key(7, 123)
    assert jax.random.key_data(key).tolist() == jax.random.key_data(jax.random.fold_in(jax.random.key(7), 123)).tolist()
    normal = lambda tag, shape: np.asarray(jax.random.normal(jax.random.fold_in(key, tag), shape))
    np.testing.assert_array_equal(streams.inputs(key, 5, 9), normal(1, (5, 9)))
    np.testing.assert_array_equal(streams.targets(key, 5, 3), normal(2, (5, 3)))
    np.testing.assert_array_equal(streams.readout(key, 16, 3), normal(3, (16, 3)) / np.float32(4.0))
    np.testing.assert_array_equal(streams.projection(key, 16), normal(3, (16,)) / np.float32(4.0))
    layers = streams.layer_keys(key, np.arange(1, 4))
    for l, layer_key in zip(range(1, 4), layers):
        expected = jax.random.fold_in(jax.random.fold_in(key, streams.LAYER_STREAM), l)
        assert jax.random.key_data(layer_key).tolist() == jax.random.key_data(expected).tolist()


def test_a_layer_is_gain_times_its_unit_weights_and_its_biases_from_their_own_streams():
    key = streams.layer_keys(streams.network_key(0, 1), np.arange(1, 2))[0]
    w, b = streams.layer(key, (6, 4), "fan_in", 1.5, 0.25)
    np.testing.assert_array_equal(w, 1.5 * streams.weights(jax.random.fold_in(key, 0), (6, 4), "fan_in"))
    np.testing.assert_array_equal(b, 0.25 * jax.random.normal(jax.random.fold_in(key, 1), (4,)))
    unit = streams.weights(jax.random.fold_in(key, 0), (6, 4), "fan_in")
    np.testing.assert_array_equal(unit, jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")(
        jax.random.fold_in(key, 0), (6, 4)))
