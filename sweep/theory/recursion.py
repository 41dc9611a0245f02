"""Per-layer mean-field recursions, forward and backward, for many networks of one activation.

Forward (infinite width, exact Gaussian pre-activations). Layer l has pre-activations z_l with
per-unit second moment q_l and, between two different examples of a batch, covariance Σ_l:

    q_l = σ_w² (n_{l-1}/fan_l) M_{l-1} + σ_b²,    Σ_l = σ_w² (n_{l-1}/fan_l) K_{l-1} + σ_b²,

with M_l = E[φ(z_l)²], K_l = E[φ(z_l)φ(z'_l)] (z, z' the pre-activations of two examples),
M_0 = E[x_0²] = 1 and K_0 = 0 (independent N(0, 1) inputs). Var[W_l] = σ_w²/fan_l covers
fan_in, fan_out, fan_avg and orthogonal (fan = max(n_in, n_out); an orthogonal matrix
scales squared norms by n_out/max or 1 exactly as the Gaussian does on average), and
unequal widths give He et al.'s ratios n_{l-1}/fan_l ≠ 1.

Backward, under the gradient-independence assumption (W_l used backward independent of the
forward pass; exact at infinite width when the readout is drawn independently, as here).
G_l = E[(∂ℓ/∂x_l)²] and D_l = E[(∂ℓ/∂z_l)²] per unit, with cross-example versions G×, D×:

    D_l = G_l E[φ'(z_l)²],   D×_l = G×_l E[φ'(z_l)φ'(z'_l)],   G_{l-1} = σ_w² (n_l/fan_l) D_l.

Readout (per example b, ℓ_b its own loss; O outputs; n = n_L; m = E[x_L²]):

* ``"mse"``, ℓ = ½‖x_L R − y‖², R ~ N(0, 1/n), y ~ N(0, 1): conditionally on x_L, exactly
  E[(∂ℓ/∂x_j)²] = (O/n)(‖x‖²/n + 1) + O(O + 1) x_j²/n², hence
  G_L = (O/n)(1 + m(1 + (O + 1)/n)), G×_L = (O/n) K_L (1 + (O + 1)/n),
  D_L = (O/n)[(1 + m) E[φ'²] + (O + 1)/n · E[φ²φ'²]],
  D×_L = (O/n)[K_L E[φ'φ'×] + (O + 1)/n · E[φφ'·φφ'×]]. The (O + 1)/n terms are the exact
  readout corrections (2% at O = 10, n = 512), kept although other 1/n effects are not.
  Loss: E[C] = (O/2)(m + 1).
* ``"projection"``, ℓ = x_L · u, u ~ N(0, 1/n): ∂ℓ/∂x_L = u for every example, so
  G_L = G×_L = 1/n, D_L = E[φ'²]/n, D×_L = E[φ'φ'×]/n; loss 0.

Weight gradient of the batch mean C = (1/B) Σ_b ℓ_b: ∂C/∂W_l[j, i] = (1/B) Σ_b x_{l-1,j}^b δ_{l,i}^b, so

    E[(∂C/∂W_l)²] = (1/B) M_{l-1} D_l + (1 − 1/B) K_{l-1} D×_l,

exact at infinite width given the independence of x_{l-1} and δ_l (gradient independence;
x_{l-1,j} enters z_{l,i} with weight O(1/√n)). K_{l-1} contains E[φ]² (relu's mean) and
D×_l the readout's shared direction (projection: all of it), so the cross-example term can
dominate: for projection with relu it is about (1 − 1/B) of the total.

Pooled variances and means over units and batch are taken at infinite width, where the mean
over units is E[φ] exactly: preact_var = q_l, act_var = M_l − E[φ]², preact_mean = 0.

Convolutions (circular, stride 1, P positions, fans k^d·c). Weights at different taps are
independent, so the covariance of two positions at lag Δ maps as a dense layer's does,
K_l(Δ) = σ_w² (k^d c_{l-1}/fan_l) E[φφ'](Δ) + σ_b²: per position the recursions above hold
with the ratios counting the taps (``sweep.config.inits.Init.ratios``). The inputs are
independent across positions as across examples, so at infinite width any two distinct
(example, position) pairs have the cross covariance Σ_l, and K_l and E[φ'φ'×] serve both.
The readout acts on the pooled features x̄ = (1/P) Σ_p x_{L,p}, with E[x̄²] = M_L/P + (1 − 1/P) K_L,
and ∂ℓ/∂x_{L,p} = (1/P) ∂ℓ/∂x̄ at every position: G_L and G×_L are the dense ones of x̄ over P²,
and the cotangents of two positions of one example start equal (G°_L = G_L), then map as
D°_l = G°_l E[φ'φ'×], G°_{l-1} = σ_w² (n_l/fan_l) D°_l. In D_L the (O + 1)/n term keeps the
coupling of x̄_j² to φ'(z_{p,j})² through x_{p,j} itself only (exact at P = 1; the other
positions' coupling, of relative size O((O + 1)/n), is dropped). The weight gradient sums
over positions and examples:

    E[(∂C/∂W_l)²] = (P/B) M_{l-1} D_l + (P(P − 1)/B) K_{l-1} D°_l + (1 − 1/B) P² K_{l-1} D×_l.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.config import activations
from sweep.theory import moments


class Forward(NamedTuple):
    """Forward quantities per point and layer; each ``(P, L)`` float64.

    Attributes:
      q: E[z_l²].
      cov: E[z_l z'_l] between two examples.
      mean: E[φ(z_l)].
      meansq: M_l = E[φ(z_l)²].
      slope_sq: E[φ'(z_l)²].
      square_slope_sq: E[φ(z_l)² φ'(z_l)²].
      cross: K_l = E[φ(z_l) φ(z'_l)].
      slope_cross: E[φ'(z_l) φ'(z'_l)].
      square_slope_cross: E[φφ'(z_l) · φφ'(z'_l)].
      dead: expected fraction of units with φ' = 0 on every example of the batch.
    """

    q: np.ndarray
    cov: np.ndarray
    mean: np.ndarray
    meansq: np.ndarray
    slope_sq: np.ndarray
    square_slope_sq: np.ndarray
    cross: np.ndarray
    slope_cross: np.ndarray
    square_slope_cross: np.ndarray
    dead: np.ndarray


class Backward(NamedTuple):
    """Backward quantities per point and layer; each ``(P, L)`` float64, plus the loss.

    Attributes:
      grad_act_meansq: G_l = E[(∂ℓ/∂x_l)²].
      grad_preact_meansq: D_l = E[(∂ℓ/∂z_l)²].
      grad_weight_meansq: E[(∂C/∂W_l)²].
      loss: E[C], ``(P,)``.
    """

    grad_act_meansq: np.ndarray
    grad_preact_meansq: np.ndarray
    grad_weight_meansq: np.ndarray
    loss: np.ndarray


def _dead_rule(name: str):
    """``(c, batch) -> P(φ' = 0 on every example)``; nonzero only where φ' vanishes on a half-line."""
    act = activations.get(name)
    if not act.homogeneous:
        return lambda c, batch: jnp.zeros_like(c)
    negative, positive = moments.half_line_slopes(name)
    if negative == 0 and positive == 0:
        return lambda c, batch: jnp.ones_like(c)
    if negative == 0 or positive == 0:
        return moments.all_dead_probability
    return lambda c, batch: jnp.zeros_like(c)


@functools.cache
def _forward_fn(name: str, batch: int):
    (single, pair), dead = moments.rules(name), _dead_rule(name)

    def layer(q, cov):
        s = single(q)
        p = pair(q, q, cov)
        c = jnp.where(q > 0, cov / jnp.where(q > 0, q, 1.0), 1.0)
        return s, p, dead(c, batch)

    def run(gain, bias_std, ratio):
        # gain, bias_std: (P,); ratio: (L, P) = n_{l-1}/fan_l
        def step(carry, r):
            meansq_prev, cross_prev = carry
            q = gain**2 * r * meansq_prev + bias_std**2
            cov = gain**2 * r * cross_prev + bias_std**2
            # One point at a time: a pair rule's arrays (396 × 396 nodes) then stay in the caches,
            # which made them about 1.4 times faster than 16 points at once (tanh, gelu).
            s, p, d = jax.lax.map(lambda a: layer(*a), (q, cov))
            out = Forward(q, cov, s.mean, s.meansq, s.slope_sq, s.square_slope_sq,
                          p.cross, p.slope_cross, p.square_slope_cross, d)
            return (s.meansq, p.cross), out

        ones = jnp.ones_like(gain)
        _, out = jax.lax.scan(step, (ones, jnp.zeros_like(gain)), ratio)
        return out

    return jax.jit(run)


def forward(name: str, gain: np.ndarray, bias_std: np.ndarray, ratio: np.ndarray, batch: int) -> Forward:
    """Runs the forward recursion.

    Args:
      name: activation name.
      gain: σ_w per point, ``(P,)``.
      bias_std: σ_b per point, ``(P,)``.
      ratio: n_{l-1}/fan_l per point and layer, ``(P, L)`` (pad beyond a point's depth with
        anything finite; those layers are ignored by the caller).
      batch: examples per network (for the dead fraction).

    Returns:
      ``Forward`` of ``(P, L)`` numpy float64 arrays. Call under ``precision.float64()``.
    """
    out = _forward_fn(name, batch)(jnp.asarray(gain, jnp.float64), jnp.asarray(bias_std, jnp.float64),
                                   jnp.asarray(np.asarray(ratio).T, jnp.float64))
    return Forward(*(np.asarray(a).T for a in out))


def backward(fw: Forward, gain: np.ndarray, ratio: np.ndarray, last_width: np.ndarray,
             loss: str, outputs: int, batch: int, positions: int = 1, readout_variance=1.0) -> Backward:
    """Runs the backward recursion from the readout (see the module doc).

    Args:
      fw: forward quantities of points that all have depth L, ``(P, L)`` each.
      gain: σ_w, ``(P,)``.
      ratio: n_l/fan_l per point and layer, ``(P, L)``.
      last_width: n_L, ``(P,)``.
      loss: ``"mse"`` or ``"projection"``.
      outputs: readout dimension O of ``"mse"``.
      batch: examples per network B.
      positions: spatial positions of a conv net, 1 for dense layers.
      readout_variance: s², the readout's (or projection's) variance relative to the
        standard 1/n_L, a scalar or ``(P,)`` (μP: 1/m_in; see ``readout_cotangent``).

    Returns:
      ``Backward`` with ``(P, L)`` arrays and ``(P,)`` loss.
    """
    depth, p, s2 = fw.q.shape[1], positions, readout_variance
    n = np.asarray(last_width, np.float64)
    # The readout s·R reads x_L as the standard R reads s·x_L (see readout_cotangent): the last
    # layer's moments that the readout couples to are s² times larger, the cotangent s times.
    m, k = s2 * fw.meansq[:, -1], s2 * fw.cross[:, -1]
    square_slope, square_slope_x = s2 * fw.square_slope_sq[:, -1], s2 * fw.square_slope_cross[:, -1]
    slope, slope_x = fw.slope_sq[:, -1], fw.slope_cross[:, -1]
    g, gx, gs, expected_loss = _standard_readout_cotangent(m, k, n, loss, outputs, p)
    if loss == "mse" and p == 1:
        scale, extra = outputs / n, (outputs + 1) / n
        d = scale * ((1 + m) * slope + extra * square_slope)
        dx = scale * (k * slope_x + extra * square_slope_x)
    elif loss == "mse":
        scale, extra, pooled = outputs / n / p**2, (outputs + 1) / n, m / p + (1 - 1 / p) * k
        coupled = square_slope / p**2 + (pooled - m / p**2) * slope
        d = scale * ((1 + pooled) * slope + extra * coupled)
        coupled_x = square_slope_x / p**2 + k * (1 - 1 / p**2) * slope_x
        dx = scale * (k * slope_x + extra * coupled_x)
    elif p == 1:
        d, dx = slope / n, slope_x / n
    else:
        d, dx = slope * g, slope_x * g
    g, gx, gs, d, dx = (s2 * v for v in (g, gx, gs, d, dx))
    ds = gs * slope_x
    out = {key: np.empty_like(fw.q) for key in ("grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq")}
    gain_sq = np.asarray(gain, np.float64) ** 2
    for l in range(depth, 0, -1):  # 1-based layer l is column l - 1
        i = l - 1
        previous_meansq = fw.meansq[:, i - 1] if l > 1 else 1.0
        previous_cross = fw.cross[:, i - 1] if l > 1 else 0.0
        out["grad_act_meansq"][:, i] = g
        out["grad_preact_meansq"][:, i] = d
        out["grad_weight_meansq"][:, i] = weight_meansq(previous_meansq, previous_cross, d, dx, ds, batch, p)
        if l > 1:
            g, gx, gs = (gain_sq * ratio[:, i] * v for v in (d, dx, ds))
            d, dx, ds = g * fw.slope_sq[:, i - 1], gx * fw.slope_cross[:, i - 1], gs * fw.slope_cross[:, i - 1]
    return Backward(**out, loss=expected_loss)


def readout_cotangent(m, k, width, loss: str, outputs: int, positions: int = 1, variance=1.0):
    """The cotangent at the last layer, from the readout (see the module doc).

    Args:
      m, k: E[x_L²] and the cross covariance E[x_L x'_L] per point, ``(P,)``.
      width: n_L, ``(P,)``.
      loss, outputs: the probe's.
      positions: spatial positions of a conv net, 1 for dense layers.
      variance: s², the readout's variance relative to the standard 1/n_L. A readout s·R of x_L
        is the standard readout R of s·x_L, so its loss is the standard one at s²·m, s²·k, and
        its cotangent at x_L is s times the standard one there.

    Returns:
      ``(G_L, G×_L, G°_L, E[C])``: per unit, between two examples, between two positions of one
      example (= G_L: the pooled readout sends one cotangent to every position), and the loss.
    """
    g, gx, gs, expected_loss = _standard_readout_cotangent(variance * m, variance * k, width, loss, outputs, positions)
    return variance * g, variance * gx, variance * gs, expected_loss


def _standard_readout_cotangent(m, k, width, loss: str, outputs: int, positions: int = 1):
    n, p = np.asarray(width, np.float64), positions
    if loss == "mse":
        scale, extra = outputs / n, (outputs + 1) / n
        pooled = m  # E[x̄²], the pooled features'
        if p > 1:
            scale, pooled = scale / p**2, m / p + (1 - 1 / p) * k
        g = scale * (1 + pooled * (1 + extra))
        return g, scale * k * (1 + extra), g, outputs / 2 * (pooled + 1)
    if loss == "projection":
        g = 1 / n if p == 1 else 1 / n / p**2
        return g, g, g, np.zeros_like(n)
    raise ValueError(f"unknown loss {loss!r}")


def weight_meansq(previous_meansq, previous_cross, d, dx, ds, batch: int, positions: int = 1):
    """E[(∂C/∂W_l)²] from the layer's input moments and its cotangents' (see the module doc).

    ``ds``, the product of the cotangents at two positions of one example, enters only for conv
    nets (``positions`` > 1).
    """
    if positions == 1:
        return previous_meansq * d / batch + (1 - 1 / batch) * previous_cross * dx
    p = float(positions)
    return (p * previous_meansq * d + p * (p - 1) * previous_cross * ds) / batch \
        + (1 - 1 / batch) * p**2 * previous_cross * dx
