"""The exact finite-width law of a (leaky) relu network's gradients for one input (Gaussian weights, no bias).

Notation of ``sweep.theory.finite_width``: widths n_0..n_L, v_l = σ_w²/fan_l, x_0 ~ N(0, I_{n_0}),
z_l = x_{l-1} W_l, x_l = relu(z_l), N_l = ‖x_l‖²; for one example's loss ℓ, g_l = ∂ℓ/∂x_l,
δ_l = ∂ℓ/∂z_l = φ'(z_l) ⊙ g_l, G_l = ‖g_l‖², D_l = ‖δ_l‖², and ‖∂ℓ/∂W_l‖² = N_{l-1} D_l.

Derivation (the forward half is Hanin & Rolnick 2018's; the backward half follows the same
rotation argument as Hanin 2018 for the input–output Jacobian):

1. Forward: N_l = v_l N_{l-1} F_l with F_l = χ²_{K_l}, K_l ~ Binomial(n_l, ½), independent layers.
2. Split W_l along its input, x̂ = x_{l-1}/‖x_{l-1}‖: W_l = x̂ᵀ a_l + P⊥ W_l with a_l = x̂ W_l ~ N(0, v_l I)
   and z_l = ‖x_{l-1}‖ a_l. The layers above see W_l only through a_l, and P⊥ W_l is Gaussian and
   independent of a_l, of x_{l-1} and of everything above.
3. So g_{l-1} = W_l δ_l = x̂ (a_l·δ_l) + P⊥ W_l δ_l, where, given δ_l, P⊥ W_l δ_l ~ N(0, v_l D_l P⊥)
   independently of the rest.
4. For relu z φ'(z) = φ(z), hence x_{l-1}·g_{l-1} = z_l·δ_l = x_l·g_l: h = x_l·g_l is the same at every
   layer, and a_l·δ_l = h/‖x_{l-1}‖.
5. x̂ lives on the K_{l-1} active units of layer l−1, so the orthogonal part's square norm is
   v_l D_l C_{l-1} on those units (C ~ χ²_{K-1}) and v_l D_l H_{l-1} on all of them (H ~ χ²_{n-1}):

       D_{l-1} = h²/N_{l-1} + v_l C_{l-1} D_l,        G_{l-1} = h²/N_{l-1} + v_l H_{l-1} D_l.

6. The readout splits the same way at x_L. ``"projection"``, ℓ = x_L·u, u ~ N(0, I/n_L):
   u = x̂ ρ + P⊥u with ρ ~ N(0, 1/n_L), orthogonal variance w = 1/n_L, h = ‖x_L‖ ρ.
   ``"mse"``, ℓ = ½‖x_L R − y‖² with O outputs: R = x̂ᵀ r + P⊥R, r ~ N(0, I_O/n_L), e = ‖x_L‖ r − y,
   g_L = R e = x̂ (r·e) + P⊥R e, so ρ = r·e, w = ‖e‖²/n_L and h = ‖x_L‖ ρ; given N_L,
   E[ρ²] = N_L O(O + 2)/n_L² + O/n_L and E[w] = O(N_L/n_L + 1)/n_L. Then D_L = ρ² + w C_L, G_L = ρ² + w H_L.

Unrolled, D_l = Σ_{m=l}^{L} ρ² (N_L/N_m) ∏_{k=l}^{m-1} v_{k+1} C_k + w ∏_{k=l}^{L} C_k ∏_{k=l}^{L-1} v_{k+1}:
a sum of products of independent per-layer factors, with ρ² and w entering linearly and their
means affine in N_L = N_0 ∏ v_k F_k. Every mean is therefore a finite sum of products of the
per-layer moments E[F^j C^i] (E[χ²_K^j | K] = K(K + 2)…(K + 2j − 2), E[C | K] = K − 1) and of
E[N_0^p] = n_0(n_0 + 2)…, each summed exactly over the binomial: exact up to float64 rounding.
A dead layer (K = 0) is given F = C = 0, as the engine's networks have; the law differs from the
engine's only on the event of a dead layer below a live one, of probability ≤ Σ_k 2^{-n_k}.

Leaky relu, φ(z) = max(z, αz), keeps z φ'(z) = φ(z), so steps 2–4 hold unchanged; the forward
factor becomes F = P + α²Q (P = χ²_K over the K positive units, Q = χ²_{n−K} over the others), and
since φ'(z) no longer projects, step 5 holds in the mean: given the forward pass,
E[D_{l-1}] = (h²/N_{l-1}) a_{l-1} + v_l b_{l-1} E[D_l] with a = ‖φ'(z) ⊙ x̂‖² = (P + α⁴Q)/F and
b = tr φ'(z)² − a (the cross term between x̂ and the orthogonal part has mean 0). The means stay sums
of products of per-layer moments E[F^j], E[F^j a], E[F^j b]; the one ratio among them, E[a | K],
is a one-dimensional integral (``_mean_a``). Relu is α = 0: a = 1 and b = K − 1. The spread's law
(``sample_gradients``) is drawn for relu only, where the layer factors are χ² variables.

Consequences, checked by the tests:

* ``"projection"``: the sum telescopes, E[D_l] is the infinite-width value exactly (relu and leaky
  relu alike), and N_{l-1}
  and D_l use disjoint layers, so every gradient mean of the mean-field recursion is exact at
  any width (as Hanin 2018 finds for the Jacobian's squared entries).
* ``"mse"``: ρ² and w carry N_L, so E[N_{l-1} D_l] contains E[N_{l-1} N_L] ∝ ∏_{k<l}(1 + 5/n_k):
  the weight gradient's mean exceeds the infinite-width value by a factor that grows like e^{5β}.
* The loss (½‖e‖², mean (O/2)(E[N_L]/n_L + 1)) and, for a batch, each example's own gradients
  have the one-input law at any batch size; only the batch-mean weight gradient mixes examples.

The spread of log ‖∂ℓ/∂W_l‖² over networks is a log of a sum, so its moments are estimated
from exact draws of the scalars above (``sample_gradients``), with their Monte Carlo errors.
For ``"projection"`` at large width the law is log-normal to first order in β = Σ_k 1/n_k:
mean log E[·] − 1/n_0 − (5/2)β and variance 2/n_0 + 5β, the same at every layer (forward layers
below l and backward layers from l up each add 5/n_k; the h² terms add 2/n_m to the mean,
cancelling the −2/n_m of E[C] = n/2 − 1).

For ``"mse"`` the readout adds an O(1) part and a coupling. Write D_l = w B_l (1 + Q_l) with
B_l = ∏_{k≥l} C_k ∏_{k=l}^{L-1} v_{k+1} and Q_l = (ρ²/w) Σ_{m≥l} A_{l,m}/B_l, where A_{l,m}/B_l =
∏_{k>m}(F_k/C_k)/C_m ≈ 2/n_m. With s² = N_L/n_L, r̃ = √n_L r and e = s r̃ − y: w = (s² + 1) X/n_L with
X = ‖e‖²/(s² + 1) ~ χ²_O independent of s, and ρ²/w = κ = (r̃·ê)² = (s√X + ξ)²/(s² + 1), ξ ~ N(0, 1)
(given e, r̃ ~ N(s e/(s² + 1), I/(s² + 1))). So, with m = E[s²], a = m/(1 + m), u = log s² − E log s²
(variance V = 2/n_0 + 5β) and β^<_l, β^≥_l the sums of 1/n_k below and from l:

    log grad_l = log N_{l-1} + log B_l + log(1 + m) + a u + log X + 2κβ^≥_l + const + O(β²),

log X exactly (mean ψ(O/2) + log 2, variance ψ'(O/2)) and the rest to first order: E log C_k ≈
log(n_k/2) − 4.5/n_k, Var log C_k ≈ 5/n_k, Cov(log C_k, log F_k) ≈ 1/n_k (the shared K_k),
E[κ] = (mO + 1)/(m + 1), Cov(log X, κ) = a Cov(log X, X) = 2a. Hence

    mean = E log N_{l-1} + E log B_l + log(1 + m) − a²V/2 + ψ(O/2) + log 2 − log n_L + 2β^≥_l (mO + 1)/(m + 1)
           − log(n_{l-1} n_l),
    var  = ψ'(O/2) + (1 + 2a)(2/n_0 + 5β^<_l) + 5β^≥_l + a²V + 10a β^≥_l,

(at He init, a = ½: ψ'(O/2) + 4.5/n_0 + 11.25β at every layer). The largest neglected term is
−2(β^≥_l)²E[κ²] in the mean, E[κ²] = (m²O(O + 2) + 6mO + 3)/(m + 1)² (45.75 at He init with O = 10):
the form is good where Oβ ≪ 1, not at depth 30, width 256 (Oβ ≈ 1.2), where only the exact law serves.
Measured against the exact law (depth 16, O = 10): within 2β²E[κ²] + 3β², e.g. 0.012 in the mean
and 0.003 in the variance at width 1024.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import integrate, special, stats

from sweep.theory import finite_width

LOSSES = ("mse", "projection")


class GradientMeans(NamedTuple):
    """Exact means of one example's statistics, per hidden layer l = 1..L.

    Attributes:
      grad_act_meansq: ``(L,)`` E[G_l]/n_l.
      grad_preact_meansq: ``(L,)`` E[D_l]/n_l.
      grad_weight_meansq: ``(L,)`` E[N_{l-1} D_l]/(n_{l-1} n_l), the weight gradient at batch 1.
      loss: E[ℓ], a float.
    """

    grad_act_meansq: np.ndarray
    grad_preact_meansq: np.ndarray
    grad_weight_meansq: np.ndarray
    loss: float


class LogLaw(NamedTuple):
    """Mean and variance of log grad_weight_meansq over alive networks at batch 1, per layer.

    Attributes:
      mean: ``(L,)`` E[log(‖∂ℓ/∂W_l‖²/(n_{l-1} n_l))].
      var: ``(L,)`` its variance.
      mean_error: ``(L,)`` the Monte Carlo standard error of ``mean``.
      var_error: ``(L,)`` the Monte Carlo standard error of ``var``.
    """

    mean: np.ndarray
    var: np.ndarray
    mean_error: np.ndarray
    var_error: np.ndarray


class _Terms(NamedTuple):
    """A sum of products Σ_t coef_t · N_0^{p_t} ∏_k (v_k F_k)^{j_tk} X_{k, i_tk}; T terms, L layers.

    X_{k,0} = 1, X_{k,1} = b_k, X_{k,2} = a_k (see ``_layer_moments``).
    """

    coef: np.ndarray  # (T,)
    p: np.ndarray  # (T,) int
    j: np.ndarray  # (T, L) int
    i: np.ndarray  # (T, L) int


def _concat(*terms: _Terms) -> _Terms:
    return _Terms(*(np.concatenate(parts) for parts in zip(*terms)))


def _scaled(terms: _Terms, factor: float) -> _Terms:
    return terms._replace(coef=terms.coef * factor)


@functools.cache
def _layer_moments(width: int, slope: float = 0.0) -> np.ndarray:
    """``(3, 3)`` E[F^j X_i] over the layer's pattern: X_0 = 1, X_1 = b, X_2 = a (module docstring).

    K ~ Binomial(n, ½) positive units, P = χ²_K and Q = χ²_{n-K} their and the others' square sums,
    F = P + α² Q, a = ‖φ'(z) ⊙ x̂‖² = (P + α⁴ Q)/F and b = tr φ'(z)² − a = K + α²(n − K) − a; for relu
    (α = 0) a = 1 and b = K − 1 on K ≥ 1, and every factor is 0 on a dead layer (K = 0).
    """
    k = np.arange(width + 1, dtype=np.float64)
    r = width - k
    pmf = stats.binom.pmf(k, width, 0.5)
    s2 = slope**2
    f = [np.ones_like(k), k + s2 * r, k * (k + 2) + 2 * s2 * k * r + s2**2 * r * (r + 2)]
    fa = [_mean_a(width, slope), k + s2**2 * r, k * (k + 2) + (s2 + s2**2) * k * r + s2**3 * r * (r + 2)]
    trace = k + s2 * r
    fb = [trace * fj - faj for fj, faj in zip(f, fa)]
    return np.array([[np.sum(pmf * x) for x in (fj, fbj, faj)] for fj, fbj, faj in zip(f, fb, fa)])


def _mean_a(width: int, slope: float) -> np.ndarray:
    """E[a | K] for K = 0..n: 1 − α²(1 − α²) E[Q/(P + α²Q)], by E[X/(X+Y)] = ∫₀^∞ E[X e^{−t(X+Y)}] dt.

    The integral, ∫₀^∞ (n−K)(1 + 2α²t)^{−(n−K)/2−1}(1 + 2t)^{−K/2} dt, is computed by adaptive
    quadrature to a relative 1e-11 (relu: a = 1 wherever K ≥ 1).
    """
    k = np.arange(width + 1, dtype=np.float64)
    if slope == 0:
        return (k > 0).astype(np.float64)
    s2 = slope**2
    r = width - k

    def integrand(t):
        with np.errstate(divide="ignore"):
            log = np.log(r) - (r / 2 + 1) * np.log1p(2 * s2 * t) - (k / 2) * np.log1p(2 * t)
        return np.exp(log)

    ratio, _ = integrate.quad_vec(integrand, 0.0, np.inf, epsrel=1e-11, epsabs=0.0)
    return 1.0 - s2 * (1.0 - s2) * ratio


def _expect(terms: _Terms, widths: Sequence[int], v: np.ndarray, slope: float = 0.0) -> float:
    depth = len(widths) - 1
    table = np.stack([_layer_moments(n, slope) for n in widths[1:]])  # (L, 3, 3)
    table = table * v[:, None, None] ** np.arange(3)[None, :, None]
    per_layer = table[np.arange(depth)[None, :], terms.j, terms.i]  # (T, L)
    n0 = widths[0]
    input_moment = np.array([1.0, n0, n0 * (n0 + 2.0)])[terms.p]
    return float(np.sum(terms.coef * input_moment * np.prod(per_layer, axis=1)))


def _readout(loss: str, n_last: int, outputs: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """E[ρ² | N_L] and E[w | N_L] as (slope on N_L, constant)."""
    if loss == "projection":
        return (0.0, 1.0 / n_last), (0.0, 1.0 / n_last)
    o = outputs
    return (o * (o + 2.0) / n_last**2, o / n_last), (o / n_last**2, o / n_last)


def _affine_in_last(slope_const: tuple[float, float], j: np.ndarray, depth: int) -> _Terms:
    """c · (a N_L + b) · ∏ (v F)^j: N_L adds 1 to every layer's power and one input power."""
    a, b = slope_const
    terms = [_Terms(np.array([b]), np.array([0]), j[None].copy(), np.zeros((1, depth), int))]
    if a:
        terms.append(_Terms(np.array([a]), np.array([1]), (j + 1)[None], np.zeros((1, depth), int)))
    return _concat(*terms)


