"""The network family: one definition of how a random network is drawn and run.

Plain networks of dense or circular conv layers, and residual networks of pre-activation
blocks over either. A network is fixed by its ``Architecture`` (static: activation, init,
widths, for a conv net its ``Conv`` (kernel size and spatial shape), for a residual one its
branch multiplier) and drawn from
its key, gain and bias std (dynamic: these are ``vmap``-ed over). Its random numbers come
from ``sweep.model.streams``, so a network is the same whether it is drawn alone, in a chunk
of thousands, by the statistics kernel or by the trainer.

Layers with the same shape are stacked and run with ``lax.scan``. Consecutive layers are
grouped into ``Segment``s: a block of one or a few layer shapes repeated several times, so
that constant widths scan over single layers and alternating widths scan over pairs.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.config import activations, inits, profiles
from sweep.model import conditional, layers, streams

Params = tuple  # per segment: a tuple over block positions of (W (r, *taps, n_in, n_out), b (r, n_out))


class Conv(NamedTuple):
    """What makes a network convolutional: circular convolutions of stride 1.

    Attributes:
      kernel_size: k, odd: every layer has k^d taps.
      spatial: the inputs' spatial shape, ``(s,)`` or ``(s, s')``; every layer keeps it.
    """

    kernel_size: int
    spatial: tuple[int, ...]

    @property
    def taps(self) -> tuple[int, ...]:
        """The kernel's spatial shape, ``(k,) * d``."""
        return (self.kernel_size,) * len(self.spatial)

    @property
    def positions(self) -> int:
        """P, the number of spatial positions."""
        return math.prod(self.spatial)


def _weight_layers(arch) -> tuple[tuple[int, int], ...]:
    if not arch.is_residual:
        return arch.shapes
    return tuple(shape for n, m in arch.shapes for shape in ((n, m), (m, n)))


def _layered(cls):
    """Adds what both ``Architecture`` and ``Program`` derive from their activation and widths."""
    cls.depth = property(lambda self: len(self.widths) - 1,
                         doc="L, the number of layers, or of residual blocks (a program's L_max).")
    cls.shapes = property(
        lambda self: (tuple((self.widths[0], m) for m in self.widths[1:]) if self.is_residual
                      else tuple(zip(self.widths[:-1], self.widths[1:]))),
        doc="``(n_{l-1}, n_l)`` for l = 1..L; for residual blocks ``(n, m_l)``, stream and inner width.")
    cls.phi = property(lambda self: activations.get(self.activation).fn, doc="The activation function.")
    cls.homogeneous = property(lambda self: activations.get(self.activation).homogeneous,
                               doc="Whether φ(cz) = cφ(z) for c > 0 (``sweep.config.activations``).")
    cls.slope_from_output = property(lambda self: activations.get(self.activation).slope_from_output,
                                     doc="Whether φ' can be taken at the layer's scaled output.")
    cls.weight_shapes = property(
        lambda self: tuple((self.conv.taps if self.conv else ()) + shape for shape in _weight_layers(self)),
        doc="Each weight layer's shape: ``(n_{l-1}, n_l)``, or ``(*taps, c_{l-1}, c_l)`` for convolutions; "
            "residual blocks have two, ``(n, m_l)`` then ``(m_l, n)``.")
    cls.positions = property(lambda self: self.conv.positions if self.conv else 1,
                             doc="P, the spatial positions of every layer (1 for dense layers).")
    return cls


