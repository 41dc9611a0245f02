"""The exact finite-width law of relu networks with Gaussian weights and no bias.

Given x_{l-1}, the pre-activations z_l = x_{l-1} W_l are i.i.d. N(0, (σ_w²/fan_l)‖x_{l-1}‖²),
so the number K_l of positive ones is Binomial(n_l, ½) and ‖x_l‖² = (σ_w²/fan_l)‖x_{l-1}‖² χ²_{K_l},
independently across layers (K = 0: the layer is dead). With R_l = χ²_{K_l}/(n_l/2) (E[R] = 1)
and the input x_0 ~ N(0, I_{n_0}), what the engine records at batch 1 is

    act_meansq_l = ‖x_l‖²/n_l = (χ²_{n_0}/n_0) · ∏_{k ≤ l} s_k R_k,   s_k = σ_w² n_{k-1}/(2 fan_k)

(s_k = 1 for fan_in at σ_w = √2). Its logarithm is a sum of independent terms:

    E[log act_meansq_l]   = ψ(n_0/2) + log(2/n_0) + Σ_k (log s_k + E[log R_k]),
    Var[log act_meansq_l] = ψ'(n_0/2)              + Σ_k Var[log R_k],

with E[log χ²_k] = ψ(k/2) + log 2 and Var[log χ²_k] = ψ'(k/2), summed exactly over K_k ≥ 1
(the conditioning is on the network being alive; since the K_k are independent, conditioning
on all of them being ≥ 1 keeps the factors independent). At large width
E[log R] ≈ −5/(2n), Var[log R] ≈ 5/n and E[log(χ²_n/n)] ≈ −1/n, Var ≈ 2/n.

The law is exact for the Gaussian inits ``fan_in``, ``fan_out`` and ``fan_avg`` (normal), any
gain, any batch (it is the law of each example's norm), and σ_b = 0 only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from sweep.config import inits

GAUSSIAN_INITS = ("fan_in", "fan_out", "fan_avg")
"""Inits under which the law is exact (normal weights)."""


class LogMoments(NamedTuple):
    """Mean and variance of a logarithm, per layer.

    Attributes:
      mean: ``(L,)`` or scalar.
      var: ``(L,)`` or scalar.
    """

    mean: np.ndarray | float
    var: np.ndarray | float


@functools.cache
def log_ratio_moments(width: int) -> LogMoments:
    """E and Var of log R, R = χ²_K/(n/2), K ~ Binomial(n, ½), conditioned on K ≥ 1.

    Args:
      width: n, the layer's width.

    Returns:
      ``LogMoments(mean, var)`` as floats (n = 16: −0.1764, 0.4196; n = 64: −0.0401, 0.0830).
    """
    k = np.arange(1, width + 1)
    p = stats.binom.pmf(k, width, 0.5)
    p = p / p.sum()
    log_mean = special.digamma(k / 2) + math.log(2) - math.log(width / 2)
    mean = float(np.sum(p * log_mean))
    second = float(np.sum(p * (special.polygamma(1, k / 2) + log_mean**2)))
    return LogMoments(mean, second - mean**2)


def _scales(widths: Sequence[int], gain: float, init: str) -> np.ndarray:
    """s_k = σ_w² n_{k-1}/(2 fan_k) for k = 1..L."""
    fan = inits.get(init).fan
    return np.array([gain**2 * n_in / (2 * fan(n_in, n_out)) for n_in, n_out in zip(widths[:-1], widths[1:])])


def log_act_norm_moments(widths: Sequence[int], gain: float = math.sqrt(2.0), init: str = "fan_in") -> LogMoments:
    """Exact per-layer mean and variance of log act_meansq_l = log(‖x_l‖²/n_l), alive networks.

    Args:
      widths: ``(n_0, n_1, ..., n_L)``.
      gain: σ_w.
      init: one of ``GAUSSIAN_INITS``.

    Returns:
      ``LogMoments`` of ``(L,)`` arrays, layer l = 1..L.
    """
    _check_init(init)
    n0 = widths[0]
    per_layer = [log_ratio_moments(n) for n in widths[1:]]
    mean = special.digamma(n0 / 2) + math.log(2 / n0) + np.cumsum(
        np.log(_scales(widths, gain, init)) + np.array([m.mean for m in per_layer]))
    var = special.polygamma(1, n0 / 2) + np.cumsum([m.var for m in per_layer])
    return LogMoments(mean, var)


def log_act_norm_moments_large_width(widths: Sequence[int], gain: float = math.sqrt(2.0),
                                     init: str = "fan_in") -> LogMoments:
    """The large-width approximation: mean Σ log s_k − 1/n_0 − (5/2)Σ_{k≤l} 1/n_k, var 2/n_0 + 5Σ_{k≤l} 1/n_k.

    Args:
      widths: ``(n_0, n_1, ..., n_L)``.
      gain: σ_w.
      init: one of ``GAUSSIAN_INITS``.

    Returns:
      ``LogMoments`` of ``(L,)`` arrays.
    """
    _check_init(init)
    inverse = np.cumsum(1.0 / np.asarray(widths[1:], np.float64))
    mean = np.cumsum(np.log(_scales(widths, gain, init))) - 1.0 / widths[0] - 2.5 * inverse
    return LogMoments(mean, 2.0 / widths[0] + 5.0 * inverse)


def sample_relu_norms(rng, widths: Sequence[int], num: int, gain: float = math.sqrt(2.0),
                      init: str = "fan_in") -> np.ndarray:
    """Exact samples of act_meansq_l = ‖x_l‖²/n_l of relu networks at batch 1 (the engine's law).

    Dead networks (some K_l = 0) are included: their values are 0 from that layer on.

    Args:
      rng: a ``numpy.random.Generator`` or an integer seed.
      widths: ``(n_0, n_1, ..., n_L)``.
      num: number of networks.
      gain: σ_w.
      init: one of ``GAUSSIAN_INITS``.

    Returns:
      ``(num, L)`` float64.
    """
    _check_init(init)
    rng = _generator(rng)
    norm = rng.chisquare(widths[0], size=num) / widths[0]
    out = np.empty((num, len(widths) - 1))
    for l, (n, s) in enumerate(zip(widths[1:], _scales(widths, gain, init))):
        k = rng.binomial(n, 0.5, size=num)
        chi2 = 2.0 * rng.gamma(k / 2.0)  # χ²_k; shape 0 gives 0
        norm = norm * s * chi2 / (n / 2)
        out[:, l] = norm
    return out


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(int(rng))


def _check_init(init: str) -> None:
    if init not in GAUSSIAN_INITS:
        raise ValueError(f"the exact law needs Gaussian weights, one of {GAUSSIAN_INITS}; got {init!r}")
