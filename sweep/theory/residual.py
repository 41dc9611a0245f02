"""Mean-field recursions of residual networks, forward and backward, beside those of plain ones.

Block l: x_l = x_{l-1} + α F_l(x_{l-1}), F_l(x) = W_2 φ(W_1 φ(x) + b_1) + b_2 (pre-activation
branch), stream width n, inner width m_l; v_j multiplies branch layer j's weight variance
σ_w²/fan_j (1, or Fixup's 1/L and 0). At infinite width the stream is Gaussian per unit with
second moment s_l and cross-example covariance k_l, and F_l is independent of x_{l-1}:

    q_{l,1} = σ_w² v_1 (n/fan_1) E[φ(x_{l-1})²] + σ_b²,      q_{l,2} = σ_w² v_2 (m_l/fan_2) E[φ(z_{l,1})²] + σ_b²,
    s_l = s_{l-1} + α² q_{l,2},   k_l = k_{l-1} + α² Σ_{l,2},   s_0 = 1, k_0 = 0,

with the covariances Σ mapped alike. For relu without bias, σ_1² and σ_2² on the branch's
layers, s grows by 1 + α² σ_1² σ_2²/4 per block (each of the branch's two relus halves the
second moment): 2× per block at α = 1 under He. Backward, under
gradient independence, with G_l = E[(∂ℓ/∂x_l)²]: δ_2 = α g_l, so D_2 = α² G_l; the cotangent at
φ(z_1) is A_1 = σ_w² v_2 (n/fan_2) D_2, D_1 = A_1 E[φ'(z_1)²], and

    G_{l-1} = G_l + E[φ'(x_{l-1})²] σ_w² v_1 (m_l/fan_1) D_1

(the skip path and the branch are uncorrelated: W_1 has mean zero), the cross-example and
cross-position versions alike. The readout's start and the weight gradients' batch and position
terms are those of ``sweep.theory.recursion``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sweep.theory import moments, recursion
from sweep.theory.precision import float64


@functools.cache
def _layer_fn(name: str, batch: int):
    (single, pair), dead = moments.rules(name), recursion._dead_rule(name)

    def one(q, cov):
        s, p = single(q), pair(q, q, cov)
        c = jnp.where(q > 0, cov / jnp.where(q > 0, q, 1.0), 1.0)
        return s.mean, s.meansq, s.slope_sq, p.cross, p.slope_cross, dead(c, batch)

    return jax.jit(lambda q, cov: jax.lax.map(lambda a: one(*a), (q, cov)))  # as recursion's


def _layer(name: str, batch: int, q: np.ndarray, cov: np.ndarray):
    """(mean, meansq, slope_sq, cross, slope_cross, dead) of φ at pre-activations (q, cov), per point."""
    with float64():
        out = _layer_fn(name, batch)(jnp.asarray(q, jnp.float64), jnp.asarray(cov, jnp.float64))
    return tuple(np.asarray(a) for a in out)


def predict(name: str, gain: np.ndarray, bias_std: np.ndarray, alpha: float, variances: np.ndarray,
            forward_ratios: np.ndarray, backward_ratios: np.ndarray, width: int, loss: str, outputs: int,
            batch: int, positions: int = 1, readout_variance: float = 1.0) -> dict[str, np.ndarray]:
    """Every statistic of residual networks of one architecture, at many (σ_w, σ_b).

    Args:
      name: activation.
      gain, bias_std: ``(P,)``.
      alpha: α_eff.
      variances: ``(L, 2)``, v_j of each block's branch layers.
      forward_ratios, backward_ratios: ``(L, 2)``, ``Init.ratios`` of each branch layer.
      width: the stream width n (the readout's).
      loss, outputs, batch: the probe's.
      positions: P spatial positions of a conv net, 1 for dense layers.
      readout_variance: the readout's variance relative to the standard 1/n
        (``recursion.readout_cotangent``).

    Returns:
      The layer statistics as ``(P, L, 2)`` (NaN where a branch layer has no such statistic),
      ``stream_mean``, ``stream_meansq``, ``grad_stream_meansq`` as ``(P, L)`` and ``loss`` ``(P,)``.
    """
    depth = variances.shape[0]
    g2, b2 = np.asarray(gain, np.float64) ** 2, np.asarray(bias_std, np.float64) ** 2
    n_points = len(g2)
    layer = {k: np.full((n_points, depth, 2), np.nan) for k in (
        "preact_mean", "preact_meansq", "preact_var", "act_mean", "act_meansq", "act_var", "dead_fraction",
        "grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq")}
    stream = {k: np.zeros((n_points, depth)) for k in ("stream_mean", "stream_meansq", "grad_stream_meansq")}
    s, k = np.ones(n_points), np.zeros(n_points)
    saved = []
    for l in range(depth):
        x_mean, x_meansq, x_slope, x_cross, x_slope_cross, _ = _layer(name, batch, s, k)
        q1 = g2 * variances[l, 0] * forward_ratios[l, 0] * x_meansq + b2
        c1 = g2 * variances[l, 0] * forward_ratios[l, 0] * x_cross + b2
        h_mean, h_meansq, h_slope, h_cross, h_slope_cross, dead = _layer(name, batch, q1, c1)
        q2 = g2 * variances[l, 1] * forward_ratios[l, 1] * h_meansq + b2
        c2 = g2 * variances[l, 1] * forward_ratios[l, 1] * h_cross + b2
        for j, q in enumerate((q1, q2)):
            layer["preact_mean"][:, l, j], layer["preact_meansq"][:, l, j], layer["preact_var"][:, l, j] = 0.0, q, q
        layer["act_mean"][:, l, 0], layer["act_meansq"][:, l, 0] = h_mean, h_meansq
        layer["act_var"][:, l, 0], layer["dead_fraction"][:, l, 0] = h_meansq - h_mean**2, dead
        saved.append((x_meansq, x_cross, x_slope, x_slope_cross, h_meansq, h_cross, h_slope, h_slope_cross))
        s, k = s + alpha**2 * q2, k + alpha**2 * c2
        stream["stream_meansq"][:, l] = s

    g, gx, gs, expected_loss = recursion.readout_cotangent(s, k, np.full(n_points, float(width)), loss, outputs,
                                                           positions, readout_variance)

    def weight(meansq, cross, d, dx, ds):
        return recursion.weight_meansq(meansq, cross, d, dx, ds, batch, positions)

    for l in range(depth - 1, -1, -1):
        x_meansq, x_cross, x_slope, x_slope_cross, h_meansq, h_cross, h_slope, h_slope_cross = saved[l]
        stream["grad_stream_meansq"][:, l] = g
        d2, d2x, d2s = (alpha**2 * v for v in (g, gx, gs))
        a1, a1x, a1s = (g2 * variances[l, 1] * backward_ratios[l, 1] * v for v in (d2, d2x, d2s))
        d1, d1x, d1s = a1 * h_slope, a1x * h_slope_cross, a1s * h_slope_cross
        a0, a0x, a0s = (g2 * variances[l, 0] * backward_ratios[l, 0] * v for v in (d1, d1x, d1s))
        layer["grad_preact_meansq"][:, l, 0], layer["grad_preact_meansq"][:, l, 1] = d1, d2
        layer["grad_act_meansq"][:, l, 0] = a1
        layer["grad_weight_meansq"][:, l, 0] = weight(x_meansq, x_cross, d1, d1x, d1s)
        layer["grad_weight_meansq"][:, l, 1] = weight(h_meansq, h_cross, d2, d2x, d2s)
        g, gx, gs = g + x_slope * a0, gx + x_slope_cross * a0x, gs + x_slope_cross * a0s
    return {**layer, **stream, "loss": expected_loss}
