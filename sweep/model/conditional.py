"""Gaussian dense layers sampled from their conditional law: cost B·n per layer, not n².

A layer enters the statistics only through X W (forward) and Δ Wᵀ (backward), X ``(B, n_in)``
the batch's inputs to the layer and Δ ``(B, n_out)`` its output cotangents. Let the rows of Y
``(B, n_in)`` be orthonormal and span X's rows, X = C Y (``basis``). For W with i.i.d.
N(0, s²) entries:

* forward: G = Y W ``(B, n_out)`` has i.i.d. N(0, s²) entries, and X W = C G;
* backward: given G, W = Yᵀ G + (I − YᵀY) W̃ with W̃ an independent copy of W, so
  Δ Wᵀ = (Δ Gᵀ) Y + F (I − YᵀY), F = Δ W̃ᵀ. Δ depends on this layer only through X W, hence
  is independent of W̃, and F's columns are i.i.d. N(0, s² Δ Δᵀ): F = L H for any L with
  L Lᵀ = Δ Δᵀ and H ``(B, n_in)`` i.i.d. N(0, s²).

So every statistic has exactly the joint law it has with W drawn, while a layer draws 2·B·n
normals instead of n_in·n_out and its products are B × B × n instead of B × n × n. Biases add
as usual. G and H come from the layer's key (``sweep.model.streams.conditional_forward``
and ``conditional_backward``), so a
network is the same in every chunk, on every device and after a resume. Needs B < n_in
(otherwise Y would be a full basis and nothing is saved): the plan runs such layers, and
every layer of a network whose init is not Gaussian, as drawn matrices.

Numerics (float32 throughout). Y comes from two passes of Cholesky-QR (``linalg.row_basis``)
of X with its rows' mean moved into the first row. A batch whose inputs have become
correlated (deep ordered-phase or critical layers) is a large common row plus small
deviations; after the move the Gram matrix holds the deviations at their own scale, so they
are resolved to float32 precision rather than to √u of the common part (u = 2^-24, float32's
unit roundoff). Two passes leave Y orthonormal to a few u (Yamamoto et al. 2015) whenever the
first pass's rows are orthonormal to better than about 1/2. A direction of the centred rows
whose Cholesky pivot is below ``TOLERANCE`` times its row's square norm is left out: it is
below about √(B·u) of the spread of X's rows (in a 128 × 1024 matrix with singular values
spread evenly over six decades, ‖X − C Y‖ / ‖X‖ ≤ 10⁻³; for a common row plus deviations
of any size, and for Gaussian, relu-like or repeated rows, ≤ 10⁻⁵: ``tests/test_sampler.py``).
What is left out enters X W as though X had been rounded by that much. F uses the Cholesky
factor of the centred Δ Δᵀ, leaving out pivots below ``ROOT_TOLERANCE`` = 2^-16 of their row's
square norm, so F's covariance is Δ Δᵀ to within that share of each row. The floor matters:
deep backward passes make the batch's cotangents nearly collinear (the same product of layer
maps acts on every example), and without it a pivot left by rounding alone, far smaller than
the rounding in its column, gave that column, and F, an error far above u (measured: 29 of 512
tanh networks at σ_w = 0.8, σ_b = 0.05, depth 50, batch 32 had backward mean squares 10 to 70
times too large; tested in ``tests/test_sampler.py``). Y needs no such floor: a pass only
combines x's rows, and the second pass restores orthonormality.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sweep.model import linalg, streams

TOLERANCE = 4 * 2.0 ** -24
"""The relative Cholesky pivot below which ``basis`` leaves a direction out."""

ROOT_TOLERANCE = 2.0 ** -16
"""The relative Cholesky pivot below which ``_gram_root`` leaves a direction out."""

_HIGHEST = jax.lax.Precision.HIGHEST


class ConditionalLayer(NamedTuple):
    """A Gaussian dense layer that is never drawn as a matrix.

    Attributes:
      key: the layer's key (``streams.layer_key``); G and H come from it.
      scale: s, the weights' standard deviation (gain · ``Init.kernel_scale``), a float32 scalar.
    """

    key: jax.Array
    scale: jax.Array


def applies(distribution: str, n_in: int, batch: int) -> bool:
    """Whether a layer of ``distribution`` with ``n_in`` inputs runs conditionally at ``batch``."""
    return distribution == "normal" and batch < n_in


def _centred(x: jax.Array) -> jax.Array:
    """The rows of ``x`` ``(B, n)`` with their mean in row 0 and each other row less the mean:
    an invertible map of the rows (``_uncentred``)."""
    mean = jnp.mean(x, axis=0)
    return (x - mean).at[0].set(mean)


def _uncentred(x: jax.Array) -> jax.Array:
    """The inverse of ``_centred``: row 0 is x_0 = m − Σ_{j≥1} d_j, row j is m + d_j."""
    mean, rest = x[0], x[1:]
    return jnp.concatenate([(mean - jnp.sum(rest, axis=0))[None], mean + rest])


def basis(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Orthonormal rows spanning the rows of ``x``.

    Args:
      x: ``(B, n)``, B < n.

    Returns:
      ``(y, c)``: ``y`` ``(B, n)`` with orthonormal or zero rows, and ``c`` ``(B, B)`` with
      x ≈ c y (see the module docstring for the bound): c = x yᵀ, the closest such
      matrix (the passes' own factors, multiplied out, lose accuracy as x's condition grows).
    """
    y = linalg.row_basis(_centred(x), TOLERANCE)
    return y, jnp.matmul(x, y.T, precision=_HIGHEST)


