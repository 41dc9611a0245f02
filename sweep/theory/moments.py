"""Gaussian moments of an activation and its derivative, the building blocks of the theory.

φ' and φ'' come from automatic differentiation (``jax.jvp``), never by hand; at a kink the
derivative is ``jax``'s one-sided choice, which the quadrature never evaluates (kinks are
panel edges, Gauss–Legendre nodes are interior). The functions are ``jit``-ed per activation
and ``vmap``-able over q and Σ; call them under ``precision.float64()``.

``single`` and ``pair`` integrate by quadrature (``sweep.theory.gaussian``) for any activation.
The recursions take their moments from ``rules``, which uses the closed forms of
``piecewise_linear_single`` and ``piecewise_linear_pair`` where φ is linear on each half-line
(relu, leaky relu, linear): exact, and a few operations instead of a 396 × 396-node rule.
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
        def integrands(first, u2):
            v1, d1 = first
            v2, d2 = both(u2)
            return PairMoments(v1 * v2, d1 * d2, v1 * d1 * v2 * d2)

        return gaussian.expect_pair(integrands, q1, q2, cov, kinks, kinks, gaussian.PAIR, first=both)

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


def piecewise_linear_slopes(name: str) -> tuple[float, float] | None:
    """φ's slopes (n, p) on u < 0 and u > 0 if φ(u) = p·u⁺ − n·u⁻ (relu, leaky relu, linear), else ``None``."""
    act = activations.get(name)
    return half_line_slopes(name) if act.homogeneous else None


def _at_zero(name: str) -> tuple[float, float]:
    """(φ(0), φ'(0)), ``jax``'s one-sided choice at the kink: the moments at q = 0, where u ≡ 0."""
    value, slope = value_and_slope(activations.get(name).fn)(jnp.asarray(0.0))
    return float(value), float(slope)


@functools.cache
def piecewise_linear_single(name: str) -> Callable[[jax.Array], SingleMoments]:
    """``single(name)`` in closed form for φ(u) = p·u⁺ − n·u⁻.

    E[φ] = (p − n)√(q/2π), E[φ²] = (p² + n²) q/2, E[φ'²] = d E[φ²]/dq = (p² + n²)/2,
    E[φ²φ'²] = (p⁴ + n⁴) q/2; at q = 0, where the quadrature evaluates φ and φ' at 0 only,
    the same values as it: φ(0)^k φ'(0)^m (``meansq_slope`` 0).
    """
    n, p = half_line_slopes(name)
    value0, slope0 = _at_zero(name)

    def moments(q):
        q = jnp.asarray(q)
        positive = q > 0
        at = lambda closed, zero: jnp.where(positive, closed, zero)
        return SingleMoments(
            at((p - n) * jnp.sqrt(q / (2 * jnp.pi)), value0),
            at((p * p + n * n) * q / 2, value0 * value0),
            at(jnp.full_like(q, (p * p + n * n) / 2), slope0 * slope0),
            at(jnp.full_like(q, (p * p + n * n) / 2), 0.0),
            at((p**4 + n**4) * q / 2, (value0 * slope0) ** 2),
        )

    return jax.jit(moments)


@functools.cache
def piecewise_linear_pair(name: str) -> Callable[[jax.Array, jax.Array, jax.Array], PairMoments]:
    """``pair(name)`` in closed form for φ(u) = p·u⁺ − n·u⁻ (Cho & Saul's arc-cosine kernels).

    With c = Σ/√(q₁q₂) (clipped to [−1, 1], as the quadrature clips it), θ = arccos c and
    K = E[u₁⁺u₂⁺] = √(q₁q₂)(√(1 − c²) + (π − θ) c)/(2π): E[u₁⁻u₂⁻] = K and E[u₁⁺u₂⁻] = K − Σ/2,
    so E[φφ] = (p − n)² K + pn Σ; the signs agree with probability (π − θ)/π, so
    E[φ'φ'] = (p − n)² (π − θ)/(2π) + pn; and φφ' = p²u⁺ − n²u⁻ gives
    E[φφ'·φφ'] = (p² − n²)² K + p²n² Σ (written so that nothing cancels: linear φ gives Σ).
    Where q₁ or q₂ is 0 that u is 0 and independent of the other: the products of the
    one-variable means, as the quadrature has them.
    """
    n, p = half_line_slopes(name)
    value0, slope0 = _at_zero(name)

    def moments(q1, q2, cov):
        q1, q2, cov = jnp.asarray(q1), jnp.asarray(q2), jnp.asarray(cov)
        root = jnp.sqrt(q1 * q2)
        positive = root > 0
        c = jnp.clip(jnp.where(positive, cov / jnp.where(positive, root, 1.0), 1.0), -1.0, 1.0)
        angle = jnp.pi - jnp.arccos(c)
        kernel = root * (jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) + angle * c) / (2 * jnp.pi)
        cov = c * root
        closed = PairMoments((p - n) ** 2 * kernel + p * n * cov, (p - n) ** 2 * angle / (2 * jnp.pi) + p * n,
                             (p * p - n * n) ** 2 * kernel + p * p * n * n * cov)
        # Either variance 0: that variable is 0, so the products of E[φ], E[φ'] and E[φφ'].
        mean = lambda q: jnp.where(q > 0, (p - n) * jnp.sqrt(q / (2 * jnp.pi)), value0)
        mean_slope = lambda q: jnp.where(q > 0, (p + n) / 2, slope0)
        mean_product = lambda q: jnp.where(q > 0, (p * p - n * n) * jnp.sqrt(q / (2 * jnp.pi)), value0 * slope0)
        apart = PairMoments(mean(q1) * mean(q2), mean_slope(q1) * mean_slope(q2), mean_product(q1) * mean_product(q2))
        return PairMoments(*(jnp.where(positive, a, b) for a, b in zip(closed, apart)))

    return jax.jit(moments)


def rules(name: str) -> tuple[Callable, Callable]:
    """The one-variable and pair moments of ``name`` that the recursions use: the closed forms
    where φ is piecewise linear (``piecewise_linear_single``, ``piecewise_linear_pair``), else
    the quadrature (``single``, ``pair``)."""
    if piecewise_linear_slopes(name) is not None:
        return piecewise_linear_single(name), piecewise_linear_pair(name)
    return single(name), pair(name)