@_layered
class Architecture(NamedTuple):
    """One network's architecture: everything but its random draws, gain and bias std.

    Attributes:
      activation: canonical activation name.
      init: init name.
      widths: ``(n_0, n_1, ..., n_L)``, the input dimension then the hidden widths (channels
        for convolutions).
      conv: ``None`` for dense layers, else the convolutions' ``Conv``.
      residual: ``None`` for plain networks; for residual ones α_eff, the branch multiplier:
        block l is x_l = x_{l-1} + α_eff·F_l(x_{l-1}), F_l(x) = W_{l,2} φ(W_{l,1} φ(x) + b_{l,1}) + b_{l,2},
        of stream width ``widths[0]`` and inner width ``widths[l]``.
    """

    activation: str
    init: str
    widths: tuple[int, ...]
    conv: Conv | None = None
    residual: float | None = None

    @property
    def is_residual(self) -> bool:
        return self.residual is not None

    @classmethod
    def from_grid(cls, activation: str, init: str, profile: str, depth: int, width: int,
                  conv: Conv | None = None, residual: float | None = None) -> Architecture:
        """The architecture at one point of a grid."""
        return cls(activation, init, profiles.widths(profile, width, depth), conv, residual)

    @property
    def distribution(self) -> str:
        return inits.get(self.init).distribution

    @property
    def layer_scales(self) -> np.ndarray:
        """``(L,)`` float32: layer l's weights are gain · scale_l · a raw draw (``Init.scale``)."""
        init = inits.get(self.init)
        scales = np.asarray([init.kernel_scale(shape) for shape in self.weight_shapes], np.float32)
        if self.init == "fixup":  # each branch's first layer scaled by L^{-1/2}, its last zero
            scales = (scales.reshape(-1, 2) * np.asarray([self.depth ** -0.5, 0.0], np.float32)).reshape(-1)
        return scales

    @property
    def readout_width(self) -> int:
        """The width the readout reads: n_L, or a residual network's stream width n_0."""
        return self.widths[0] if self.is_residual else self.widths[-1]

    def input_map_shape(self, features: int) -> tuple[int, ...]:
        """A trained residual network's input map's shape: ``(features, n_0)``, or ``(*taps, 1, n_0)``
        for convolutions (``sweep.train.model``)."""
        return (self.conv.taps + (1,) if self.conv else (features,)) + (self.widths[0],)

    def program(self) -> Program:
        """The program of this network alone."""
        return Program(self.activation, self.distribution, self.widths, self.readout_width, self.conv, self.is_residual)

    def prefix(self, program: Program) -> Prefix:
        """Where this network sits in ``program``: its depth and its layers' scales, padded."""
        if self.widths != program.widths[: self.depth + 1] or self.program().last_width != program.last_width:
            raise ValueError(f"{self} is not a prefix of {program}")
        scales = np.ones(len(program.weight_shapes), np.float32)
        scales[: len(self.weight_shapes)] = self.layer_scales
        return Prefix(np.int32(self.depth), scales, np.float32(self.residual or 0.0), np.float32(1.0))


@_layered
class Program(NamedTuple):
    """What one compiled statistics kernel runs: every network that is a prefix of the deepest.

    A network of depth L <= L_max whose widths are the first L + 1 of ``widths`` and whose last
    width is ``last_width`` runs in this program with its ``Prefix``: the layers beyond its
    depth are skipped exactly, and the fan mode enters only through the layers' scales.

    Attributes:
      activation: canonical activation name.
      distribution: the weights' distribution (``sweep.config.inits.Init.distribution``).
      widths: ``(n_0, ..., n_{L_max})`` of the deepest network.
      last_width: the output width of every network in the program (so the readout's shape).
      conv: as ``Architecture.conv``.
      is_residual: whether it runs residual blocks (their α is the ``Prefix``'s).
    """

    activation: str
    distribution: str
    widths: tuple[int, ...]
    last_width: int
    conv: Conv | None = None
    is_residual: bool = False

    def describe(self) -> str:
        """E.g. ``relu normal 64 > 64 x16 (out 64)``, or ``... conv k=3 16x16`` for convolutions."""
        conv = "" if self.conv is None else f" conv k={self.conv.kernel_size} {'x'.join(map(str, self.conv.spatial))}"
        if self.is_residual:
            inner = describe_widths(self.widths)
            return f"{self.activation} {self.distribution} residual {self.widths[0]} x{self.depth} (inner {inner}){conv}"
        return f"{self.activation} {self.distribution} {describe_widths(self.widths)} (out {self.last_width}){conv}"


def describe_widths(widths: tuple[int, ...]) -> str:
    """``widths`` run-length encoded by repeated blocks, e.g. ``64 > 64 x16`` or ``64 > 64, (128, 64) x3``."""
    parts = []
    for seg in segments(tuple(zip(widths[:-1], widths[1:]))):
        outs = [o for _, o in seg.block]
        block = str(outs[0]) if len(outs) == 1 else f"({', '.join(map(str, outs))})"
        parts.append(block if seg.repeats == 1 else f"{block} x{seg.repeats}")
    return f"{widths[0]} > " + ", ".join(parts)


class Prefix(NamedTuple):
    """The dynamic part of a network inside its ``Program`` (arrays, passed at run time).

    Attributes:
      depth: L, an int32 scalar, 1 <= L <= L_max.
      scales: float32, the scale of each weight layer (``Init.kernel_scale``; those beyond L unused).
      branch_scale: a residual network's α_eff, a float32 scalar (0 for plain networks).
      readout_scale: the probe readout's standard deviation relative to the standard one, a
        float32 scalar: 1, or μP's m_in^-1/2 (``sweep.config.parametrizations.readout_init``).
    """

    depth: jax.Array
    scales: jax.Array
    branch_scale: jax.Array | float = 0.0
    readout_scale: jax.Array | float = 1.0