def _rho_over_norm(m: int, readout, depth: int) -> _Terms:
    """ρ² N_L/N_m (layers 0-based: m = index of layer m, the product over layers above it)."""
    j = np.zeros(depth, int)
    j[m + 1:] = 1
    return _affine_in_last(readout[0], j, depth)


def _slope_at(terms: _Terms, m: int) -> _Terms:
    """Multiplies by a_m = ‖φ'(z_m) ⊙ x̂_m‖² (1 for relu): δ_m's share of the part of g_m along x_m."""
    i = terms.i.copy()
    i[:, m] = 2
    return terms._replace(i=i)


def _with_backward(terms: _Terms, first: int, last: int, v: np.ndarray) -> _Terms:
    """Multiplies by ∏_{k=first}^{last} v_{k+1} b_k (0-based layers; empty when last < first)."""
    i = terms.i.copy()
    i[:, first:last + 1] += 1
    coef = terms.coef * np.prod(v[first + 1:last + 2])
    return terms._replace(coef=coef, i=i)


def _preact_terms(l: int, readout, v: np.ndarray, depth: int) -> _Terms:
    """D_l (0-based l)."""
    parts = [_with_backward(_slope_at(_rho_over_norm(m, readout, depth), m), l, m - 1, v) for m in range(l, depth)]
    parts.append(_with_backward(_affine_in_last(readout[1], np.zeros(depth, int), depth), l, depth - 1, v))
    return _concat(*parts)


