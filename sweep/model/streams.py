"""The random streams: every random number a network is made of, and only here.

This module is the reproducibility contract. Network i of a sweep (its global index over
the grid axes and ``seed``, in C order) has the key ``fold_in(key(rng_seed), i)``. From it,
each kind of draw has a stream of its own, selected by ``fold_in`` with a tag:

* ``LAYER_STREAM``: layer l (1-based) is drawn from ``fold_in(fold_in(key, LAYER_STREAM), l)``;
  its weights from ``fold_in(that, 0)``, its biases from ``fold_in(that, 1)``; with the
  conditional sampler (``sweep.model.conditional``), a Gaussian dense layer's G from
  ``fold_in(that, 2)`` and H from ``fold_in(that, 3)`` instead of its weights. Index 0 is
  no layer of the statistics network: it is a trained residual network's input map.
* ``INPUT_STREAM``: the batch of inputs, i.i.d. N(0, 1).
* ``TARGET_STREAM``: the ``"mse"`` probe's targets, i.i.d. N(0, 1).
* ``READOUT_STREAM``: the readout, N(0, 1/n_L): the ``"mse"`` probe's and the trained
  network's initial readout are the same draw, the ``"projection"`` probe's its first column's
  length.

So a network is the same whether it is drawn alone, in a chunk of thousands, by the
statistics kernel, by scaled copies or by the trainer, and a layer's draw depends only on
the network's key and the layer's index.

Every draw is ``jax.random``'s, bit for bit. With threefry keys (jax's default) they are made by
``normal``, ``uniform`` and ``truncated_normal``, which write the threefry hash out in ``jnp``
operations (``_words``) that XLA fuses with the transform to the distribution into one pass;
jax's own CPU lowering runs the hash's rounds as a loop of separate passes, and that, not the
transform, is its cost. Measured on the 2-core CPU (8 draws vmapped, median of 21,
interleaved): a 128 × 1024 normal draw takes 0.26 ms instead of jax.random.normal's 1.31 ms,
whose jax.random.bits alone take 1.24 ms; a 1024 × 1024 weight matrix, one at a time on one
core, 5.9 ms instead of 8.6 ms (``tests/test_model_streams.py`` checks the equality). Keys of
another implementation (``jax_default_prng_impl``) draw with jax's functions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sweep.model import linalg

LAYER_STREAM = 0
INPUT_STREAM = 1
TARGET_STREAM = 2
READOUT_STREAM = 3


def network_key(rng_seed: int | jax.Array, index: int | jax.Array) -> jax.Array:
    """The key of the network with global ``index`` in a sweep with base seed ``rng_seed``."""
    return jax.random.fold_in(jax.random.key(rng_seed), index)


def layer_key(key: jax.Array, layer: int | jax.Array) -> jax.Array:
    """The key of layer ``layer`` (1-based) of the network with key ``key``."""
    return jax.random.fold_in(jax.random.fold_in(key, LAYER_STREAM), layer)


def raw_weights(key: jax.Array, shape: tuple[int, ...], distribution: str) -> jax.Array:
    """A raw weight draw of ``shape`` ``(*taps, n_in, n_out)`` of ``distribution``, before its layer's scale.

    N(0, 1), U(-1, 1) and N(0, 1) truncated to [-2, 2] are the draws of
    ``jax.nn.initializers.variance_scaling``, which scales them by the same factors
    (``sweep.config.inits.Init.kernel_scale``). Orthogonal ones are
    ``jax.nn.initializers.orthogonal``'s (of the kernel reshaped to ``(k^d · n_in, n_out)``)
    and ``delta_orthogonal``'s, factorised on CPUs by ``sweep.model.linalg`` (jaxlib's LAPACK
    QR can deadlock XLA's CPU thread pool).
    """
    if distribution == "normal":
        return normal(key, shape)
    if distribution == "uniform":
        return uniform(key, shape, -1.0, 1.0)
    if distribution == "truncated_normal":
        return truncated_normal(key, shape, -2.0, 2.0)
    if distribution == "delta_orthogonal":
        centre = tuple((k - 1) // 2 for k in shape[:-2])
        return jnp.zeros(shape).at[centre].set(raw_weights(key, shape[-2:], "orthogonal"))
    if jax.default_backend() != "cpu":
        return jax.nn.initializers.orthogonal()(key, shape)
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    gaussian = normal(key, (max(rows, cols), min(rows, cols)))  # jax.random.orthogonal's draw
    return linalg.orthogonal_from_gaussian(gaussian, (rows, cols)).reshape(shape)


def layer(key: jax.Array, shape: tuple[int, int], distribution: str, scale, bias_std) -> tuple[jax.Array, jax.Array]:
    """Draws one layer.

    Args:
      key: the layer's key (``layer_key``).
      shape: ``(n_in, n_out)``, or a conv kernel's ``(*taps, n_in, n_out)``.
      distribution: the init's distribution (``sweep.config.inits.Init.distribution``).
      scale: gain · ``Init.scale`` of the layer, a scalar: Var[W] = gain² / fan.
      bias_std: σ_b, a scalar.

    Returns:
      ``(W, b)`` of shapes ``shape`` and ``(n_out,)``.
    """
    return scale * raw_weights(jax.random.fold_in(key, 0), shape, distribution), bias(key, shape[-1], bias_std)


def bias(key: jax.Array, n_out: int, bias_std) -> jax.Array:
    """The layer's biases ``(n_out,)``, N(0, σ_b²); ``key`` is the layer's."""
    return bias_std * normal(jax.random.fold_in(key, 1), (n_out,))


def conditional_forward(key: jax.Array, batch: int, n_out: int) -> jax.Array:
    """A conditionally sampled layer's G ``(batch, n_out)``, i.i.d. N(0, 1); ``key`` is the
    layer's (``layer_key``)."""
    return _normal(jax.random.fold_in(key, 2), (batch, n_out))


