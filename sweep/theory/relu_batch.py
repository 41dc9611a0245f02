"""The batch-mean weight gradient of a (leaky) relu network at finite width: two inputs of one network.

Setting and notation of ``sweep.theory.relu_gradients`` (Gaussian weights, no bias, widths n_0..n_L,
v_l = σ_w²/fan_l, x_0 ~ N(0, I)), now with a batch of B independent inputs and the batch-mean loss
C = (1/B) Σ_b ℓ_b. Since ∂C/∂W_l = (1/B) Σ_b x^b_{l-1} δ^{bᵀ}_l and the examples are exchangeable,

    E[grad_weight_meansq_l] = E‖∂C/∂W_l‖²/(n_{l-1} n_l) = (1/B) T_same + (1 − 1/B) T_pair,

with T_same = E[‖x_{l-1}‖² ‖δ_l‖²]/(n_{l-1} n_l), the one-input mean (exact in closed form in
``relu_gradients``), and T_pair = E[(x^a_{l-1}·x^b_{l-1})(δ^a_l·δ^b_l)]/(n_{l-1} n_l) for two distinct
inputs a, b of one network, δ^c_l = ∂ℓ_c/∂z_l each example's own cotangent. T_pair is a law of two
inputs; it reduces exactly as follows.

Notation for two inputs: X_l = [x^a_l, x^b_l] (n_l × 2), G_l = X_lᵀX_l, g^c_l = ∂ℓ_c/∂x_l,
δ^c_l = D^c_l g^c_l with D^c_l = diag φ'(z^c_l), Δ_l[c, d] = δ^c_l·δ^d_l and M_l[c, d] = z^c_l·δ^d_l
(2 × 2; M is not symmetric). G⁺ is the pseudo-inverse.

1. Forward. Given X_{l-1}, the rows (z^a_i, z^b_i) of Z_l = X_{l-1}W_l are i.i.d. N(0, v_l G_{l-1}), so
   G_l is a Markov chain whose step is a sum of n_l i.i.d. terms. φ' is constant on each sign quadrant
   of (z^a_i, z^b_i), so everything below needs only the count and the sums of z_a², z_a z_b, z_b² over
   each quadrant (16 numbers per layer), drawn exactly from n_l bivariate normals per layer. φ is
   positively homogeneous, so draws at one set of scales v_l serve every gain and fan mode: the sums of
   layer l scale by ∏_{k≤l} v_k/v°_k and the patterns do not change.
2. Split. With Q an orthonormal basis of span(x^a_{l-1}, x^b_{l-1}), W_l = QQᵀW_l + P⊥W_l. Z_l depends
   on W_l only through QᵀW_l, so the layers above and the readout do too, and P⊥W_l is Gaussian and
   independent of QᵀW_l, of X_{l-1} and of everything above (as in ``relu_gradients``, step 2).
3. Backward step. QQᵀ = X G⁺Xᵀ (X = X_{l-1}) and XᵀW_lδ^d_l = [z^c_l·δ^d_l]_c = M_l[:, d], so

       g^d_{l-1} = W_lδ^d_l = X G⁺ M_l[:, d] + P⊥Ξ^d,   Ξ = W′[δ^a_l, δ^b_l],

   W′ an independent copy of W_l: given everything above, the rows of Ξ are i.i.d. N(0, v_l Δ_l).
4. With y^{cd} = D^d_{l-1} z^c_{l-1} (so y^{dd} = x^d: zφ'(z) = φ(z)), Γ = the 4 × 4 Gram of the y's,
   u^{cd} = Xᵀy^{cd} = the columns of Γ on (aa, bb), H^{cd} = XᵀD^cD^dX and t^{cd} = tr D^cD^d (all at
   layer l − 1):

       M_{l-1}[c, d] = (G⁺u^{cd})ᵀ M_l[:, d] + (P⊥y^{cd})·Ξ^d,
       Δ_{l-1}[c, d] = M_l[:, c]ᵀ G⁺H^{cd}G⁺ M_l[:, d] + (linear in Ξ) + Ξ^{cᵀ} P⊥D^cD^dP⊥ Ξ^d.

   For c = d, P⊥y^{dd} = 0 and G⁺u^{dd} = e_d: M[d, d] = x^d·g^d is the same at every layer (the
   one-input law's invariant h).
5. Conditional means. Given the whole forward pass F, the Ξ of different layers are independent with
   mean zero, so Δ_l and S_l = E[M_l ⊗ M_l] (the 4 × 4 second moments of M's entries) follow a linear
   recursion in conditional expectation, exactly:

       S_{l-1} = A S_l Aᵀ + Cov(η),  A[(c,d), (e,d′)] = [d = d′](G⁺u^{cd})_e,
       Cov(η^{cd}, η^{c′d′}) = v_lΔ_l[d, d′] (Γ − Γ_{·X} G⁺ Γ_{X·})[(c,d), (c′,d′)],
       Δ_{l-1}[c, d] = Σ_{ef} (G⁺H^{cd}G⁺)_{ef} S_l[(e,c), (f,d)] + v_lΔ_l[c, d] (t^{cd} − tr G⁺H^{cd}),

   (tr P⊥D P⊥ = tr D − tr G⁺XᵀDX), where from here on Δ_l and S_l stand for their means given F.
6. Readout, the top of the recursion (v = 1, no slope):
   ``"projection"``, ℓ_c = x^c_L·u: M_top[c, d] = f_c = x^c_L·u for both d, f ~ N(0, G_L/n_L), so
   S_top[(c,d), (c′,d′)] = G_L[c, c′]/n_L, and the orthogonal part has covariance J/n_L (J all ones).
   ``"mse"``, ℓ_c = ½‖Rᵀx^c_L − y^c‖²: M_top[c, d] = f^c·e^d with f^c = Rᵀx^c_L, e^c = f^c − y^c; with
   Σ = G_L/n_L and O outputs (Isserlis over the O independent outputs)
   S_top[(c,d), (c′,d′)] = O²Σ_{cd}Σ_{c′d′} + O(Σ_{cc′}(Σ + I)_{dd′} + Σ_{cd′}Σ_{c′d}), covariance O(Σ + I)/n_L.
7. So T_pair = E[G_{l-1}[a, b] Δ_l[a, b]]/(n_{l-1} n_l), a mean over the forward chain alone: the
   backward pass and the readout are integrated exactly, and the forward chain is drawn exactly.
   The same draws give the one-input term (G_{l-1}[a, a]Δ_l[a, a] + G_{l-1}[b, b]Δ_l[b, b])/2, whose mean
   is T_same, exact in closed form (``relu_gradients``, which zeroes a dead layer's contributions as
   the engine does); it serves as a control variate (regression estimator), which cuts the Monte Carlo
   variance by 5–25× at depth 30, width 256 (mse), where the two inputs are strongly correlated.

Leaky relu, φ(z) = max(z, αz): φ' ∈ {1, α} is constant on each quadrant and zφ'(z) = φ(z) still holds,
so every step holds as written (step 5 uses D only through traces and weighted Grams, which need not
be projections). Nothing here is specific to two layers of equal width or to fan_in: unequal widths
and the fan modes enter through n_l and v_l only. It does not cover biases (the constant input would
add a third direction to the split), other activations (no quadrant structure, no invariant) or
non-Gaussian weights (step 2 needs the rotation invariance of W_l).

The prediction is therefore exact up to its Monte Carlo error, which is returned with it (estimated
from the draws; the control-variate coefficient is estimated from the same draws, a bias O(1/num)).
A layer where an input dies (all its units ≤ 0) zeroes that input's contributions, as in the engine.
Two inputs that become exactly parallel (possible at small width when one unit carries both) have a
rank-one G, which G⁺ handles exactly; numerically G counts as rank one where det G < 1e-12 (tr G)².
The error estimate is that of a mean of i.i.d. terms; with mse the terms are heavy-tailed (the readout
carries the square of the forward norm, log-normal with variance ≈ 20β): the control variate's
residual has sample skewness ≈ 12 over 8192 draws at depth 30, width 256 (β = 0.12), 25–55 at
β = 0.25–0.47, so the skewness of the estimate is ≈ 0.1 there with 2^14 draws but approaches 1 at
β ≳ 0.25 with 2^12, where the stated error understates the spread, as it does for the measurement's
own mean. The projection loss's residuals are light-tailed (skewness ≈ 3 at β = 0.12).

The split of W_l along its input is the rotation argument of Hanin (2018) and Hanin & Rolnick (2018)
for one input, applied to the span of two.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from sweep.theory import relu_gradients

CHUNK = 2048
"""The most forward draws per vectorised step."""

_CHUNK_BYTES = 320 * 2**20
"""Memory of one step's forward draws, about 160 bytes per draw and unit of the widest layer (the
normals, the quadrant masks and products in float64): CHUNK draws up to width 1024, fewer beyond,
so that the theory of a wide sweep stays well inside its memory budget."""

_POINTS = 8
"""Points (gain, fan mode) whose backward passes run together (bounds memory: _POINTS × CHUNK × L × 16)."""

_SLOPES = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
"""(φ'(z_a), φ'(z_b)) on the quadrants (++, +−, −+, −−) for relu; leaky relu replaces 0 by α."""

_ENTRIES = ((0, 0), (0, 1), (1, 0), (1, 1))
"""M[c, d] in the order of S's rows: (aa, ab, ba, bb)."""