def _act_terms(l: int, readout, v: np.ndarray, widths: Sequence[int]) -> _Terms:
    """G_l (0-based l): h²/N_l plus the orthogonal part over all n_l units (E[H] = n_l − 1)."""
    depth = len(widths) - 1
    if l + 1 < depth:
        orthogonal = _scaled(_preact_terms(l + 1, readout, v, depth), v[l + 1] * (widths[l + 1] - 1.0))
    else:
        orthogonal = _scaled(_affine_in_last(readout[1], np.zeros(depth, int), depth), widths[l + 1] - 1.0)
    return _concat(_rho_over_norm(l, readout, depth), orthogonal)


def _times_input_norm(terms: _Terms, l: int) -> _Terms:
    """Multiplies by N_{l-1} = N_0 ∏_{k<l} v_k F_k (0-based l: the layers before it)."""
    j = terms.j.copy()
    j[:, :l] += 1
    return terms._replace(p=terms.p + 1, j=j)


def variance_scales(widths: Sequence[int], gain: float, init: str) -> np.ndarray:
    """v_l = σ_w²/fan_l, ``(L,)``, for one of ``finite_width.GAUSSIAN_INITS``."""
    finite_width._check_init(init)
    return finite_width._scales(widths, gain, init) * 2.0 / np.asarray(widths[:-1], np.float64)


