"""The network family: one definition of how a random MLP is drawn and run.

A network is fixed by its ``Architecture`` (static: activation, init, widths) and drawn from
its key, gain and bias std (dynamic: these are ``vmap``-ed over). Its random numbers come
from ``sweep.model.streams``, so a network is the same whether it is drawn alone, in a chunk
of thousands, by the statistics kernel or by the trainer.

Layers with the same shape are stacked and run with ``lax.scan``. Consecutive layers are
grouped into ``Segment``s: a block of one or a few layer shapes repeated several times, so
that constant widths scan over single layers and alternating widths scan over pairs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sweep.config import activations, profiles
from sweep.model import streams

Params = tuple  # per segment: a tuple over block positions of (W (r, n_in, n_out), b (r, n_out))


class Architecture(NamedTuple):
    """The static part of a network: what ``jit`` compiles for.

    Attributes:
      activation: canonical activation name.
      init: init name.
      widths: ``(n_0, n_1, ..., n_L)``, the input dimension then the hidden widths.
    """

    activation: str
    init: str
    widths: tuple[int, ...]

    @classmethod
    def from_grid(cls, activation: str, init: str, profile: str, depth: int, width: int) -> Architecture:
        """The architecture at one point of a grid."""
        return cls(activation, init, profiles.widths(profile, width, depth))

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``(n_{l-1}, n_l)`` for l = 1..L."""
        return tuple(zip(self.widths[:-1], self.widths[1:]))

    @property
    def phi(self):
        return activations.get(self.activation).fn

    @property
    def homogeneous(self) -> bool:
        return activations.get(self.activation).homogeneous

    @property
    def slope_from_output(self) -> bool:
        return activations.get(self.activation).slope_from_output


class Segment(NamedTuple):
    """Layers ``start+1 .. start+len(block)*repeats``: ``block`` of shapes, ``repeats`` times."""

    start: int
    block: tuple[tuple[int, int], ...]
    repeats: int


@functools.cache
def segments(shapes: tuple[tuple[int, int], ...], max_period: int = 4) -> tuple[Segment, ...]:
    """Splits the layer shapes greedily into repeated blocks, longest coverage first.

    Args:
      shapes: ``(n_in, n_out)`` of each layer.
      max_period: the longest block considered.

    Returns:
      Segments that together cover the layers in order.
    """
    out, i = [], 0
    while i < len(shapes):
        best = (1, 1)  # (period, repeats)
        for p in range(1, max_period + 1):
            block = shapes[i : i + p]
            if len(block) < p:
                break
            r = 1
            while shapes[i + r * p : i + (r + 1) * p] == block:
                r += 1
            if r > 1 and p * r > best[0] * best[1]:
                best = (p, r)
        p, r = best
        out.append(Segment(i, shapes[i : i + p], r))
        i += p * r
    return tuple(out)


def draw_params(key: jax.Array, arch: Architecture, gain, bias_std) -> Params:
    """Draws all layers of one network, stacked by segment.

    Args:
      key: the network's key (``streams.network_key``).
      arch: the architecture.
      gain, bias_std: scalars.

    Returns:
      For each segment, for each block position j, ``(W, b)`` stacked over repeats:
      ``W`` of shape ``(repeats, n_in_j, n_out_j)``, ``b`` of shape ``(repeats, n_out_j)``.
      Layer l (1-based) is ``streams.layer`` from ``streams.layer_keys(key, l)``.
    """
    params = []
    for seg in segments(arch.shapes):
        period = len(seg.block)
        block = []
        for j, shape in enumerate(seg.block):
            keys = streams.layer_keys(key, seg.start + 1 + j + period * jnp.arange(seg.repeats))
            block.append(jax.vmap(lambda k: streams.layer(k, shape, arch.init, gain, bias_std))(keys))
        params.append(tuple(block))
    return tuple(params)


def layer_list(params: Params) -> list[tuple[jax.Array, jax.Array]]:
    """Unstacks ``params`` into ``[(W_1, b_1), ..., (W_L, b_L)]`` (for tests and small uses)."""
    out = []
    for block in params:
        repeats = block[0][0].shape[0]
        for i in range(repeats):
            out.extend((w[i], b[i]) for w, b in block)
    return out


def scan_blocks(step, carry, xs, reverse: bool = False):
    """``lax.scan`` over a segment's repeats; a single repeat is called directly.

    A segment repeated once may change the carry's shape (a layer from n to 2n), which a
    scan cannot carry, so it runs unrolled; its outputs still get the leading repeats axis.
    """
    if jax.tree.leaves(xs)[0].shape[0] > 1:
        return jax.lax.scan(step, carry, xs, reverse=reverse)
    carry, ys = step(carry, jax.tree.map(lambda a: a[0], xs))
    return carry, jax.tree.map(lambda a: a[None], ys)


def apply(params: Params, arch: Architecture, x: jax.Array, precision=jax.lax.Precision.HIGHEST) -> jax.Array:
    """Runs the network forward.

    Args:
      params: from ``draw_params``.
      arch: the architecture.
      x: inputs, shape ``(batch, n_0)``.
      precision: matmul precision.

    Returns:
      The last hidden layer's activations, shape ``(batch, n_L)``.
    """
    phi = arch.phi

    def block_step(h, block):
        for w, b in block:
            h = phi(jnp.matmul(h, w, precision=precision) + b)
        return h, None

    for block in params:
        x, _ = scan_blocks(block_step, x, block)
    return x