class Estimate(NamedTuple):
    """A Monte Carlo mean per layer.

    Attributes:
      mean: ``(..., L)``.
      error: ``(..., L)``, its standard error.
    """

    mean: np.ndarray
    error: np.ndarray


def _quadrant_slopes(slope: float) -> np.ndarray:
    return np.where(_SLOPES == 0.0, slope, _SLOPES)


def forward_sums(rng: np.random.Generator, widths: Sequence[int], num: int, slope: float = 0.0):
    """Exact draws of the two-input forward chain at the reference scales v°_l = 2/((1 + α²) n_{l-1}).

    Args:
      rng: a ``numpy.random.Generator``.
      widths: ``(n_0, ..., n_L)``.
      num: number of networks.
      slope: α (0: relu).

    Returns:
      ``(gram0, sums)``: the inputs' Gram ``(num, 2, 2)`` and, per layer, ``(num, L, 4, 4)``: for each
      quadrant (++, +−, −+, −−) the count and the sums of z_a², z_a z_b, z_b².
    """
    depth = len(widths) - 1
    p = _quadrant_slopes(slope)
    x0 = rng.standard_normal((num, widths[0], 2))
    gram = np.einsum("kia,kib->kab", x0, x0)
    gram0 = gram
    sums = np.empty((num, depth, 4, 4))
    for l in range(depth):
        cov = gram * (2.0 / ((1.0 + slope**2) * widths[l]))
        a = np.sqrt(cov[:, 0, 0])
        b = cov[:, 1, 0] / np.where(a > 0, a, 1.0)
        c = np.sqrt(np.maximum(cov[:, 1, 1] - b * b, 0.0))
        w = rng.standard_normal((num, 2, widths[l + 1]))
        za = a[:, None] * w[:, 0]
        zb = b[:, None] * w[:, 0] + c[:, None] * w[:, 1]
        pa, pb = za > 0, zb > 0
        quadrants = np.stack([pa & pb, pa & ~pb, ~pa & pb, ~pa & ~pb], axis=1).astype(np.float64)
        products = np.stack([np.ones_like(za), za * za, za * zb, zb * zb], axis=2)
        q = quadrants @ products  # (num, 4, 4)
        sums[:, l] = q
        gram = _weighted_gram(q, p[:, 0] ** 2, p[:, 0] * p[:, 1], p[:, 1] ** 2)
    return gram0, sums


