"""Gaussian dense layers sampled from their conditional law: cost B·n per layer, not n².

A layer enters the statistics only through X W (forward) and Δ Wᵀ (backward), X ``(B, n_in)``
the batch's inputs to the layer and Δ ``(B, n_out)`` its output cotangents. Let the rows of Y
``(B, n_in)`` be orthonormal and span X's rows, X = A Y. For W with i.i.d. N(0, s²) entries:

* forward: G = Y W ``(B, n_out)`` has i.i.d. N(0, s²) entries, and X W = A G;
* backward: given G, W = Yᵀ G + (I − YᵀY) W̃ with W̃ an independent copy of W, so
  Δ Wᵀ = (Δ Gᵀ) Y + F (I − YᵀY), F = Δ W̃ᵀ. Δ depends on this layer only through X W, hence
  is independent of W̃, and F's columns are i.i.d. N(0, s² Δ Δᵀ): F = L H for any L with
  L Lᵀ = Δ Δᵀ and H ``(B, n_in)`` i.i.d. N(0, s²).

So every statistic has exactly the joint law it has with W drawn, while a layer draws 2·B·n
normals instead of n_in·n_out and its products are B × B × n instead of B × n × n. Biases add
as usual. G and H come from the layer's key (``sweep.model.streams.conditional_forward``
and ``conditional_backward``), so a network is the same in every chunk, on every device and
after a resume. Needs B < n_in (otherwise Y would be a full basis and nothing is saved): the
plan runs such layers, and every layer of a network whose init is not Gaussian, as drawn
matrices.

Y is never formed. Cholesky-QR of X's centred rows R₀ (below) gives rows R = T₁ R₀, orthonormal
to about u·κ², and a second pass gives T with Y = T R orthonormal to a few u (``basis``), so
that, with A = X Rᵀ Tᵀ = X Yᵀ,

    X W = A G,    Δ Wᵀ = F + (Δ Gᵀ − (F Rᵀ) Tᵀ) T R,    F = L H:

ten B × B × n products per layer (the Gram matrices of X's centred rows and of Δ's row
differences, which the weight gradient's norm uses as well; R; R Rᵀ; X Rᵀ; A G; Δ Gᵀ;
L H; F Rᵀ; and one with R), and B-step factorisations of B × B matrices only
(``linalg.cholesky_inverse``).

Numerics (float32 throughout; u = 2^-24, float32's unit roundoff). The first pass factorises
the Gram matrix of X's rows with their mean moved into the first row (``_centred``). A batch
whose inputs have become correlated (deep ordered-phase or critical layers) is a large common
row plus small deviations; after the move the Gram matrix holds the deviations at their own
scale, so they are resolved to float32 precision rather than to √u of the common part. The
second pass factorises the Gram matrix of the explicit rows R, which are orthonormal to
better than about 1/2 whenever the first pass resolved them, so that Y = T R is orthonormal to
a few u (Cholesky-QR2: Yamamoto et al. 2015, "Roundoff error analysis of the CholeskyQR2
algorithm"); one pass alone (Y = T₁ R₀, which would save three of the ten products) leaves
errors of u·κ², which for a spectrum spread evenly over six decades (κ² ≈ 1/(4u) at the cut)
made the backward noise's variance wrong by factors of 10 to 1000 in the directions near the
cut. A is X Yᵀ, the closest such matrix, not the passes' factors multiplied out (they lose
accuracy as X's condition grows). A direction of the centred rows whose first-pass Cholesky
pivot is below ``TOLERANCE`` times its row's square norm is left out: it is below about
√(B·u) of the spread of X's rows: with the factorisation's and the Gram matrix's rounding,
‖C − C YᵀY‖ / ‖C‖ ≤ √((TOLERANCE/u + B + 1 + √n)·u) for the centred rows C (3.1e-3 at B = 128,
n = 1024; in a matrix with singular values spread evenly over six decades, measured 1.0e-3 for
C and X alike; for a common row plus deviations of any size, and for Gaussian, relu-like or
repeated rows, ≤ 10⁻⁵: ``tests/test_sampler.py``). What is left
out enters X W as though X had been rounded by that much. F uses the Cholesky factor of the
Gram matrix of Δ's row differences (row 0, and each row less row 0: exact, and inverted
exactly, in floating point), leaving out pivots below ``ROOT_TOLERANCE`` = 2^-16 of their
row's square norm, so F's covariance is Δ Δᵀ to within that share of each row. The floor
matters: deep backward passes make the batch's cotangents nearly collinear (the same product
of layer maps acts on every example), and without it a pivot left by rounding alone, far
smaller than the rounding in its column, gave that column, and F, an error far above u
(measured: 29 of 512 tanh networks at σ_w = 0.8, σ_b = 0.05, depth 50, batch 32 had backward
mean squares 10 to 70 times too large; tested in ``tests/test_sampler.py``). Y needs no such
floor: a pass only combines X's rows, and the second pass restores orthonormality.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sweep.model import linalg, streams

TOLERANCE = 4 * 2.0 ** -24
"""The relative Cholesky pivot below which ``basis`` leaves a direction of X out."""

ROOT_TOLERANCE = 2.0 ** -16
"""The relative Cholesky pivot below which ``_gram_root`` leaves a direction of Δ out."""

_HIGHEST = jax.lax.Precision.HIGHEST


class ConditionalLayer(NamedTuple):
    """A Gaussian dense layer that is never drawn as a matrix.

    Attributes:
      key: the layer's key (``streams.layer_key``); G and H come from it.
      scale: s, the weights' standard deviation (gain · ``Init.kernel_scale``), a float32 scalar.
    """

    key: jax.Array
    scale: jax.Array


class Basis(NamedTuple):
    """Orthonormal rows Y = T R spanning the rows of X ``(B, n)``, held as two factors.

    Attributes:
      rows: R ``(B, n)``: combinations of X's rows, orthonormal to about u·κ(X)².
      inverse: T ``(B, B)``, lower triangular: Y = T R has orthonormal or zero rows.
      factor: A = X Yᵀ ``(B, B)``: X ≈ A Y (see the module docstring for the bound).
      gram: X Xᵀ ``(B, B)``, as A Aᵀ.
    """

    rows: jax.Array
    inverse: jax.Array
    factor: jax.Array
    gram: jax.Array


def applies(distribution: str, n_in: int, batch: int) -> bool:
    """Whether a layer of ``distribution`` with ``n_in`` inputs runs conditionally at ``batch``."""
    return distribution == "normal" and batch < n_in


def _gram(a: jax.Array) -> jax.Array:
    return jnp.matmul(a, a.T, precision=_HIGHEST)


def _centred(x: jax.Array) -> jax.Array:
    """The rows of ``x`` ``(B, n)`` with their mean in row 0 and each other row less the mean:
    an invertible map of the rows, so they span the same space."""
    mean = jnp.mean(x, axis=0)
    return (x - mean).at[0].set(mean)


def basis(x: jax.Array) -> Basis:
    """An orthonormal basis of the rows of ``x`` ``(B, n)``, B < n, by two passes of Cholesky-QR
    of its centred rows (see the module docstring for the method and its accuracy)."""
    centred = _centred(x)
    _, first = linalg.cholesky_inverse(_gram(centred), TOLERANCE)
    rows = jnp.matmul(first, centred, precision=_HIGHEST)
    _, inverse = linalg.cholesky_inverse(_gram(rows), TOLERANCE)
    factor = jnp.matmul(jnp.matmul(x, rows.T, precision=_HIGHEST), inverse.T, precision=_HIGHEST)  # X Rᵀ Tᵀ
    return Basis(rows, inverse, factor, _gram(factor))


def _differences(d: jax.Array) -> jax.Array:
    """Row 0 of ``d`` ``(R, n)``, and each other row less row 0."""
    return d.at[1:].add(-d[0])


def _sums(a: jax.Array) -> jax.Array:
    """The inverse map of ``_differences``: row 0, and each other row plus row 0."""
    return a.at[1:].add(a[0])


def differences_gram(delta: jax.Array) -> jax.Array:
    """The Gram matrix ``(R, R)`` of the row differences of ``delta`` ``(R, n)`` (``_differences``):
    what a conditional layer's backward pass factorises."""
    return _gram(_differences(delta))


