"""Gaussian expectations of activation functions: one variable and correlated pairs.

Rule. Expectations are taken in standardised coordinates s ~ N(0, 1), u = √q s, by
composite Gauss–Legendre quadrature on [-12, 12] (the mass outside is 2e-33, below float64
resolution). The interval is cut into panels by

* uniform edges every ``step`` (the Gaussian weight is entire, so panels of width 1.5–2 with
  12–16 nodes integrate it to machine precision), and
* a mesh graded geometrically towards each *centre*: the kinks of φ (relu, leaky relu, elu,
  selu: 0), or 0 for smooth φ, where the nearest complex singularities of tanh, sigmoid and
  silu lie (poles at ±iπ/2 and ±iπ). Edges sit at centre ± 2·0.3^k.

Why not Gauss–Hermite. Gauss–Hermite is exact only for polynomials times the weight; for a
kink it converges slowly (elu: 1e-5 with 160 nodes), and Gauss–Hermite on a half-line is
wrong (its nodes and weights are for the whole line). For tanh it also degrades as q grows,
since the poles come within π/(2√q) of the real axis in s (160 nodes: 6e-5 at q = 10, 2e-2
at q = 100). Splitting at the kink and grading the panels towards it makes every piece
analytic in a neighbourhood that is large compared to its panel. Checked against adaptive
quadrature and closed forms, the one-variable rule is at float64 round-off (about 1e-15
relative) for tanh, relu, elu, silu, erf and sigmoid from q = 1e-6 to 1e6, and the pair
rule within 1e-10 (relu's arc-cosine kernel, erf's arcsine kernel, q up to 1e4).

Pairs. (u₁, u₂) with variances q₁, q₂ and covariance Σ, c = Σ/√(q₁q₂), is written
u₁ = √q₁ s₁, u₂ = √q₂ (c s₁ + √(1−c²) s₂). The outer rule in s₁ is graded at the centres of
f's first argument; for each outer node the inner rule in s₂ is graded at the point where u₂
crosses a centre, s₂ = (t/√q₂ − c s₁)/√(1−c²), so kinks along any line are split exactly.
At c = ±1 the inner integrand is constant and the rule stays exact.

Everything is written in ``jax`` (sorting edges, vmapping over nodes) so that expectations
can be ``jit``-ed and ``vmap``-ed over q and Σ. Call under ``precision.float64()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.config.activations import Activation

HALF_WIDTH = 12.0
"""The rules integrate over s in [-HALF_WIDTH, HALF_WIDTH]."""


class Mesh(NamedTuple):
    """How the standard-normal line is cut into Gauss–Legendre panels.

    Attributes:
      order: Gauss–Legendre nodes per panel.
      step: spacing of the uniform edges.
      graded_start: distance of the outermost graded edge from a centre.
      graded_ratio: ratio between consecutive graded edges.
      graded_levels: graded edges on each side of a centre.
    """

    order: int
    step: float
    graded_start: float
    graded_ratio: float
    graded_levels: int


ONE_D = Mesh(order=16, step=1.5, graded_start=2.0, graded_ratio=0.3, graded_levels=12)
"""Rule for one variable: 656 nodes, float64 round-off."""

PAIR = Mesh(order=12, step=2.0, graded_start=2.0, graded_ratio=0.3, graded_levels=10)
"""Rule per axis for pairs: 396 × 396 nodes, ≤ 1e-10 relative."""


def centres(activation: Activation) -> tuple[float, ...]:
    """Where the mesh is graded for ``activation``: its kinks, else 0 (see module doc)."""
    return tuple(activation.kinks) if activation.kinks else (0.0,)


def normal_rule(points: jax.Array, mesh: Mesh = ONE_D) -> tuple[jax.Array, jax.Array]:
    """Nodes and weights for ∫ g(s) Dz(s), graded towards ``points``.

    Args:
      points: ``(k,)`` centres in standardised coordinates s (clipped to the interval).
      mesh: the panel layout.

    Returns:
      ``(nodes, weights)``, each ``(N,)`` with N = (edges − 1)·order; the weights include
      the Gaussian density and sum to 1 up to round-off. Panels of zero width (edges that
      coincide after clipping) carry zero weight.
    """
    uniform = np.arange(-HALF_WIDTH, HALF_WIDTH + 1e-9, mesh.step)
    offsets = mesh.graded_start * mesh.graded_ratio ** np.arange(mesh.graded_levels)
    points = jnp.clip(jnp.atleast_1d(points), -HALF_WIDTH, HALF_WIDTH)
    # Each centre's edges in ascending order (the offsets descend): c − o₀ < … < c < … < c + o₀.
    graded = jnp.concatenate([points[:, None] - offsets, points[:, None], points[:, None] + offsets[::-1]], axis=1)
    edges = _merge([jnp.asarray(uniform)] + list(jnp.clip(graded, -HALF_WIDTH, HALF_WIDTH)))
    x, w = np.polynomial.legendre.leggauss(mesh.order)
    lo, hi = edges[:-1, None], edges[1:, None]
    nodes = (lo + hi) / 2 + (hi - lo) / 2 * x
    weights = (hi - lo) / 2 * w * jnp.exp(-nodes**2 / 2) / np.sqrt(2 * np.pi)
    return nodes.ravel(), weights.ravel()


def _merge(runs: list[jax.Array]) -> jax.Array:
    """The values of ascending ``runs`` in ascending order, as ``jnp.sort`` of them all gives them.

    A value's place is its place in its own run plus the values of the other runs below it
    (ties go to the earlier run), and each place is filled by a masked sum that adds one value
    to zeros, which is exact. Comparisons and sums vectorise; XLA's sort on a CPU calls a
    comparator per comparison, and ``expect_pair`` builds a rule for every outer node.
    """
    places = []
    for a, run in enumerate(runs):
        place = jnp.arange(run.shape[0])
        for b, other in enumerate(runs):
            if b != a:
                below = other[None, :] <= run[:, None] if b < a else other[None, :] < run[:, None]
                place = place + jnp.sum(below, axis=1)
        places.append(place)
    values, places = jnp.concatenate(runs), jnp.concatenate(places)
    slots = jnp.arange(values.shape[0])
    return jnp.sum(jnp.where(places[None, :] == slots[:, None], values[None, :], 0.0), axis=1)


def _standardised(kinks: Sequence[float], q: jax.Array) -> jax.Array:
    """Kinks t in u = √q s mapped to s = t/√q; 0 where q = 0 (then u ≡ 0 anyway)."""
    root = jnp.sqrt(q)
    safe = jnp.where(root > 0, root, 1.0)
    return jnp.where(root > 0, jnp.asarray(kinks, dtype=safe.dtype) / safe, 0.0)


def expect(f: Callable[[jax.Array], Any], q: jax.Array, kinks: Sequence[float] = (0.0,),
           mesh: Mesh = ONE_D) -> Any:
    """E[f(u)] for u ~ N(0, q).

    Args:
      f: elementwise function of u, ``(N,) -> (N,)``, or returning a pytree of such arrays
        (e.g. a tuple of several integrands evaluated together).
      q: scalar variance, ≥ 0.
      kinks: where f or its derivatives are singular, in u (see ``centres``).
      mesh: the panel layout.

    Returns:
      The expectation, a scalar (or the same pytree of scalars).
    """
    q = jnp.asarray(q)
    s, w = normal_rule(_standardised(kinks, q), mesh)
    values = f(jnp.sqrt(q) * s)
    return jax.tree_util.tree_map(lambda v: jnp.sum(w * v), values)


def expect_pair(f: Callable[[jax.Array, jax.Array], Any], q1: jax.Array, q2: jax.Array, cov: jax.Array,
                kinks1: Sequence[float] = (0.0,), kinks2: Sequence[float] = (0.0,), mesh: Mesh = PAIR,
                first: Callable[[jax.Array], Any] | None = None) -> Any:
    """E[f(u₁, u₂)] for a centred Gaussian pair.

    Args:
      f: elementwise function ``(u1 (N,), u2 (N,)) -> (N,)`` or a pytree of such arrays; with
        ``first``, ``f(a, u2)`` takes ``a = first(u1)`` instead of u₁.
      q1, q2: scalar variances of u₁ and u₂, ≥ 0.
      cov: scalar covariance Σ; the correlation Σ/√(q₁q₂) is clipped to [-1, 1].
      kinks1, kinks2: singular points of f in each argument (see ``centres``).
      mesh: the panel layout of each axis.
      first: what ``f`` needs of u₁ (e.g. φ(u₁) and φ'(u₁)), a function of it alone: then
        evaluated once per outer node instead of at every node of its inner rule.

    Returns:
      The expectation, a scalar (or the same pytree of scalars).
    """
    q1, q2, cov = jnp.asarray(q1), jnp.asarray(q2), jnp.asarray(cov)
    denominator = jnp.sqrt(q1 * q2)
    c = jnp.clip(jnp.where(denominator > 0, cov / jnp.where(denominator > 0, denominator, 1.0), 1.0), -1.0, 1.0)
    rho = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))
    safe_rho = jnp.where(rho > 0, rho, 1.0)
    s1, w1 = normal_rule(_standardised(kinks1, q1), mesh)
    t2 = _standardised(kinks2, q2)

    def inner(s, a):
        crossing = jnp.where(rho > 0, (t2 - c * s) / safe_rho, HALF_WIDTH)
        s2, w2 = normal_rule(crossing, mesh)
        u1 = jnp.sqrt(q1) * s * jnp.ones_like(s2)
        values = f(u1 if first is None else a, jnp.sqrt(q2) * (c * s + rho * s2))
        return jax.tree_util.tree_map(lambda v: jnp.sum(w2 * v), values)

    per_node = jax.vmap(inner)(s1, s1 if first is None else first(jnp.sqrt(q1) * s1))
    return jax.tree_util.tree_map(lambda v: jnp.sum(w1 * v), per_node)