def _weighted_gram(q: np.ndarray, waa, wab, wbb) -> np.ndarray:
    """Σ_quadrants of [[w_aa Σz_a², w_ab Σz_a z_b], [·, w_bb Σz_b²]], ``(..., 2, 2)``."""
    out = np.empty(q.shape[:-2] + (2, 2))
    out[..., 0, 0] = q[..., 1] @ waa
    out[..., 1, 1] = q[..., 3] @ wbb
    out[..., 0, 1] = out[..., 1, 0] = q[..., 2] @ wab
    return out


def _pinv(g: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of PSD 2 × 2 matrices: rank one where det/tr² < 1e-12, zero where tr = 0."""
    det = g[..., 0, 0] * g[..., 1, 1] - g[..., 0, 1] * g[..., 1, 0]
    tr = g[..., 0, 0] + g[..., 1, 1]
    full = det > 1e-12 * tr * tr
    adj = np.stack([np.stack([g[..., 1, 1], -g[..., 0, 1]], -1), np.stack([-g[..., 1, 0], g[..., 0, 0]], -1)], -2)
    inverse = adj / np.where(full, det, 1.0)[..., None, None]
    rank_one = g / np.where(tr > 0, tr * tr, 1.0)[..., None, None]
    return np.where(full[..., None, None], inverse, rank_one)


def _layer_step(q: np.ndarray, slope: float, noise: np.ndarray, s: np.ndarray):
    """One backward step at layer l − 1 (step 5 of the module docstring), vectorised over leading dims.

    Args:
      q: the layer's quadrant sums ``(..., 4, 4)`` at the actual scale.
      slope: α.
      noise: the covariance of Ξ's rows, v_lΔ_l (or the readout's), ``(..., 2, 2)``.
      s: S_l, ``(..., 4, 4)``.

    Returns:
      ``(delta, s)``: Δ_{l-1} ``(..., 2, 2)`` and S_{l-1} ``(..., 4, 4)``.
    """
    p = _quadrant_slopes(slope)
    pa, pb = p[:, 0], p[:, 1]
    count, zaa, zab, zbb = (q[..., i] for i in range(4))  # (..., 4 quadrants)
    # y^{cd} = D^d z^c per quadrant: (slope factor, which z) for cd in (aa, ab, ba, bb).
    factor = np.stack([pa, pb, pa, pb])  # (4 entries, 4 quadrants): φ'(z^d)
    which = (0, 0, 1, 1)  # c: z_a or z_b
    zz = ((zaa, zab), (zab, zbb))
    gamma = np.empty(q.shape[:-2] + (4, 4))
    for m in range(4):
        for m2 in range(4):
            gamma[..., m, m2] = zz[which[m]][which[m2]] @ (factor[m] * factor[m2])
    x = [0, 3]
    gram = gamma[..., x, :][..., :, x]
    ginv = _pinv(gram)
    u = gamma[..., x, :]  # (..., 2, 4): u^m = Xᵀ y^m
    omega = np.swapaxes(ginv @ u, -1, -2)  # (..., 4, 2)
    a = np.zeros(q.shape[:-2] + (4, 4))
    for m, (_, d) in enumerate(_ENTRIES):
        for e in range(2):
            a[..., m, _ENTRIES.index((e, d))] = omega[..., m, e]
    residual = gamma - np.swapaxes(u, -1, -2) @ ginv @ u
    d_of = np.array([d for _, d in _ENTRIES])
    s_next = a @ s @ np.swapaxes(a, -1, -2) + noise[..., d_of[:, None], d_of[None, :]] * residual
    delta = np.empty(q.shape[:-2] + (2, 2))
    for c, d in ((0, 0), (0, 1), (1, 1)):
        w = p[:, c] * p[:, d]
        h = _weighted_gram(q, w * pa**2, w * pa * pb, w * pb**2)
        b = ginv @ h @ ginv
        rows = [_ENTRIES.index((e, c)) for e in range(2)]
        cols = [_ENTRIES.index((f, d)) for f in range(2)]
        block = s[..., rows, :][..., :, cols]
        trace = count @ w - np.einsum("...ef,...fe->...", ginv, h)
        delta[..., c, d] = delta[..., d, c] = np.sum(b * block, axis=(-1, -2)) + noise[..., c, d] * trace
    return delta, s_next


def _readout(gram_last: np.ndarray, n_last: int, loss: str, outputs: int):
    """(noise covariance, S_top) of step 6, ``(..., 2, 2)`` and ``(..., 4, 4)``."""
    shape = gram_last.shape[:-2]
    s = np.empty(shape + (4, 4))
    if loss == "projection":
        for m, (c, _) in enumerate(_ENTRIES):
            for m2, (c2, _) in enumerate(_ENTRIES):
                s[..., m, m2] = gram_last[..., c, c2] / n_last
        return np.ones(shape + (2, 2)) / n_last, s
    sigma, o, eye = gram_last / n_last, float(outputs), np.eye(2)
    for m, (c, d) in enumerate(_ENTRIES):
        for m2, (c2, d2) in enumerate(_ENTRIES):
            s[..., m, m2] = (o * o * sigma[..., c, d] * sigma[..., c2, d2]
                             + o * (sigma[..., c, c2] * (sigma[..., d, d2] + eye[d, d2]) + sigma[..., c, d2] * sigma[..., c2, d]))
    return o * (sigma + eye) / n_last, s


def conditional_terms(gram0: np.ndarray, sums: np.ndarray, widths: Sequence[int], scales: np.ndarray, loss: str,
                      outputs: int, slope: float = 0.0) -> np.ndarray:
    """Per draw, the backward pass integrated given the forward chain (steps 3–6), at the given scales.

    Args:
      gram0: ``(num, 2, 2)`` from ``forward_sums``.
      sums: ``(num, L, 4, 4)`` from ``forward_sums`` (reference scales).
      widths: ``(n_0, ..., n_L)``.
      scales: ``(P, L)`` v_l/v°_l per point (gain and fan mode).
      loss: ``"mse"`` or ``"projection"``.
      outputs: O.
      slope: α.

    Returns:
      ``(P, num, 2, L)``: per point, draw and layer, G_{l-1}[a,b]Δ_l[a,b]/(n_{l-1}n_l) given the forward
      pass (the pair term) and the mean over c of G_{l-1}[c,c]Δ_l[c,c]/(n_{l-1}n_l) (the one-input term).
    """
    depth = len(widths) - 1
    cumulative = np.cumprod(scales, axis=1)  # (P, L): layer l's sums scale by ∏_{k≤l}
    v_ref = 2.0 / ((1.0 + slope**2) * np.asarray(widths[:-1], np.float64))
    v = scales * v_ref  # (P, L)
    q = sums[None] * np.concatenate([np.ones((len(scales), depth, 1)), np.repeat(cumulative[..., None], 3, -1)],
                                    -1)[:, None, :, None, :]  # (P, num, L, 4, 4)
    p = _quadrant_slopes(slope)
    grams = [np.broadcast_to(gram0, q.shape[:2] + (2, 2))]
    grams += [_weighted_gram(q[:, :, l], p[:, 0] ** 2, p[:, 0] * p[:, 1], p[:, 1] ** 2) for l in range(depth)]
    noise, s = _readout(grams[-1], widths[-1], loss, outputs)
    out = np.empty(q.shape[:2] + (2, depth))
    for l in range(depth - 1, -1, -1):  # 0-based layer l is the paper's l + 1
        delta, s = _layer_step(q[:, :, l], slope, noise, s)
        below = grams[l]
        norm = widths[l] * widths[l + 1]
        out[:, :, 0, l] = below[..., 0, 1] * delta[..., 0, 1] / norm
        out[:, :, 1, l] = (below[..., 0, 0] * delta[..., 0, 0] + below[..., 1, 1] * delta[..., 1, 1]) / (2 * norm)
        noise = v[:, l, None, None, None] * delta
    return out


def _controls(widths, points, loss, outputs, slope) -> np.ndarray:
    """T_same per point and layer, ``(P, L)``: the control variate's exact mean."""
    return np.stack([relu_gradients.gradient_means(widths, g, init, loss, outputs, slope).grad_weight_meansq
                     for g, init in points])


