"""The statistics kernel: draw, run forward, backpropagate and reduce, for many networks at once.

For one network the kernel draws its layers and inputs (``sweep.model``), runs them forward
with ``lax.scan``, backpropagates each example's loss with a reverse ``lax.scan`` of per-layer
VJPs, and reduces every layer to a few scalars on device. ``make_kernel`` ``vmap``s this over
networks and ``jit``s it once per ``Program``: every depth that is a prefix of its deepest
network and every fan mode of one weight distribution share it (``network.programs``). Only
the per-layer scalars leave the device.

Scale tracking and the passes themselves are in ``sweep.kernel.passes``: statistics come out as
float32 mantissas and int32 exponents (``sweep.kernel.results.NetworkStats``), which
``sweep.kernel.results.finish`` combines in float64 on the host. The
layers where a statistic is not finite are marked in ``overflow``; no other network is
touched, since networks never mix.

Cost. On a CPU the random weights cost more than the GEMMs that use them (threefry gives tens
of millions of normals per second against ~100 GFLOP/s). With common random numbers
(``Probe.gains_per_draw`` > 1, ``draw_stats``) the networks of one draw that differ only in
gain share their draws, which are made once, and every layer runs as one GEMM over all their
rows. Where those networks are scaled copies of one another (positively homogeneous
activation, no biases), one network is run and rescaled instead (``sweep.kernel.scaled_copies``).
The weight gradient's mean square comes from two batch × batch Gram matrices when that is
cheaper than the n_in × n_out gradient (``passes.grad_weight_meansq``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sweep.kernel import passes, residual, scaled_copies
from sweep.kernel.batching import micro_batched
from sweep.kernel.passes import Readout
from sweep.kernel.results import NetworkStats
from sweep.kernel.scale import normalise
from sweep.model import network, streams
from sweep.model.network import Architecture, Prefix, Program
from sweep.plan.probe import Probe


def draw_readout(key: jax.Array, probe: Probe, n_last: int, scale=1.0) -> Readout:
    """The probe loss's random numbers of the network with key ``key``, the readout (or projection)
    times ``scale`` (``Prefix.readout_scale``)."""
    if probe.loss == "mse":
        return Readout(scale * streams.readout(key, n_last, probe.outputs),
                       streams.targets(key, probe.batch, probe.outputs))
    return Readout(scale * streams.projection(key, n_last), None)


def network_stats(program: Program, probe: Probe, prefix: Prefix, key: jax.Array, gain, bias_std) -> NetworkStats:
    """All statistics of one network, as mantissas and exponents.

    Args:
      program: the compiled program.
      probe: what to measure.
      prefix: the network's depth and layer scales in ``program``.
      key: the network's key.
      gain, bias_std: scalars.

    Returns:
      ``NetworkStats`` of one network: per layer ``(L_max,)``, zeros beyond its depth;
      ``jacobian`` as ``probe.jacobian`` and ``probe.jacobian_on_host`` say.
    """
    if program.is_residual:
        return residual.network_stats(program, probe, prefix, key, gain, bias_std,
                                      draw_readout(key, probe, program.last_width, prefix.readout_scale))
    precision, depth = probe.lax_precision, prefix.depth
    params = network.draw_params(key, program, gain, bias_std, prefix, probe.conditional_batch)
    x = network.inputs(key, program, probe.batch)
    fwd = passes.forward(params, program, x, precision, depth=depth)
    readout = draw_readout(key, probe, program.last_width, prefix.readout_scale)
    loss, g = passes.loss_and_cotangent(fwd.x_last, readout, precision)
    g_scaled, m = normalise(g.mantissa)
    back = passes.backward(params, program, fwd.residuals, g_scaled, fwd.x_last.mantissa, precision, depth=depth)
    back = back._replace(exp_grad=back.exp_grad + g.exponent + m)
    jacobian = None
    if probe.jacobian:
        jacobian = passes.jacobian(params, program, x[0], precision, not probe.jacobian_on_host, depth)
    return NetworkStats(fwd.stats, back, loss, jacobian)


def draw_stats(program: Program, probe: Probe, prefix: Prefix, key: jax.Array, gains: jax.Array, bias_std) -> NetworkStats:
    """All statistics of the G networks of one draw: common random numbers across gains.

    The networks share every random number: unit-gain weights W and biases drawn from ``key``
    as ``network.draw_params(key, program, 1, bias_std, prefix)``, the inputs, the readout
    and the targets; network g has weights gains[g] · W. The random numbers are drawn once
    instead of G times, and every layer runs as one GEMM of G · batch rows. Each network is
    the one that ``network_stats(program, probe, prefix, key, gains[g], bias_std)`` measures,
    computed with a different rounding order (the gain scales h W instead of W).

    Args:
      program, probe, prefix: as for ``network_stats``.
      key: the draw's key.
      gains: ``(G,)``.
      bias_std: a scalar.

    Returns:
      ``NetworkStats``, each array with a leading axis G.
    """
    precision, depth = probe.lax_precision, prefix.depth
    params = network.draw_params(key, program, 1.0, bias_std, prefix, probe.conditional_batch)
    x = network.inputs(key, program, probe.batch)
    xs = jnp.broadcast_to(x, gains.shape + x.shape)
    fwd = passes.forward(params, program, xs, precision, gains, depth)
    readout = draw_readout(key, probe, program.last_width, prefix.readout_scale)
    loss, g = jax.vmap(passes.loss_and_cotangent, in_axes=(0, None, None))(fwd.x_last, readout, precision)
    g_scaled, m = jax.vmap(normalise)(g.mantissa)
    back = passes.backward(params, program, fwd.residuals, g_scaled, fwd.x_last.mantissa, precision, gains, depth)
    back = back._replace(exp_grad=back.exp_grad + (g.exponent + m)[:, None])
    jacobian = None
    if probe.jacobian:
        def one_gain(gain):
            scaled = tuple(tuple((gain * w, b) for w, b in block) for block in params)
            return passes.jacobian(scaled, program, x[0], precision, not probe.jacobian_on_host, depth)

        jacobian = jax.vmap(one_gain)(gains)
    return NetworkStats(fwd.stats, back, loss, jacobian)


def scaled_copy_stats(program: Program, probe: Probe, prefix: Prefix, key: jax.Array, gains: jax.Array,
                      bias_std) -> NetworkStats:
    """``draw_stats`` for a draw whose networks are scaled copies (``Probe.runs_scaled_copies``).

    ``bias_std`` is 0: the draw's biases are its multiple of zero, drawn all the same.
    """
    params = network.draw_params(key, program, 1.0, bias_std, prefix, probe.conditional_batch)
    x = network.inputs(key, program, probe.batch)
    readout = draw_readout(key, probe, program.last_width, prefix.readout_scale)
    return scaled_copies.stats(program, probe, prefix.depth, params, x, readout, gains)


@functools.cache
def make_kernel(program: Program, probe: Probe, micro_batch: int):
    """The compiled kernel for one program: many networks, of any of its depths, in one call.

    Networks are ``vmap``-ed in micro-batches of a fixed size, and a call runs its
    micro-batches one after another with ``lax.map``. XLA's fusion and vectorisation depend
    on array shapes, so a network's numbers are bit-identical only if it is always computed
    inside the same shape: fixing the micro-batch makes results independent of how many
    networks a call holds, hence of the memory budget and the chunking.

    The networks of one call share their ``Prefix`` (depth and layer scales): it is an
    argument, not part of the compiled program, so every depth and fan mode of the program
    runs without compiling again, and layers beyond the call's depth are skipped, not run.

    With ``probe.gains_per_draw`` = G > 1 (common random numbers), every run of G
    consecutive networks is one draw (``draw_stats``, or ``scaled_copy_stats`` where
    that applies): its key is that of the run's first network, its bias std that of the first
    network, and each network keeps its own gain.

    Args:
      program: the program.
      probe: what to measure.
      micro_batch: networks ``vmap``-ed together; a multiple of ``probe.gains_per_draw``.

    Returns:
      ``kernel(rng_seed, prefix, indices, gains, bias_stds) -> NetworkStats`` where ``prefix``
      is a ``Prefix`` of arrays, ``indices`` (uint32), ``gains`` and ``bias_stds`` (float32)
      have shape ``(C,)``, C a multiple of ``micro_batch``, and each output has a leading axis
      of size C and per-layer arrays of L_max. Network i is drawn from
      ``streams.network_key(rng_seed, indices[i])`` (with common random numbers, from the key
      of the first network of its draw).
    """
    per_draw = probe.gains_per_draw
    if micro_batch % per_draw:
        raise ValueError(f"micro_batch {micro_batch} is not a multiple of gains_per_draw {per_draw}")

    if per_draw == 1:
        def one(rng_seed, prefix, index, gain, bias_std):
            return network_stats(program, probe, prefix, streams.network_key(rng_seed, index), gain, bias_std)
    else:
        per_draw_stats = scaled_copy_stats if probe.runs_scaled_copies(program) else draw_stats

        def one(rng_seed, prefix, index, gain, bias_std):
            return per_draw_stats(program, probe, prefix, streams.network_key(rng_seed, index[0]), gain, bias_std[0])

    batched = micro_batched(one, (None, None, 0, 0, 0), micro_batch // per_draw)

    def statistics_kernel(rng_seed, prefix, indices, gains, bias_stds):
        if per_draw == 1:
            return batched(rng_seed, prefix, indices, gains, bias_stds)
        size = indices.shape[0]
        draws = lambda a: a.reshape(size // per_draw, per_draw)
        out = batched(rng_seed, prefix, draws(indices), draws(gains), draws(bias_stds))
        return jax.tree.map(lambda a: a.reshape((size,) + a.shape[2:]), out)

    return jax.jit(statistics_kernel)


def architecture_kernel(arch: Architecture, probe: Probe, micro_batch: int):
    """``make_kernel`` for the networks of one architecture, in the program of that one alone.

    Returns:
      ``kernel(rng_seed, indices, gains, bias_stds) -> NetworkStats``, per-layer arrays ``(C, L)``.
    """
    program = arch.program()
    prefix = arch.prefix(program)
    kern = make_kernel(program, probe, micro_batch)
    return lambda rng_seed, *arrays: kern(rng_seed, prefix, *arrays)