def programs(archs) -> dict[Architecture, Program]:
    """The fewest programs that run ``archs``: a network joins the deepest one it is a prefix of.

    Networks share a program when they have the same activation, weight distribution and last
    width, and the widths of the shallower are the first ones of the deeper (constant and
    alternating profiles; a taper's widths change with the depth, so each depth has its own).

    Args:
      archs: architectures.

    Returns:
      Each architecture's program.
    """
    out, made = {}, []
    for arch in sorted(set(archs), key=lambda a: -a.depth):
        for program in made:
            # Residual blocks run at their own depth only.
            prefix_of = program.widths == arch.widths if arch.is_residual else program.widths[: arch.depth + 1] == arch.widths
            if (program.activation, program.distribution, program.last_width, program.conv, program.is_residual) == (
                    arch.activation, arch.distribution, arch.widths[-1], arch.conv, arch.is_residual) and prefix_of:
                out[arch] = program
                break
        else:
            made.append(arch.program())
            out[arch] = made[-1]
    return out


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


def draw_params(key: jax.Array, program: Architecture | Program, gain, bias_std, prefix: Prefix | None = None,
                conditional_batch: int | None = None) -> Params:
    """Draws all layers of one network, stacked by segment.

    Args:
      key: the network's key (``streams.network_key``).
      program: the network's architecture; or, with ``prefix``, its program.
      gain, bias_std: scalars.
      prefix: the network's place in ``program``; its layers beyond ``prefix.depth`` are not
        drawn and hold zeros.
      conditional_batch: ``None``; or the batch B of the conditional sampler: every layer where
        ``conditional.applies`` holds at B (of a plain dense program) gets a
        ``conditional.ConditionalLayer`` in place of its weights, its biases drawn as usual.

    Returns:
      For each segment, for each block position j, ``(W, b)`` stacked over repeats:
      ``W`` of shape ``(repeats, *taps, n_in_j, n_out_j)``, ``b`` of shape ``(repeats, n_out_j)``;
      for residual blocks ``((W_1, b_1), (W_2, b_2))``, the branch's two layers. Weight layer i
      (1-based; block l's are 2l − 1 and 2l) is drawn from ``streams.layer_key(key, i)``.
      Layer l (1-based) is ``streams.layer`` from ``streams.layer_key(key, l)``, scaled by
      gain · scale_l.
    """
    if prefix is None:
        program, prefix = program.program(), Prefix(None, jnp.asarray(program.layer_scales))
    taps = program.conv.taps if program.conv else ()
    per_block = 2 if program.is_residual else 1
    params = []
    for seg in segments(program.shapes):
        period = len(seg.block)
        block = []
        for j, shape in enumerate(seg.block):
            blocks = seg.start + 1 + j + period * jnp.arange(seg.repeats)
            if conditional_batch is not None and conditional_layer(program, shape, conditional_batch):
                def lazy(l):
                    layer_key = streams.layer_key(key, l)
                    scale = gain * prefix.scales[l - 1]
                    return conditional.ConditionalLayer(layer_key, scale), streams.bias(layer_key, shape[1], bias_std)

                block.append(jax.lax.map(lazy, blocks))
                continue

            def one(l, shape=shape):
                # block l's weight layers are per_block·(l-1) + 1, ...: layer l of a plain network
                shapes = ((shape, shape[::-1]) if per_block == 2 else (shape,))
                draws = []
                for i, s in enumerate(shapes):
                    index = per_block * (l - 1) + 1 + i
                    kernel = taps + s
                    draw = lambda index=index, kernel=kernel: streams.layer(
                        streams.layer_key(key, index), kernel, program.distribution,
                        gain * prefix.scales[index - 1], bias_std)
                    if prefix.depth is None or per_block == 2:
                        draws.append(draw())
                    else:
                        zeros = lambda kernel=kernel: (jnp.zeros(kernel), jnp.zeros(kernel[-1:]))
                        draws.append(jax.lax.cond(l <= prefix.depth, draw, zeros))
                return draws[0] if per_block == 1 else tuple(draws)

            block.append(jax.lax.map(one, blocks))
        params.append(tuple(block))
    return tuple(params)


def conditional_layer(program: Architecture | Program, shape: tuple[int, int], batch: int) -> bool:
    """Whether the conditional sampler runs the dense layer of ``shape`` ``(n_in, n_out)`` of
    ``program`` at ``batch`` (plain dense programs only)."""
    if program.conv is not None or program.is_residual:
        return False
    return conditional.applies(program.distribution, shape[0], batch)


def inputs(key: jax.Array, program: Architecture | Program, batch: int) -> jax.Array:
    """The network's batch of inputs, ``(batch, n_0)``, or images ``(batch, *spatial, c_0)``."""
    return streams.inputs(key, batch, program.widths[0], program.conv.spatial if program.conv else ())


def layer_list(params: Params) -> list[tuple[jax.Array, jax.Array]]:
    """Unstacks ``params`` into ``[(W_1, b_1), ..., (W_L, b_L)]`` (for tests and small uses)."""
    out = []
    for block in params:
        repeats = block[0][0].shape[0]
        for i in range(repeats):
            out.extend((w[i], b[i]) for w, b in block)
    return out