def draws_for(networks: int) -> int:
    """The forward draws ``predict`` uses beside a measurement over ``networks`` networks: 4 per network,
    between 2^12 and 2^16. Each draw's term is a conditional mean with a control variate, less variable
    than one network's value, so the prediction's error stays well below the measurement's standard error
    (at depth 30, width 256, batch 64: about a fifth of it)."""
    return int(min(2**16, max(2**12, 4 * networks)))


def pair_term(widths: Sequence[int], points: Sequence[tuple[float, str]], loss: str = "mse", outputs: int = 10,
              slope: float = 0.0, num: int = 2**14, seed: int = 0) -> Estimate:
    """T_pair per point and layer, with its Monte Carlo error (control-variate estimator, module docstring).

    Args:
      widths: ``(n_0, ..., n_L)``.
      points: ``(σ_w, init)`` pairs, init one of ``finite_width.GAUSSIAN_INITS``; one set of forward
        draws serves them all.
      loss: ``"mse"`` or ``"projection"``.
      outputs: O, the mse readout's dimension.
      slope: α (0: relu; ``leaky_relu(α)``).
      num: forward draws; the error shrinks like 1/√num.
      seed: the draws' seed (fixed: the prediction is a deterministic function of its arguments).

    Returns:
      ``Estimate`` of ``(len(points), L)`` arrays.
    """
    if loss not in relu_gradients.LOSSES:
        raise ValueError(f"loss must be one of {relu_gradients.LOSSES}; got {loss!r}")
    widths = tuple(int(n) for n in widths)
    v_ref = 2.0 / ((1.0 + slope**2) * np.asarray(widths[:-1], np.float64))
    scales = np.stack([relu_gradients.variance_scales(widths, g, init) / v_ref for g, init in points])
    rng = np.random.default_rng(seed)
    depth = len(widths) - 1
    sums = np.zeros((len(points), depth, 2))  # Σ of (pair, control) about the pivot
    products = np.zeros((len(points), depth, 2, 2))
    pivot = None
    chunk = max(1, min(CHUNK, _CHUNK_BYTES // (160 * max(widths))))
    for start in range(0, num, chunk):
        gram0, quadrant_sums = forward_sums(rng, widths, min(chunk, num - start), slope)
        y = np.concatenate([conditional_terms(gram0, quadrant_sums, widths, scales[i:i + _POINTS], loss, outputs, slope)
                            for i in range(0, len(points), _POINTS)])  # (P, k, 2, L)
        y = np.moveaxis(y, (1, 3), (3, 1))  # (P, L, 2, k)
        if pivot is None:
            pivot = y.mean(-1)  # moments about the first chunk's mean, for float64 accuracy
        centred = y - pivot[..., None]
        sums += centred.sum(-1)
        products += centred @ np.swapaxes(centred, -1, -2)
    mean = sums / num
    cov = (products / num - mean[..., :, None] * mean[..., None, :]) * num / (num - 1)
    mean = mean + pivot
    beta = cov[..., 0, 1] / np.where(cov[..., 1, 1] > 0, cov[..., 1, 1], 1.0)
    estimate = mean[..., 0] - beta * (mean[..., 1] - _controls(widths, points, loss, outputs, slope))
    residual = cov[..., 0, 0] - beta * cov[..., 0, 1]
    return Estimate(estimate, np.sqrt(np.maximum(residual, 0.0) / (num - 2)))


def batch_weight_meansq(widths: Sequence[int], points: Sequence[tuple[float, str]], batch: int, loss: str = "mse",
                        outputs: int = 10, slope: float = 0.0, num: int = 2**14, seed: int = 0) -> Estimate:
    """E[grad_weight_meansq] at batch B: (1/B) T_same (exact) + (1 − 1/B) T_pair (Monte Carlo), per point and layer.

    Args:
      widths: ``(n_0, ..., n_L)``.
      points: ``(σ_w, init)`` pairs.
      batch: B ≥ 1 (at 1 the closed form, error 0).
      loss, outputs, slope, num, seed: as ``pair_term``.

    Returns:
      ``Estimate`` of ``(len(points), L)`` arrays.
    """
    mean, error = _batch_weight_meansq(tuple(int(n) for n in widths), tuple((float(g), str(i)) for g, i in points),
                                       int(batch), loss, int(outputs), float(slope), int(num), int(seed))
    return Estimate(mean.copy(), error.copy())


@functools.lru_cache(maxsize=32)
def _batch_weight_meansq(widths, points, batch, loss, outputs, slope, num, seed) -> Estimate:
    """``batch_weight_meansq`` on hashable arguments, remembered: a run, its deviation and its report share it."""
    same = _controls(widths, points, loss, outputs, slope)
    if batch == 1:
        return Estimate(same, np.zeros_like(same))
    pair = pair_term(widths, points, loss, outputs, slope, num, seed)
    share = 1.0 - 1.0 / batch
    return Estimate(same / batch + share * pair.mean, share * pair.error)