def gradient_means(widths: Sequence[int], gain: float = math.sqrt(2.0), init: str = "fan_in",
                   loss: str = "mse", outputs: int = 10, slope: float = 0.0) -> GradientMeans:
    """Exact means of one example's gradient statistics and loss, (leaky) relu, Gaussian weights, σ_b = 0.

    Args:
      widths: ``(n_0, n_1, ..., n_L)``.
      gain: σ_w.
      init: one of ``finite_width.GAUSSIAN_INITS``.
      loss: ``"mse"`` or ``"projection"``.
      outputs: O, the mse readout's dimension.
      slope: α, the negative slope (0: relu; ``leaky_relu(α)``).

    Returns:
      ``GradientMeans`` of ``(L,)`` arrays (exact; see the module docstring).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    v = variance_scales(widths, gain, init)
    depth = len(widths) - 1
    readout = _readout(loss, widths[-1], outputs)
    act, preact, weight = (np.empty(depth) for _ in range(3))
    for l in range(depth):
        d = _preact_terms(l, readout, v, depth)
        preact[l] = _expect(d, widths, v, slope) / widths[l + 1]
        weight[l] = _expect(_times_input_norm(d, l), widths, v, slope) / (widths[l] * widths[l + 1])
        act[l] = _expect(_act_terms(l, readout, v, widths), widths, v, slope) / widths[l + 1]
    if loss == "projection":
        mean_loss = 0.0
    else:
        last = _Terms(np.array([1.0]), np.array([1]), np.ones((1, depth), int), np.zeros((1, depth), int))
        mean_loss = 0.5 * outputs * (_expect(last, widths, v, slope) / widths[-1] + 1.0)
    return GradientMeans(act, preact, weight, mean_loss)


class GradientDraws(NamedTuple):
    """Exact draws of one example's statistics at batch 1, per network and layer.

    Attributes:
      alive: ``(num,)`` bool, no layer dead (every K_l ≥ 1).
      grad_act_meansq: ``(num, L)`` G_l/n_l.
      grad_preact_meansq: ``(num, L)`` D_l/n_l.
      grad_weight_meansq: ``(num, L)`` N_{l-1} D_l/(n_{l-1} n_l).
    """

    alive: np.ndarray
    grad_act_meansq: np.ndarray
    grad_preact_meansq: np.ndarray
    grad_weight_meansq: np.ndarray


def sample_gradients(rng, widths: Sequence[int], num: int, gain: float = math.sqrt(2.0), init: str = "fan_in",
                     loss: str = "mse", outputs: int = 10) -> GradientDraws:
    """Draws of the law in the module docstring: independent scalars per layer, no matrices.

    Args:
      rng: a ``numpy.random.Generator`` or an integer seed.
      widths: ``(n_0, n_1, ..., n_L)``.
      num: number of networks.
      gain: σ_w.
      init: one of ``finite_width.GAUSSIAN_INITS``.
      loss: ``"mse"`` or ``"projection"``.
      outputs: O, the mse readout's dimension.

    Returns:
      ``GradientDraws``, float64.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    rng = finite_width._generator(rng)
    v = variance_scales(widths, gain, init)
    n = np.asarray(widths[1:], np.float64)
    depth = len(n)
    k = rng.binomial(widths[1:], 0.5, size=(num, depth))
    forward = v * 2.0 * rng.gamma(k / 2.0)  # v_l χ²_{K_l}
    c = 2.0 * rng.gamma(np.maximum(k - 1, 0) / 2.0)  # χ²_{K_l - 1}
    h = 2.0 * rng.gamma((n - 1.0) / 2.0, size=(num, depth))  # χ²_{n_l - 1}
    norm_in = np.concatenate([rng.chisquare(widths[0], size=(num, 1)), np.empty((num, depth))], axis=1)
    norm_in[:, 1:] = norm_in[:, :1] * np.cumprod(forward, axis=1)  # N_0..N_L
    last = norm_in[:, -1]
    if loss == "projection":
        rho_sq = rng.standard_normal(num) ** 2 / n[-1]
        w = np.full(num, 1.0 / n[-1])
    else:
        r = rng.standard_normal((num, outputs)) / math.sqrt(n[-1])
        e = np.sqrt(last)[:, None] * r - rng.standard_normal((num, outputs))
        rho_sq = np.sum(r * e, axis=1) ** 2
        w = np.sum(e * e, axis=1) / n[-1]
    above = np.ones((num, depth))  # N_L/N_l = ∏_{k>l} v_k F_k, without dividing by a dead N_l
    above[:, :-1] = np.cumprod(forward[:, :0:-1], axis=1)[:, ::-1]
    d, g = np.empty((num, depth)), np.empty((num, depth))
    d[:, -1] = rho_sq + w * c[:, -1]
    g[:, -1] = rho_sq + w * h[:, -1]
    for l in range(depth - 2, -1, -1):
        d[:, l] = rho_sq * above[:, l] + v[l + 1] * c[:, l] * d[:, l + 1]
        g[:, l] = rho_sq * above[:, l] + v[l + 1] * h[:, l] * d[:, l + 1]
    widths_in = np.asarray(widths[:-1], np.float64)
    return GradientDraws(np.all(k > 0, axis=1), g / n, d / n, norm_in[:, :-1] * d / (widths_in * n))