def gram(differences: jax.Array) -> jax.Array:
    """Δ Δᵀ ``(R, R)`` from ``differences_gram(Δ)``: the map of the rows' differences undone
    on both sides, B × B work."""
    return _sums(_sums(differences).T)


def _gram_root(differences: jax.Array) -> jax.Array:
    """L ``(R, R)`` with L Lᵀ = Δ Δᵀ, from ``differences_gram(Δ)``: its Cholesky factor, with
    the rows' differences undone. Column by column: the blocked factorisation's Schur
    complements carry rounding amplified by the condition of the blocks' explicit inverses,
    which here would enter F's covariance."""
    return _sums(linalg.cholesky(differences, ROOT_TOLERANCE))


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
      needs: ``(basis, g)``, the ``Basis`` of h's rows (with h's leading axes) and the unit
      draw G ``(B, n_out)`` that they share.
    """
    g = streams.conditional_forward(layer.key, h.shape[-2], n_out)
    rows = Basis(*jnp.vectorize(lambda x: tuple(basis(x)), signature="(b,n)->(b,n),(b,b),(b,b),(b,b)")(h))
    return layer.scale * jnp.matmul(rows.factor, g, precision=precision), (rows, g)


def input_gram(residual: tuple) -> jax.Array:
    """h hᵀ ``(..., B, B)`` from ``forward``'s residual."""
    return residual[0].gram


def backward(delta: jax.Array, layer: ConditionalLayer, residual: tuple, precision,
             differences: jax.Array | None = None) -> jax.Array:
    """``delta @ Wᵀ`` in law given the forward pass, without W.

    Args:
      delta: the cotangents at the layer's pre-activations ``(..., R, n_out)``, with the
        leading axes of ``forward``'s ``h``; R = B, or K·B for K cotangents of the same
        network stacked (their F then share W̃, as they must).
      layer: the layer.
      residual: ``forward``'s.
      precision: ``lax.Precision`` of the products.
      differences: ``differences_gram(delta)`` ``(..., R, R)``, when it is computed already.

    Returns:
      Δ Wᵀ ``(..., R, n_in)``: F + (Δ Gᵀ − (F Rᵀ) Tᵀ) T R with F = L H, L = ``_gram_root``.
    """
    rows, g = residual
    noise = streams.conditional_backward(layer.key, delta.shape[-2], rows.rows.shape[-1])  # H
    if differences is None:
        differences = jnp.vectorize(differences_gram, signature="(r,o)->(r,r)")(delta)

    def one(delta, differences, r, t):
        f = jnp.matmul(_gram_root(differences), noise, precision=precision)
        projected = jnp.matmul(jnp.matmul(f, r.T, precision=_HIGHEST), t.T, precision=_HIGHEST)
        coefficients = jnp.matmul(jnp.matmul(delta, g.T, precision=precision) - projected, t, precision=_HIGHEST)
        return f + jnp.matmul(coefficients, r, precision=precision)

    out = jnp.vectorize(one, signature="(r,o),(r,r),(b,n),(b,b)->(r,n)")(delta, differences, rows.rows, rows.inverse)
    return layer.scale * out
