"""The passes' weight-gradient norm from Gram matrices equals the materialised gradient's,
within a bound derived from float32 rounding, and is chosen only where it is cheaper."""

import jax
import numpy as np
import pytest

from sweep.kernel import passes

U = 2.0**-24  # float32 unit roundoff


def gram_error_bound(h: np.ndarray, delta: np.ndarray) -> float:
    """A first-order bound on |computed − exact| of Σ(hᵀδ)² for both float32 paths.

    With M = Σ_ij (|h|ᵀ|δ|)²_ij = ⟨|h||h|ᵀ, |δ||δ|ᵀ⟩ (the same number either way):
    the plain path rounds each entry of hᵀδ (a dot product of length B, error ≤ γ_B·(|h|ᵀ|δ|)_ij),
    squares it (relative 2γ_B + u) and sums n_in·n_out squares (γ_{n_in·n_out}); the Gram
    path rounds hhᵀ and δδᵀ (lengths n_in and n_out) and sums B² products (γ_{B²}). So
    |error| ≤ (2B + n_in + n_out + B² + n_in·n_out + 2)·u·M for both, and their difference
    is at most twice that. Here γ_k ≈ k·u.
    """
    batch, n_in = h.shape
    n_out = delta.shape[1]
    m = np.sum((np.abs(h).T @ np.abs(delta)) ** 2)
    return 2 * (2 * batch + n_in + n_out + batch**2 + n_in * n_out + 2) * U * m


@pytest.mark.parametrize("batch, n_in, n_out, scale",
                         [(8, 64, 64, 1.0), (4, 128, 32, 1e-3), (16, 40, 200, 30.0), (1, 16, 16, 1.0)])
def test_gram_weight_gradient_equals_the_materialised_one(batch, n_in, n_out, scale):
    rng = np.random.default_rng(batch * n_in)
    h = np.maximum(rng.standard_normal((batch, n_in)), 0).astype(np.float32) * np.float32(scale)  # relu outputs
    delta = (rng.standard_normal((batch, n_out)) * (rng.random((batch, n_out)) > 0.5)).astype(np.float32)
    hi = jax.lax.Precision.HIGHEST
    plain = float(jax.jit(lambda a, b: passes.grad_weight_meansq(a, b, hi, gram=False))(h, delta))
    gram = float(jax.jit(lambda a, b: passes.grad_weight_meansq(a, b, hi, gram=True))(h, delta))
    exact = np.sum((h.astype(np.float64).T @ delta.astype(np.float64)) ** 2)
    norm = batch**2 * n_in * n_out  # meansq of hᵀδ / B = Σ(hᵀδ)² / (B² n_in n_out)
    bound = gram_error_bound(h.astype(np.float64), delta.astype(np.float64)) / norm
    assert abs(gram - plain) <= bound
    assert abs(gram - exact / norm) <= bound and abs(plain - exact / norm) <= bound
    # A worst-case bound, linear in n_in·n_out, yet far below the value itself.
    assert bound < 0.1 * exact / norm


def test_gram_is_chosen_only_when_cheaper():
    assert passes.gram_is_cheaper(128, 1024, 1024)
    assert passes.gram_is_cheaper(128, 256, 256)  # equal FLOPs, no transposed copy
    assert not passes.gram_is_cheaper(128, 128, 128)
    assert not passes.gram_is_cheaper(128, 32, 32)