def log_grad_weight_law(widths: Sequence[int], gain: float = math.sqrt(2.0), init: str = "fan_in",
                        loss: str = "mse", outputs: int = 10, num: int = 2**18, seed: int = 0) -> LogLaw:
    """Mean and variance of log grad_weight_meansq at batch 1 over alive networks, by exact draws.

    Args:
      widths: ``(n_0, n_1, ..., n_L)``.
      gain: σ_w.
      init: one of ``finite_width.GAUSSIAN_INITS``.
      loss: ``"mse"`` or ``"projection"``.
      outputs: O, the mse readout's dimension.
      num: draws (in chunks of 2^16); the errors shrink like 1/√num.
      seed: the draws' seed (fixed, so the prediction is a deterministic function of its arguments).

    Returns:
      ``LogLaw`` of ``(L,)`` arrays with the Monte Carlo standard errors.
    """
    rng = np.random.default_rng(seed)
    depth = len(widths) - 1
    sums = np.zeros((4, depth))
    count, pivot = 0, None
    for start in range(0, num, 2**16):
        draws = sample_gradients(rng, widths, min(2**16, num - start), gain, init, loss, outputs)
        logs = np.log(draws.grad_weight_meansq[draws.alive])
        if pivot is None:
            pivot = logs.mean(axis=0)  # moments about the first chunk's mean, for float64 accuracy
        centred = logs - pivot
        sums += np.stack([np.sum(centred**p, axis=0) for p in (1, 2, 3, 4)])
        count += len(logs)
    m1, m2, m3, m4 = sums / count
    var = m2 - m1**2
    fourth = m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4
    return LogLaw(pivot + m1, var * count / (count - 1), np.sqrt(var / count), np.sqrt(np.maximum(fourth - var**2, 0) / count))