def _gram_root(d: jax.Array) -> jax.Array:
    """L ``(B, B)`` with L Lᵀ = d dᵀ for ``d`` ``(B, n)``, via the centred rows."""
    centred = _centred(d)
    factor = linalg.cholesky(jnp.matmul(centred, centred.T, precision=_HIGHEST), ROOT_TOLERANCE)
    return _uncentred(factor)


def forward(h: jax.Array, layer: ConditionalLayer, n_out: int, precision) -> tuple[jax.Array, tuple]:
    """``h @ W`` in law, without W.

    Args:
      h: the layer's inputs ``(..., B, n_in)``: one network's, or (leading axes) those of
        networks that share the layer's random numbers (the gains of one draw).
      layer: the layer.
      n_out: its output width.
      precision: ``lax.Precision`` of the products.

    Returns:
      ``(z, residual)``: h W ``(..., B, n_out)`` (without the bias), and what ``backward``
      needs: ``(y, c, g)``, the bases of h's rows ``(..., B, n_in)`` with h ≈ c y, c
      ``(..., B, B)``, and the unit draw G ``(B, n_out)`` that they share.
    """
    g = streams.conditional_forward(layer.key, h.shape[-2], n_out)
    y, c = jnp.vectorize(basis, signature="(b,n)->(b,n),(b,b)")(h)
    return layer.scale * jnp.matmul(c, g, precision=precision), (y, c, g)


def input_gram(residual: tuple) -> jax.Array:
    """h hᵀ ``(..., B, B)`` from ``forward``'s residual (c cᵀ, since y's rows are orthonormal)."""
    _, c, _ = residual
    return jnp.matmul(c, jnp.swapaxes(c, -1, -2), precision=_HIGHEST)


def backward(delta: jax.Array, layer: ConditionalLayer, residual: tuple, precision) -> jax.Array:
    """``delta @ Wᵀ`` in law given the forward pass, without W.

    Args:
      delta: the cotangents at the layer's pre-activations ``(..., R, n_out)``, with the
        leading axes of ``forward``'s ``h``; R = B, or K·B for K cotangents of the same
        network stacked (their F then share W̃, as they must).
      layer: the layer.
      residual: ``forward``'s.
      precision: ``lax.Precision`` of the products.

    Returns:
      Δ Wᵀ ``(..., R, n_in)``: (Δ Gᵀ − L (H yᵀ)) y + L H, L = ``_gram_root(Δ)``.
    """
    y, _, g = residual
    noise = streams.conditional_backward(layer.key, delta.shape[-2], y.shape[-1])  # H

    def one(delta, y):
        root = _gram_root(delta)
        projected = jnp.matmul(root, jnp.matmul(noise, y.T, precision=precision), precision=precision)
        coefficients = jnp.matmul(delta, g.T, precision=precision) - projected
        return jnp.matmul(coefficients, y, precision=precision) + jnp.matmul(root, noise, precision=precision)

    return layer.scale * jnp.vectorize(one, signature="(r,o),(b,n)->(r,n)")(delta, y)