def scan_blocks(step, carry, xs, reverse: bool = False, unroll: bool = False):
    """``lax.scan`` over a segment's repeats; a single repeat is called directly.

    A segment repeated once may change the carry's shape (a layer from n to 2n), which a
    scan cannot carry, so it runs unrolled; its outputs still get the leading repeats axis.
    ``unroll`` unrolls every segment (``apply``'s).
    """
    if jax.tree.leaves(xs)[0].shape[0] > 1:
        return jax.lax.scan(step, carry, xs, reverse=reverse, unroll=unroll)
    carry, ys = step(carry, jax.tree.map(lambda a: a[0], xs))
    return carry, jax.tree.map(lambda a: a[None], ys)


def apply(params: Params, arch: Architecture, x: jax.Array, precision=jax.lax.Precision.HIGHEST, observe=None,
          unroll: bool = False):
    """Runs the network forward.

    Args:
      params: from ``draw_params``.
      arch: the architecture.
      x: inputs, shape ``(batch, n_0)`` (``(batch, *spatial, c_0)`` for convolutions); a
        residual network's are the stream's ``x_0``, of width ``n_0``.
      precision: matmul precision.
      observe: ``None``, or ``observe(z, x) -> pytree of scalars`` of each layer l's
        pre-activation z_l and output x_l = φ(z_l) (a residual block's inner pre-activation
        z_{l,1} = W_{l,1} φ(x_{l-1}) + b_{l,1} and its stream output x_l).
      unroll: unroll the scans over repeated layers (straight-line code, no loop per layer).

    Returns:
      The last hidden layer's activations, shape ``(batch, n_L)`` (``(batch, *spatial, c_L)``);
      a residual network's last stream ``x_L``, ``(batch, n_0)`` (``(batch, *spatial, n_0)``).
      With ``observe``, ``(activations, observed)``, each leaf of ``observed`` stacked over
      the layers, ``(L,)``.
    """
    phi = arch.phi
    alpha = arch.residual
    look = observe or (lambda z, x: None)

    def block_step(h, block):
        seen = []
        for w, b in block:
            z = layers.linear(h, w, precision) + b
            h = phi(z)
            seen.append(look(z, h))
        return h, seen

    def residual_step(x, block):
        seen = []
        for (w1, b1), (w2, b2) in block:
            z = layers.linear(phi(x), w1, precision) + b1
            x = x + alpha * (layers.linear(phi(z), w2, precision) + b2)
            seen.append(look(z, x))
        return x, seen

    observed = []
    for block in params:
        x, seen = scan_blocks(residual_step if arch.is_residual else block_step, x, block, unroll=unroll)
        # (repeats, period) in layer order: repeat k's position j is layer start + k·period + j
        observed.append(jax.tree.map(lambda *a: jnp.stack(a, axis=1).reshape((-1,) + a[0].shape[1:]), *seen)
                        if observe else None)
    if observe is None:
        return x
    return x, jax.tree.map(lambda *a: jnp.concatenate(a), *observed)


def per_layer(arch: Architecture, weights, biases) -> Params:
    """A pytree shaped like ``draw_params``' for ``arch``, of one number per weight layer.

    Args:
      arch: the architecture.
      weights, biases: ``(len(arch.weight_shapes),)`` numbers: weight layer i's (1-based
        i - 1, in ``draw_params``' numbering).

    Returns:
      ``draw_params``' structure with float32 leaves ``(repeats, 1, ..., 1)`` (a W's rank) and
      ``(repeats, 1)`` (a b's), which broadcast against its leaves.
    """
    weights, biases = np.asarray(weights, np.float32), np.asarray(biases, np.float32)
    rank = len(arch.conv.taps if arch.conv else ()) + 2
    per_block = 2 if arch.is_residual else 1
    out = []
    for seg in segments(arch.shapes):
        period = len(seg.block)
        block = []
        for j in range(period):
            blocks = seg.start + 1 + j + period * np.arange(seg.repeats)
            pairs = []
            for i in range(per_block):
                index = per_block * (blocks - 1) + i  # 0-based weight layer
                pairs.append((jnp.asarray(weights[index].reshape((-1,) + (1,) * rank)),
                              jnp.asarray(biases[index].reshape(-1, 1))))
            block.append(pairs[0] if per_block == 1 else tuple(pairs))
        out.append(tuple(block))
    return tuple(out)


def pooled(x: jax.Array) -> jax.Array:
    """What the readout reads: ``x`` ``(batch, *spatial, c)`` averaged over positions, ``(batch, c)``
    (global average pooling); dense ``(batch, n)`` as it is."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1))) if x.ndim > 2 else x
