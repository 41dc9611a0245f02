"""The linear maps of a layer: dense, or a circular convolution of stride 1, with their transposes.

A layer's weight has shape ``(n_in, n_out)`` (dense) or ``(k, ..., k, c_in, c_out)`` (a conv
kernel over d = 1 or 2 spatial dims, ``jax.nn.initializers``' layout). Its inputs are
``(..., n_in)`` rows, or ``(..., *spatial, c_in)`` images; the weight's rank says which. Conv
inputs are padded circularly ("wrap"), so every position sees a full receptive field and all
positions are equivalent: the per-position statistics are those of one position.

A conv layer is one matrix product of its inputs' receptive fields (``_patches``) with the
kernel; its input gradient is that product's transpose (``jax.linear_transpose``), and its
weight gradient the product of the receptive fields with the output cotangents.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp


def spatial_rank(w: jax.Array) -> int:
    """d, the spatial dims of a weight: 0 for a dense layer."""
    return w.ndim - 2


def _patches(h: jax.Array, taps: tuple[int, ...]) -> jax.Array:
    """Each position's receptive field: ``h`` ``(..., *spatial, c)`` -> ``(..., *spatial, prod(taps)·c)``.

    Tap ``j`` (in C order over ``taps``) of position p is h at p + j − (k − 1)/2, wrapped
    around, so that contracting with the kernel reshaped to ``(prod(taps)·c_in, c_out)`` is
    the circular cross-correlation ``lax.conv_general_dilated`` computes on wrap-padded inputs.
    Written as rolls and one matrix product rather than as an XLA convolution: inside the
    kernel's layer scans, XLA's CPU convolutions of the weight gradient ran 20 times slower
    than this product (measured).
    """
    axes = tuple(range(h.ndim - len(taps) - 1, h.ndim - 1))
    offsets = itertools.product(*(range(-(k // 2), k // 2 + 1) for k in taps))
    return jnp.concatenate([jnp.roll(h, tuple(-o for o in offset), axis=axes) for offset in offsets], axis=-1)


def _rows_times(h: jax.Array, w: jax.Array, contract: int, precision) -> jax.Array:
    """``h`` ``(..., n)`` times the matrix ``w``, contracting its axis ``contract``, as one ``dot_general``
    over the rows of ``h`` (``h @ w.T`` would lower to a copy of the transposed weights on CPU)."""
    out = jax.lax.dot_general(h.reshape(-1, h.shape[-1]), w, (((1,), (contract,)), ((), ())), precision=precision)
    return out.reshape(h.shape[:-1] + (out.shape[-1],))


def linear(h: jax.Array, w: jax.Array, precision) -> jax.Array:
    """``h`` through the layer's linear map (no bias).

    Args:
      h: ``(..., n_in)``, or ``(..., *spatial, c_in)`` for a conv kernel.
      w: the weight.
      precision: ``lax.Precision``.

    Returns:
      ``(..., n_out)``, or ``(..., *spatial, c_out)``.
    """
    if spatial_rank(w) == 0:
        return _rows_times(h, w, 0, precision)
    return _rows_times(_patches(h, w.shape[:-2]), w.reshape(-1, w.shape[-1]), 0, precision)


def linear_transpose(g: jax.Array, w: jax.Array, precision) -> jax.Array:
    """The transpose of ``linear`` in its input: the cotangent at the layer's input.

    Args:
      g: ``(..., n_out)``, or ``(..., *spatial, c_out)``.
      w: the weight.
      precision: ``lax.Precision``.

    Returns:
      ``(..., n_in)``, or ``(..., *spatial, c_in)``.
    """
    if spatial_rank(w) == 0:
        return _rows_times(g, w, 1, precision)
    like = jax.ShapeDtypeStruct(g.shape[:-1] + (w.shape[-2],), g.dtype)
    (out,) = jax.linear_transpose(lambda h: linear(h, w, precision), like)(g)
    return out


def weight_gradient(h: jax.Array, delta: jax.Array, w_shape: tuple[int, ...], precision) -> jax.Array:
    """Σ over the batch (and positions) of the layer's weight gradient: ``hᵀδ`` for a dense layer.

    Args:
      h: the layer's inputs ``(B, n_in)`` or ``(B, *spatial, c_in)``.
      delta: the cotangents at its pre-activations, ``(B, n_out)`` or ``(B, *spatial, c_out)``.
      w_shape: the weight's shape.
      precision: ``lax.Precision``.

    Returns:
      ``w_shape``: ∂(Σ_b δ_b · z_b)/∂W.
    """
    if len(w_shape) == 2:
        return jnp.matmul(h.T, delta, precision=precision)
    patches = _patches(h, w_shape[:-2])
    out = jax.lax.dot_general(patches.reshape(-1, patches.shape[-1]), delta.reshape(-1, delta.shape[-1]),
                              (((0,), (0,)), ((), ())), precision=precision)
    return out.reshape(w_shape)