def conditional_backward(key: jax.Array, rows: int, n_in: int) -> jax.Array:
    """A conditionally sampled layer's H ``(rows, n_in)``, i.i.d. N(0, 1): ``rows`` is the batch,
    or K times it for K cotangents backpropagated together."""
    return _normal(jax.random.fold_in(key, 3), (rows, n_in))


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The threefry-2x32 hash (20 rounds) of the counter pairs ``(x0, x1)`` under the key
    ``(k0, k1)``, uint32: ``jax.extend.random.threefry_2x32``'s, unrolled."""
    keys = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0, x1 = x0 + keys[(i + 1) % 3], x1 + keys[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


_SQRT2 = np.float32(np.sqrt(2))


def _fused(key: jax.Array, shape: tuple[int, ...]) -> bool:
    """Whether ``_words`` can make this draw: threefry keys, fewer than 2^32 entries."""
    return jax.random.key_data(key).shape == (2,) and math.prod(shape) < 2**32


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.normal(key, shape)``, bit for bit: fused (``_words``) for threefry keys, else jax's."""
    return _normal(key, shape) if _fused(key, shape) else jax.random.normal(key, shape)


def uniform(key: jax.Array, shape: tuple[int, ...], minval: float, maxval: float) -> jax.Array:
    """``jax.random.uniform(key, shape, minval=minval, maxval=maxval)``, bit for bit, as ``normal``."""
    if not _fused(key, shape):
        return jax.random.uniform(key, shape, minval=minval, maxval=maxval)
    return _uniform(_words(key, shape), np.float32(minval), np.float32(maxval))


def truncated_normal(key: jax.Array, shape: tuple[int, ...], lower: float, upper: float) -> jax.Array:
    """``jax.random.truncated_normal(key, lower, upper, shape)``, bit for bit, as ``normal``: the
    normal quantiles of a uniform draw between Φ(lower) and Φ(upper), clipped inside (lower, upper)."""
    if not _fused(key, shape):
        return jax.random.truncated_normal(key, lower, upper, shape)
    lower, upper = jnp.float32(lower), jnp.float32(upper)
    u = _uniform(_words(key, shape), jax.lax.erf(lower / _SQRT2), jax.lax.erf(upper / _SQRT2))
    return jnp.clip(_SQRT2 * jax.lax.erf_inv(u), jnp.nextafter(lower, np.float32(np.inf)),
                    jnp.nextafter(upper, np.float32(-np.inf)))


def _words(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.bits(key, shape)``, uint32, bit for bit (threefry keys, ``jax_threefry_partitionable``
    on, jax's default), in one elementwise pass: entry i (in C order) is x₀ ⊕ x₁, where (x₀, x₁)
    is the threefry-2x32 hash of the counter pair (0, i)."""
    data = jax.random.key_data(key)
    if not _fused(key, shape):
        raise ValueError(f"fused draws need threefry keys and fewer than 2^32 entries, got key data of shape "
                         f"{data.shape} and a draw of shape {shape}")
    strides = np.cumprod((1,) + tuple(shape[:0:-1]))[::-1]
    counter = sum((jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
                   for axis, stride in enumerate(strides)), jnp.zeros(shape, jnp.uint32))
    x0, x1 = _threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), counter)
    return x0 ^ x1


def _uniform(words: jax.Array, minval, maxval) -> jax.Array:
    """Uniforms in [minval, maxval) from ``words``, as ``jax.random.uniform`` makes them (float32):
    the top 23 bits as the mantissa of a float in [1, 2), shifted and scaled."""
    floats = jax.lax.bitcast_convert_type((words >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32) - np.float32(1)
    return jnp.maximum(minval, floats * (maxval - minval) + minval)


def _normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.normal(key, shape)``, bit for bit, fused: √2 erf⁻¹(u) of a uniform u in (−1, 1)
    made from ``_words``, as ``jax.random.normal`` makes it."""
    low = np.nextafter(np.float32(-1), np.float32(0))
    return _SQRT2 * jax.lax.erf_inv(_uniform(_words(key, shape), low, np.float32(1)))


def inputs(key: jax.Array, batch: int, n_in: int, spatial: tuple[int, ...] = ()) -> jax.Array:
    """The network's batch of inputs, ``(batch, *spatial, n_in)``, i.i.d. N(0, 1) (images of
    ``n_in`` channels for convolutions)."""
    return normal(jax.random.fold_in(key, INPUT_STREAM), (batch, *spatial, n_in))


def input_map(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A trained residual network's map from the data to its stream, ``shape`` ``(*taps, n_features, n_0)``,
    i.i.d. N(0, 1/fan_in), fan_in = k^d · n_features: on standardised features, a stream of
    unit second moment, as the statistics kernel's N(0, 1) inputs. Drawn from layer index 0."""
    fan_in = int(np.prod(shape[:-1]))
    return normal(jax.random.fold_in(layer_key(key, 0), 0), shape) / np.sqrt(fan_in)


def readout(key: jax.Array, n_last: int, outputs: int) -> jax.Array:
    """The readout ``(n_last, outputs)``, i.i.d. N(0, 1/n_last)."""
    return normal(jax.random.fold_in(key, READOUT_STREAM), (n_last, outputs)) / np.sqrt(n_last)


def projection(key: jax.Array, n_last: int) -> jax.Array:
    """The ``"projection"`` probe's direction ``(n_last,)``, i.i.d. N(0, 1/n_last)."""
    return normal(jax.random.fold_in(key, READOUT_STREAM), (n_last,)) / np.sqrt(n_last)


def targets(key: jax.Array, batch: int, outputs: int) -> jax.Array:
    """The ``"mse"`` probe's targets ``(batch, outputs)``, i.i.d. N(0, 1)."""
    return normal(jax.random.fold_in(key, TARGET_STREAM), (batch, outputs))

