"""Mean-field signal propagation: length map, fixed points, χ₁, depth scales, critical gain.

Notation as in Poole et al. (2016) and Schoenholz et al. (2017): σ_w = ``gain``,
σ_b = ``bias_std``, u ~ N(0, q), Dz the standard Gaussian measure.

* Length map: q ↦ σ_w² E[φ(u)²] + σ_b². Its fixed point q* is the limit of the map started
  where the engine's first layer is, q₁ = σ_w² + σ_b² (inputs have E[x₀²] = 1).
* χ₁ = σ_w² E[φ'(√q* z)²]: ordered χ₁ < 1, chaotic χ₁ > 1, critical χ₁ = 1.
* Correlation map at q*: c ↦ (σ_w² E[φ(u₁)φ(u₂)] + σ_b²)/q* with corr(u₁, u₂) = c; its fixed
  point c* is its limit from c = 0 (the engine's inputs are independent): 1 when χ₁ ≤ 1.
* Depth scales: ξ_q = −1/log χ_q with χ_q = σ_w² dE[φ²]/dq at q* (= χ₁ + σ_w² E[φ''φ] by
  Gaussian integration by parts, kinks included), and ξ_c = −1/log χ_c with
  χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at c* (= χ₁ when c* = 1). A slope above 1 gives a negative
  depth scale: deviations then grow e-fold every |ξ| layers; a slope of exactly 1 gives ∞.

Degenerate fixed points. Without bias a positively homogeneous φ (relu, leaky relu, linear)
has q* = 0, ∞, or, at criticality, every q a fixed point (then q* = q₁); a non-homogeneous φ
may also have q* = 0 (tanh, σ_w ≤ 1) or ∞ (gelu at large σ_w). There the slopes are taken
in the limit, scale-free: at unit q without bias for homogeneous φ (exact, as every moment
scales with q), at q = 1e-100 or 1e30 otherwise, and the correlation map is normalised by
the next layer's q, c ↦ (σ_w² E[φ(u₁)φ(u₂)] + σ_b²)/(σ_w² E[φ(u)²] + σ_b²), which is the
map above wherever q* is finite. For relu without bias this gives χ_c = 1 at c* = 1
(ξ_c = ∞: correlations converge polynomially), and χ_q = χ₁ = σ_w²/2.

Every function takes scalars and returns Python floats, computed in float64.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from sweep.config import activations
from sweep.config.activations import Activation
from sweep.theory import moments
from sweep.theory.precision import float64

_MAX_ITERATIONS = 20_000
_NEWTON_STEPS = 64
_UNIT = 1e-12  # slopes within this of 1 are taken as exactly 1 (round-off in E[φ'²] etc.)
_DIVERGED = 1e30  # the length map is taken to diverge once q passes this
_SMALL_Q, _LARGE_Q = 1e-100, 1e30  # where slopes are evaluated when q* = 0 or ∞


class DepthScales(NamedTuple):
    """Depth scales of the length and correlation maps (layers).

    Attributes:
      xi_q: ξ_q = −1/log χ_q.
      xi_c: ξ_c = −1/log χ_c.
    """

    xi_q: float
    xi_c: float


class MeanField(NamedTuple):
    """Everything about one (activation, σ_w, σ_b) at its fixed point.

    Attributes:
      q_star: fixed point of the length map (may be 0 or ∞, see module doc).
      c_star: fixed point of the correlation map.
      chi1: σ_w² E[φ'(√q* z)²].
      chi_q: slope of the length map at q*.
      chi_c: slope of the correlation map at c*.
      xi_q, xi_c: depth scales −1/log χ_q and −1/log χ_c.
    """

    q_star: float
    c_star: float
    chi1: float
    chi_q: float
    chi_c: float
    xi_q: float
    xi_c: float


def _name(activation: str | Activation) -> str:
    return activation.name if isinstance(activation, Activation) else activations.get(activation).name


def length_map(activation: str | Activation, gain: float, bias_std: float, q: float) -> float:
    """σ_w² E[φ(√q z)²] + σ_b², the next layer's q.

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.
      q: this layer's pre-activation variance.

    Returns:
      The next layer's pre-activation variance.
    """
    with float64():
        m = moments.single(_name(activation))(jnp.float64(q))
        return float(gain**2 * m.meansq + bias_std**2)


@functools.cache
def _iteration(name: str):
    """Jitted: iterate the length map from q₀ until it settles, diverges or runs out."""
    single = moments.single(name)

    def run(gain, bias_std, q0):
        def step(q):
            return gain**2 * single(q).meansq + bias_std**2

        def cond(state):
            i, q, previous = state
            moving = jnp.abs(q - previous) > 1e-15 * jnp.abs(q)
            return (i < _MAX_ITERATIONS) & moving & (q < _DIVERGED) & jnp.isfinite(q)

        def body(state):
            i, q, _ = state
            return i + 1, step(q), q

        _, q, previous = jax.lax.while_loop(cond, body, (0, step(q0), q0))

        def newton(_, q):
            m = single(q)
            f = gain**2 * m.meansq + bias_std**2 - q
            df = gain**2 * m.meansq_slope - 1.0
            better = q - f / jnp.where(df != 0, df, 1.0)
            return jnp.where((df < 0) & (better > 0) & jnp.isfinite(better), better, q)

        polished = jax.lax.fori_loop(0, _NEWTON_STEPS, newton, q)
        return polished, q >= _DIVERGED, q > previous

    return jax.jit(run)


def fixed_point(activation: str | Activation, gain: float, bias_std: float) -> float:
    """The fixed point q* of the length map, reached from the engine's q₁ = σ_w² + σ_b².

    Positively homogeneous φ: with a = σ_w² E[φ(z)²], q* = σ_b²/(1 − a) for a < 1, ∞ for
    a > 1 (or a = 1 with bias), and q₁ for a = 1 without bias (every q is fixed); a within
    1e-12 of 1 counts as 1. Otherwise the map is iterated (at most 20000 times) until it
    settles (it is monotone for the registered activations) and the result polished by
    Newton's method on σ_w² E[φ²] + σ_b² − q.

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.

    Returns:
      q* as a float; ``math.inf`` if the map diverges.
    """
    name = _name(activation)
    with float64():
        if activations.get(name).homogeneous:
            slope = gain**2 * float(moments.single(name)(jnp.float64(1.0)).meansq)
            if abs(slope - 1) <= _UNIT:
                return float(gain**2) if bias_std == 0 else math.inf
            if slope < 1:
                return bias_std**2 / (1.0 - slope)
            return math.inf
        q, diverged, _ = _iteration(name)(jnp.float64(gain), jnp.float64(bias_std), jnp.float64(1.0))
        return math.inf if bool(diverged) else float(q)


class _Point(NamedTuple):
    """Where the slopes are evaluated and how the correlation map is normalised."""

    q: float
    bias_std: float


def _evaluation_point(name: str, gain: float, bias_std: float, q_star: float) -> _Point:
    if 0 < q_star < math.inf:
        return _Point(q_star, bias_std)
    if activations.get(name).homogeneous:
        return _Point(1.0, 0.0)
    return _Point(_SMALL_Q if q_star == 0 else _LARGE_Q, 0.0)


def chi1(activation: str | Activation, gain: float, bias_std: float) -> float:
    """χ₁ = σ_w² E[φ'(√q* z)²], at the fixed point ``fixed_point`` returns.

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.

    Returns:
      χ₁; where q* is 0 or ∞ its limit (see module doc).
    """
    name = _name(activation)
    point = _evaluation_point(name, gain, bias_std, fixed_point(name, gain, bias_std))
    with float64():
        return float(gain**2 * moments.single(name)(jnp.float64(point.q)).slope_sq)


def _maps(name: str, gain: float, point: _Point):
    """The correlation map C(c) and its slope χ_c(c) at ``point``, as float functions."""
    single = moments.single(name)(jnp.float64(point.q))
    next_q = gain**2 * float(single.meansq) + point.bias_std**2
    pair = moments.pair(name)

    def correlation(c):
        m = pair(jnp.float64(point.q), jnp.float64(point.q), jnp.float64(c * point.q))
        return (gain**2 * float(m.cross) + point.bias_std**2) / next_q

    def slope(c):
        m = pair(jnp.float64(point.q), jnp.float64(point.q), jnp.float64(c * point.q))
        return gain**2 * float(m.slope_cross) * point.q / next_q

    return correlation, slope


def correlation_map(activation: str | Activation, gain: float, bias_std: float, c: float) -> float:
    """The correlation of two inputs one layer on, given correlation ``c``, at q*.

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.
      c: the correlation of the two pre-activations at this layer, in [-1, 1].

    Returns:
      The next layer's correlation (see the module doc for q* = 0 or ∞).
    """
    name = _name(activation)
    point = _evaluation_point(name, gain, bias_std, fixed_point(name, gain, bias_std))
    with float64():
        return _maps(name, gain, point)[0](c)


def mean_field(activation: str | Activation, gain: float, bias_std: float) -> MeanField:
    """Fixed points, slopes and depth scales of one (activation, σ_w, σ_b).

    c* is 1 when the correlation map's slope at c = 1 is at most 1 (+1e-12 for round-off); otherwise it is
    the root of C(c) = c in [0, 1) found by Brent's method (C(0) ≥ 0 > C(c) − c just below 1).

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.

    Returns:
      A ``MeanField``.
    """
    name = _name(activation)
    q_star = fixed_point(name, gain, bias_std)
    point = _evaluation_point(name, gain, bias_std, q_star)
    with float64():
        single = moments.single(name)(jnp.float64(point.q))
        chi_1 = gain**2 * float(single.slope_sq)
        chi_q = gain**2 * float(single.meansq_slope)
        correlation, slope = _maps(name, gain, point)
        c_star = 1.0
        if slope(1.0) > 1 + _UNIT:
            gap = lambda c: correlation(c) - c  # noqa: E731
            if gap(0.0) <= 0:
                c_star = 0.0
            else:
                top = 1 - 1e-3
                while gap(top) >= 0 and top < 1 - 1e-12:
                    top = 1 - (1 - top) / 10
                if gap(top) < 0:
                    c_star = optimize.brentq(gap, 0.0, top, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        chi_c = slope(c_star)
    return MeanField(q_star, c_star, chi_1, chi_q, chi_c, _scale(chi_q), _scale(chi_c))


def _scale(slope: float) -> float:
    if slope <= 0:
        return 0.0
    log = math.log(slope)
    return math.inf if abs(log) <= _UNIT else -1.0 / log


def correlation_fixed_point(activation: str | Activation, gain: float, bias_std: float) -> float:
    """c*, the limit of the correlation map from c = 0 (see ``mean_field``)."""
    return mean_field(activation, gain, bias_std).c_star


@functools.lru_cache(maxsize=4096)  # figures and the report ask for the same points again
def depth_scales(activation: str | Activation, gain: float, bias_std: float) -> DepthScales:
    """(ξ_q, ξ_c): the depths over which q and c approach their fixed points.

    Args:
      activation: a registered name or an ``Activation``.
      gain: σ_w.
      bias_std: σ_b.

    Returns:
      ``DepthScales(xi_q, xi_c)``, unpackable as a pair.
    """
    mf = mean_field(activation, gain, bias_std)
    return DepthScales(mf.xi_q, mf.xi_c)


@functools.lru_cache(maxsize=256)
def critical_gain(activation: str | Activation, bias_std: float) -> float:
    """The σ_w with χ₁ = 1 at the given σ_b.

    Positively homogeneous φ: E[φ'²] does not depend on q, so σ_w = 1/√E[φ'(z)²] (relu √2,
    leaky relu √(2/(1 + a²)), linear 1) whatever σ_b. Otherwise χ₁(σ_w) is bracketed from
    [0.01, 2], doubling the upper end until χ₁ > 1, and the root found by Brent's method to
    1e-14 relative. Without bias and with φ(0) = 0, χ₁ = σ_w² φ'(0)² while q* = 0, and the
    nonzero fixed point is born at σ_w = 1/|φ'(0)|; where χ₁ crosses 1 there (tanh, erf, elu,
    selu with its two one-sided slopes) that value is returned (see ``_zero_bias_corner``).

    Args:
      activation: a registered name or an ``Activation``.
      bias_std: σ_b.

    Returns:
      The critical σ_w (so the critical σ_w² is its square).

    Raises:
      ValueError: χ₁ stays below 1 up to σ_w = 1e4.
    """
    name = _name(activation)
    if activations.get(name).homogeneous:
        with float64():
            return 1.0 / math.sqrt(float(moments.single(name)(jnp.float64(1.0)).slope_sq))
    low, high = 0.01, 2.0
    while chi1(name, high, bias_std) < 1:
        low, high = high, 2 * high
        if high > 1e4:
            raise ValueError(f"χ₁ of {name} stays below 1 up to σ_w = 1e4 at σ_b = {bias_std}")
    corner = _zero_bias_corner(name, bias_std)
    if corner is not None and low < corner <= high:
        return corner
    return optimize.brentq(lambda g: chi1(name, g, bias_std) - 1.0, low, high, xtol=1e-15, rtol=1e-14)


def _zero_bias_corner(name: str, bias_std: float) -> float | None:
    """The σ_w where χ₁ on the q* = 0 branch reaches 1, when σ_b = 0, φ(0) = 0 and χ₁ crosses 1 there.

    While q* = 0, χ₁ = σ_w² lim_{q→0} E[φ'(√q z)²] (φ'(0)² for smooth φ, the mean of the two
    one-sided slopes squared at a kink). Where the nonzero fixed point is born, χ₁ − 1 is
    second order in the distance (tanh: (4/3)σ_w² q*²), too flat for root finding. The
    crossing is confirmed by χ₁ < 1 at 0.999 and ≥ 1 at 1.001 times the corner.
    """
    if bias_std != 0:
        return None
    act = activations.get(name)
    with float64():
        value = float(act.fn(jnp.float64(0.0)))
        slope_sq = float(moments.single(name)(jnp.float64(_SMALL_Q)).slope_sq)
    if value != 0 or slope_sq == 0:
        return None
    corner = 1.0 / math.sqrt(slope_sq)
    if chi1(name, 0.999 * corner, 0.0) < 1 <= chi1(name, 1.001 * corner, 0.0):
        return corner
    return None
