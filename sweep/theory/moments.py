"""Gaussian moments of an activation and its derivative, the building blocks of the theory.

φ' and φ'' come from automatic differentiation (``jax.jvp``), never by hand; at a kink the
derivative is ``jax``'s one-sided choice, which the quadrature never evaluates (kinks are
panel edges, Gauss–Legendre nodes are interior). The functions are ``jit``-ed per activation
and ``vmap``-able over q and Σ; call them under ``precision.float64()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from sweep.config import activations
from sweep.theory import gaussian

_TINY_Q = 1e-300  # q is floored here where it divides (q = 0 has the q → 0 limit)


class SingleMoments(NamedTuple):
    """Moments at one pre-activation variance q, u ~ N(0, q); each a scalar.

    Attributes:
      mean: E[φ(u)].
      meansq: E[φ(u)²].
      slope_sq: E[φ'(u)²].
      meansq_slope: d E[φ(u)²] / dq = E[z φ(√q z) φ'(√q z)] / √q, the slope of the length map
        per σ_w²; by Gaussian integration by parts it equals E[φ'(u)²] + E[φ''(u) φ(u)],
        including any kinks.
      square_slope_sq: E[φ(u)² φ'(u)²].
    """

    mean: jax.Array
    meansq: jax.Array
    slope_sq: jax.Array
    meansq_slope: jax.Array
    square_slope_sq: jax.Array


class PairMoments(NamedTuple):
    """Moments of a pair (u₁, u₂) with variances q₁, q₂ and covariance Σ; each a scalar.

    Attributes:
      cross: E[φ(u₁) φ(u₂)].
      slope_cross: E[φ'(u₁) φ'(u₂)].
      square_slope_cross: E[φ(u₁)φ'(u₁) · φ(u₂)φ'(u₂)].
    """

    cross: jax.Array
    slope_cross: jax.Array
    square_slope_cross: jax.Array


def value_and_slope(phi: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``u -> (φ(u), φ'(u))`` for an elementwise φ, by one forward-mode pass."""

    def both(u):
        return jax.jvp(phi, (u,), (jnp.ones_like(u),))

    return both


def _derivative(phi):
    return lambda u: value_and_slope(phi)(u)[1]


@functools.cache
def single(name: str) -> Callable[[jax.Array], SingleMoments]:
    """The jitted ``q -> SingleMoments`` of a registered activation.

    Args:
      name: an activation name (``sweep.activations``).

    Returns:
      A function of a scalar q ≥ 0.
    """
    act = activations.get(name)
    both = value_and_slope(act.fn)
    kinks = gaussian.centres(act)

    def moments(q):
        q = jnp.asarray(q)
        root = jnp.sqrt(jnp.maximum(q, _TINY_Q))

        def integrands(u):
            v, d = both(u)
            z = u / root
            return SingleMoments(v, v * v, d * d, z * v * d / root, (v * d) ** 2)

        return gaussian.expect(integrands, q, kinks, gaussian.ONE_D)

    return jax.jit(moments)


@functools.cache
def pair(name: str) -> Callable[[jax.Array, jax.Array, jax.Array], PairMoments]:
    """The jitted ``(q1, q2, cov) -> PairMoments`` of a registered activation."""
    act = activations.get(name)
    both = value_and_slope(act.fn)
    kinks = gaussian.centres(act)

    def moments(q1, q2, cov):
        def integrands(u1, u2):
            v1, d1 = both(u1)
            v2, d2 = both(u2)
            return PairMoments(v1 * v2, d1 * d2, v1 * d1 * v2 * d2)

        return gaussian.expect_pair(integrands, q1, q2, cov, kinks, kinks, gaussian.PAIR)

    return jax.jit(moments)


@functools.cache
def second_derivative_moment(name: str) -> Callable[[jax.Array], jax.Array]:
    """The jitted ``q -> E[φ''(u) φ(u)]`` with φ'' by nested autodiff (Schoenholz et al.'s form).

    Only the absolutely continuous part of φ'' is seen; the delta at a kink t contributes
    [φ'(t+) − φ'(t−)] φ(t) p_q(t), which vanishes for every registered kinked activation
    since φ(0) = 0. ``SingleMoments.meansq_slope`` includes it in any case.
    """
    act = activations.get(name)
    second = _derivative(_derivative(act.fn))
    kinks = gaussian.centres(act)
    return jax.jit(lambda q: gaussian.expect(lambda u: second(u) * act.fn(u), q, kinks))


@functools.cache
def half_line_slopes(name: str) -> tuple[float, float]:
    """For a positively homogeneous φ: its constant slopes on u < 0 and on u > 0."""
    act = activations.get(name)
    if not act.homogeneous:
        raise ValueError(f"{name} is not positively homogeneous")
    d = _derivative(act.fn)
    return float(d(jnp.asarray(-1.0))), float(d(jnp.asarray(1.0)))


def all_dead_probability(c: jax.Array, batch: int) -> jax.Array:
    """P(u_b ≤ 0 for all b) for ``batch`` standard Gaussians with common correlation c ∈ [0, 1].

    With u_b = √c v + √(1−c) e_b, all are ≤ 0 iff every e_b ≤ −v √(c/(1−c)), so the
    probability is E_v[Φ(−v √(c/(1−c)))^batch]; 1/2 at c = 1, 2^−batch at c = 0. It is the
    expected fraction of relu units with zero slope on every example of a batch.

    Args:
      c: scalar correlation, clipped to [0, 1].
      batch: number of examples.

    Returns:
      The probability, a scalar.
    """
    c = jnp.clip(c, 0.0, 1.0)
    gap = 1.0 - c
    ratio = jnp.sqrt(c / jnp.where(gap > 0, gap, 1.0))
    return jnp.where(
        gap > 0,
        gaussian.expect(lambda v: ndtr(-v * ratio) ** batch, jnp.asarray(1.0, c.dtype), (0.0,)),
        0.5,
    )
