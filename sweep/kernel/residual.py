"""One residual network's forward and backward passes, with exact scale tracking, reduced per block.

Block l maps the stream x_{l-1} to x_l = x_{l-1} + α·F_l(x_{l-1}), with the pre-activation
branch F_l(x) = W_{l,2} φ(W_{l,1} φ(x) + b_{l,1}) + b_{l,2} (``sweep.model.network``). Each of
the branch's two weight layers is reduced as a plain layer is (``sweep.kernel.passes``): its
pre-activation z_j, the first layer's activation φ(z_1), the cotangents at z_j and φ(z_1), and
the weight gradient's mean square; the stream and its cotangent are reduced per block.

Scale tracking as in plain networks: the cotangent is rescaled by powers of two after every
block (it is linear in the loss gradient); for positively homogeneous φ the stream is too, with
the biases divided by the running scale, since then the whole block is homogeneous in
(x, b_1, b_2): x̃_l = x̃_{l-1} + α (W_2 φ(W_1 φ(x̃_{l-1}) + b_1/2^E) + b_2/2^E).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sweep.kernel import passes
from sweep.kernel.results import BackwardStats, ForwardStats, NetworkStats, StreamStats
from sweep.kernel.scale import Scaled, ldexp, normalise
from sweep.model import layers, network


def _moments(a):
    mean = jnp.mean(a)
    return mean, jnp.mean(jnp.square(a)), jnp.mean(jnp.square(a - mean))


def _forward_layer(z, h, e, phi):
    slope = jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
    dead = jnp.mean(jnp.all(slope == 0, axis=0)).astype(z.dtype)
    return ForwardStats(*_moments(z), *_moments(h), dead, e, e)


def forward(params, program, x: jax.Array, precision, alpha):
    """Runs the stream through every block.

    Args:
      params: from ``network.draw_params`` of a residual program.
      program: the ``Program`` (or ``Architecture``), residual.
      x: inputs ``(batch, n)`` (``(batch, *spatial, c)`` for convolutions): the stream x_0.
      precision: ``lax.Precision``.
      alpha: α_eff, a scalar.

    Returns:
      ``(x_L, forward, stream, residuals)``: the scaled last stream ``Scaled``, ``ForwardStats``
      of ``(2L,)`` arrays (weight layers in order; the second layer's activation statistics
      are zeros, ``results.RESIDUAL_UNDEFINED``), the stream's ``(mean, meansq, exponent)`` of
      ``(L,)`` arrays, and per segment the stacked ``(x_{l-1}, z_{l,1})`` the backward pass needs.
    """
    phi, homogeneous = program.phi, program.homogeneous

    def block(carry, params):
        x, e = carry
        (w1, b1), (w2, b2) = params
        z1 = layers.linear(phi(x), w1, precision) + ldexp(b1, -e)
        h = phi(z1)
        z2 = layers.linear(h, w2, precision) + ldexp(b2, -e)
        y, k = x + alpha * z2, jnp.int32(0)
        if homogeneous:
            y, k = normalise(y)
        first = _forward_layer(z1, h, e, phi)
        zero = jnp.zeros((), z2.dtype)
        second = ForwardStats(*_moments(z2), zero, zero, zero, zero, e, e)
        stream = (jnp.mean(y), jnp.mean(jnp.square(y)), e + k)
        return (y, e + k), ((passes._stack_block([first, second]), stream), (x, z1))

    def block_step(carry, blocks):
        outs, res = [], []
        for params in blocks:
            carry, (out, residual) = block(carry, params)
            outs.append(out)
            res.append(residual)
        stats, stream = passes._stack_block(outs)
        return carry, (stats, stream, tuple(res))

    carry = (x, jnp.int32(0))
    per_segment = []
    for blocks in params:
        carry, out = network.scan_blocks(block_step, carry, blocks)
        per_segment.append(out)
    fwd, stream, residuals = zip(*per_segment)
    return Scaled(*carry), _per_layer(fwd), _concat(stream), residuals


def backward(params, program, residuals, g: jax.Array, precision, alpha):
    """Backpropagates the scaled cotangent ``g`` = ∂ℓ/∂x_L through the blocks.

    Returns:
      ``(BackwardStats of (2L,) arrays, (grad_stream_meansq, exponent) of (L,) arrays)``, of
      the scaled cotangents, exponents from 0 at x_L.
    """
    phi = program.phi

    def block(carry, params, residual):
        g, f = carry
        (w1, _), (w2, _) = params
        x, z1 = residual
        u, h = phi(x), phi(z1)
        delta2 = alpha * g
        a1 = layers.linear_transpose(delta2, w2, precision)
        delta1 = jax.vjp(phi, z1)[1](a1)[0]
        a0 = layers.linear_transpose(delta1, w1, precision)
        g_prev = g + jax.vjp(phi, x)[1](a0)[0]
        taps1, taps2 = w1.shape[:-2], w2.shape[:-2]
        first = BackwardStats(jnp.mean(jnp.square(a1)), jnp.mean(jnp.square(delta1)),
                              passes.grad_weight_meansq(u, delta1, precision, taps=taps1), f)
        second = BackwardStats(jnp.zeros((), g.dtype), jnp.mean(jnp.square(delta2)),
                               passes.grad_weight_meansq(h, delta2, precision, taps=taps2), f)
        stream = (jnp.mean(jnp.square(g)), f)
        g_prev, m = normalise(g_prev)
        return (g_prev, f + m), (passes._stack_block([first, second]), stream)

    def block_step(carry, xs):
        blocks, res = xs
        outs = []
        for params, residual in reversed(tuple(zip(blocks, res))):
            carry, out = block(carry, params, residual)
            outs.append(out)
        return carry, passes._stack_block(outs[::-1])

    carry = (g, jnp.int32(0))
    per_segment = []
    for blocks, res in reversed(tuple(zip(params, residuals))):
        carry, out = network.scan_blocks(block_step, carry, (blocks, res), reverse=True)
        per_segment.append(out)
    back, stream = zip(*per_segment[::-1])
    return _per_layer(back), _concat(stream)


def _per_layer(per_segment):
    """Scan outputs ``(repeats, period, 2, ...)`` per segment -> one ``(..., 2L)`` array per leaf."""
    return jax.tree.map(lambda *leaves: jnp.moveaxis(jnp.concatenate([a.reshape((-1,) + a.shape[3:]) for a in leaves]), 0, -1),
                        *per_segment)


def _concat(per_segment):
    """``(repeats, period, ...)`` per segment -> ``(..., L)`` per leaf."""
    return passes._concat_layers(list(per_segment))


def network_stats(program, probe, prefix, key: jax.Array, gain, bias_std, readout) -> NetworkStats:
    """All statistics of one residual network (``sweep.kernel.stats.network_stats``' contract).

    Args:
      program, probe, prefix, key, gain, bias_std: as there; ``prefix.branch_scale`` is α_eff.
      readout: the network's ``passes.Readout``.

    Returns:
      ``NetworkStats`` with ``stream``; forward and backward statistics per weight layer.
    """
    precision, alpha = probe.lax_precision, prefix.branch_scale
    params = network.draw_params(key, program, gain, bias_std, prefix)
    x = network.inputs(key, program, probe.batch)
    x_last, fwd, (mean, meansq, e), residuals = forward(params, program, x, precision, alpha)
    loss, g = passes.loss_and_cotangent(x_last, readout, precision)
    g_scaled, m = normalise(g.mantissa)
    back, (grad_meansq, f) = backward(params, program, residuals, g_scaled, precision, alpha)
    shift = g.exponent + m
    back = back._replace(exp_grad=back.exp_grad + shift)
    return NetworkStats(fwd, back, loss, None, StreamStats(mean, meansq, grad_meansq, e, f + shift))