def log_grad_weight_law_large_width(widths: Sequence[int], gain: float = math.sqrt(2.0), init: str = "fan_in",
                                    loss: str = "projection", outputs: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The first-order law of log grad_weight_meansq at batch 1 (module docstring, last paragraphs).

    ``"projection"``: mean log E − 1/n_0 − (5/2)β, variance 2/n_0 + 5β, the same at every layer.
    ``"mse"``: the readout's χ²_O part exactly, the rest to first order in 1/n (accurate to O(((O + 1)β)²)).

    Args:
      widths: ``(n_0, n_1, ..., n_L)``.
      gain: σ_w.
      init: one of ``finite_width.GAUSSIAN_INITS``.
      loss: ``"mse"`` or ``"projection"``.
      outputs: O, the mse readout's dimension.

    Returns:
      ``(mean, var)``, ``(L,)`` arrays; β = Σ_{k=1}^{L} 1/n_k.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    n = np.asarray(widths, np.float64)
    inverse = 1.0 / n[1:]
    beta = float(np.sum(inverse))
    depth = len(widths) - 1
    if loss == "projection":
        level = np.log(gradient_means(widths, gain, init, "projection").grad_weight_meansq)
        return level - 1.0 / n[0] - 2.5 * beta, np.full(depth, 2.0 / n[0] + 5.0 * beta)
    v = variance_scales(widths, gain, init)
    m = n[0] * np.prod(v * n[1:] / 2.0) / n[-1]  # E‖x_L‖²/n_L
    a, spread = m / (1.0 + m), 2.0 / n[0] + 5.0 * beta
    below = np.concatenate([[0.0], np.cumsum(inverse)[:-1]])  # Σ_{k<l} 1/n_k
    above = beta - below  # Σ_{k≥l} 1/n_k
    log_forward = np.log(n[0]) + np.concatenate([[0.0], np.cumsum(np.log(v * n[1:] / 2.0))[:-1]]) - 1.0 / n[0] - 2.5 * below
    log_backward = np.cumsum((np.log(n[1:] / 2.0) - 4.5 * inverse)[::-1])[::-1]  # Σ_{k≥l} E log C_k
    log_backward += np.concatenate([np.cumsum(np.log(v[1:])[::-1])[::-1], [0.0]])  # Σ_{k=l}^{L-1} log v_{k+1}
    log_error = np.log1p(m) - a * a * spread / 2 + special.digamma(outputs / 2) + math.log(2.0) - math.log(n[-1])
    coupling = 2.0 * above * (m * outputs + 1.0) / (m + 1.0)
    mean = log_forward + log_backward + log_error + coupling - np.log(n[:-1] * n[1:])
    var = (special.polygamma(1, outputs / 2) + (1 + 2 * a) * (2.0 / n[0] + 5.0 * below) + 5.0 * above
           + a * a * spread + 10.0 * a * above)
    return mean, var
