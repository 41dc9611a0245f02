"""The statistics kernel: draw, run forward, backpropagate and reduce, for many networks at once.

For one network the kernel draws its layers (``sweep.network``), runs a batch of inputs forward
with ``lax.scan``, backpropagates each example's loss with a reverse ``lax.scan`` of per-layer
VJPs, and reduces every layer to a few scalars on device. ``make_kernel`` ``vmap``s this over
networks and ``jit``s it once per architecture; only the per-layer scalars leave the device.

Scale tracking and the passes themselves are in ``sweep.passes``: statistics come out as
float32 mantissas and int32 exponents, which ``finish`` combines in float64 on the host. The
layers where a statistic is not finite are marked in ``overflow``; no other network is
touched, since networks never mix.

Cost. On a CPU the random weights cost more than the GEMMs that use them (threefry gives tens
of millions of normals per second against ~100 GFLOP/s). With common random numbers
(``Probe.gains_per_draw`` > 1, ``draw_stats``) the networks of one draw that differ only in
gain share their draws, which are made once, and every layer runs as one GEMM over all their
rows. Where those networks are scaled copies of one another (positively homogeneous
activation, no biases), one network is run and rescaled instead (``sweep.scaled_copies``).
The weight gradient's mean square comes from two batch × batch Gram matrices when that is
cheaper than the n_in × n_out gradient (``passes.grad_weight_meansq``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep import network, passes, scaled_copies
from sweep.batching import micro_batched
from sweep.network import Architecture

FORWARD_STATS = ("preact_mean", "preact_meansq", "preact_var", "act_mean", "act_meansq", "act_var", "dead_fraction")
BACKWARD_STATS = ("grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq")
LAYER_STATS = FORWARD_STATS + BACKWARD_STATS


class Probe(NamedTuple):
    """What is measured, besides the network itself: static, part of the compile key.

    Attributes:
      batch: inputs per network.
      loss: ``"mse"`` or ``"projection"``.
      outputs: readout dimension of ``"mse"``.
      precision: ``"highest"`` or ``"default"``.
      jacobian: also compute the input-output Jacobian's singular values.
      jacobian_on_host: with ``jacobian``, the kernel returns the Jacobian and ``finish``
        takes its singular values on the host (for CPUs, where jaxlib's SVD inside a program
        can deadlock XLA's thread pool; see ``sweep.linalg``); else the kernel returns them.
      gains_per_draw: networks that share one draw of random numbers (weights, biases,
        inputs, readout and targets) and differ only in their gain: 1 for independent draws,
        the number of gains for common random numbers across gains.
      scaled_copies: every bias std is 0, every gain positive, and the spec asks for scaled
        copies: with common random numbers and a positively homogeneous activation, the
        networks of a draw are then run as scaled copies of one (``sweep.scaled_copies``).
    """

    batch: int
    loss: str
    outputs: int
    precision: str
    jacobian: bool
    gains_per_draw: int = 1
    scaled_copies: bool = False
    jacobian_on_host: bool = False

    @property
    def jacobian_key(self) -> str:
        """The kernel's output name of the Jacobian: the matrix, or its singular values."""
        return "jacobian" if self.jacobian_on_host else "jacobian_sv"

    @property
    def lax_precision(self):
        return jax.lax.Precision.HIGHEST if self.precision == "highest" else jax.lax.Precision.DEFAULT



def network_stats(arch: Architecture, probe: Probe, key: jax.Array, gain, bias_std) -> dict:
    """All statistics of one network, as mantissas and exponents (see ``finish``).

    Args:
      arch: the architecture.
      probe: what to measure.
      key: the network's key.
      gain, bias_std: scalars.

    Returns:
      A dict of arrays: per layer ``(L,)`` the ``LAYER_STATS`` mantissas and the exponents
      ``exp_in``, ``exp_out``, ``exp_grad``; per network ``loss`` and ``exp_loss``; with
      ``probe.jacobian`` also ``exp_jacobian`` and ``jacobian_sv`` ``(min(n_0, n_L),)`` or, with
      ``probe.jacobian_on_host``, ``jacobian`` ``(n_L, n_0)``.
    """
    precision = probe.lax_precision
    params = network.draw_params(key, arch, gain, bias_std)
    x = jax.random.normal(jax.random.fold_in(key, network.INPUT_STREAM), (probe.batch, arch.widths[0]))
    x_last, e_last, out, residuals = passes.forward(params, arch, x, precision)
    loss, exp_loss, g, exp_g = passes.loss_and_cotangent(x_last, e_last, key, probe)
    g, m = passes.normalise(g)
    back = passes.backward(params, arch, residuals, g, x_last, precision)
    out.update(back)
    out["exp_grad"] = out["exp_grad"] + exp_g + m
    out["loss"], out["exp_loss"] = loss, exp_loss
    if probe.jacobian:
        out[probe.jacobian_key], out["exp_jacobian"] = passes.jacobian(
            params, arch, x[0], precision, not probe.jacobian_on_host)
    return out



def draw_stats(arch: Architecture, probe: Probe, key: jax.Array, gains: jax.Array, bias_std) -> dict:
    """All statistics of the G networks of one draw: common random numbers across gains.

    The networks share every random number: unit weights W and biases drawn from ``key`` as
    ``network.draw_params(key, arch, 1, bias_std)``, the inputs, the readout and the targets;
    network g has weights gains[g] · W. The random numbers are drawn once instead of G times,
    and every layer runs as one GEMM of G · batch rows. Each network is the one that
    ``network_stats(arch, probe, key, gains[g], bias_std)`` measures, computed with a
    different rounding order (the gain scales h W instead of W).

    Args:
      arch: the architecture.
      probe: what to measure.
      key: the draw's key.
      gains: ``(G,)``.
      bias_std: a scalar.

    Returns:
      The dict of ``network_stats``, each array with a leading axis G.
    """
    precision = probe.lax_precision
    params = network.draw_params(key, arch, 1.0, bias_std)
    x = jax.random.normal(jax.random.fold_in(key, network.INPUT_STREAM), (probe.batch, arch.widths[0]))
    xs = jnp.broadcast_to(x, gains.shape + x.shape)
    x_last, e_last, out, residuals = passes.forward(params, arch, xs, precision, gains)
    loss, exp_loss, g, exp_g = jax.vmap(passes.loss_and_cotangent, in_axes=(0, 0, None, None))(x_last, e_last, key, probe)
    g, m = jax.vmap(passes.normalise)(g)
    back = passes.backward(params, arch, residuals, g, x_last, precision, gains)
    out.update(back)
    out["exp_grad"] = out["exp_grad"] + (exp_g + m)[:, None]
    out["loss"], out["exp_loss"] = loss, exp_loss
    if probe.jacobian:
        def jacobian(gain):
            scaled = tuple(tuple((gain * w, b) for w, b in block) for block in params)
            return passes.jacobian(scaled, arch, x[0], precision, not probe.jacobian_on_host)

        out[probe.jacobian_key], out["exp_jacobian"] = jax.vmap(jacobian)(gains)
    return out


@functools.cache
def make_kernel(arch: Architecture, probe: Probe, micro_batch: int):
    """The compiled kernel for one architecture: many networks in one call.

    Networks are ``vmap``-ed in micro-batches of a fixed size, and a call runs its
    micro-batches one after another with ``lax.map``. XLA's fusion and vectorisation depend
    on array shapes, so a network's numbers are bit-identical only if it is always computed
    inside the same shape: fixing the micro-batch makes results independent of how many
    networks a call holds, hence of the memory budget and the chunking.

    With ``probe.gains_per_draw`` = G > 1 (common random numbers), every run of G
    consecutive networks is one draw (``draw_stats``, or ``scaled_copies.draw_stats`` where
    that applies): its key is that of the run's first network, its bias std that of the first
    network, and each network keeps its own gain.

    Args:
      arch: the architecture.
      probe: what to measure.
      micro_batch: networks ``vmap``-ed together; a multiple of ``probe.gains_per_draw``.

    Returns:
      ``kernel(rng_seed, indices, gains, bias_stds) -> dict`` where ``indices`` (uint32),
      ``gains`` and ``bias_stds`` (float32) have shape ``(C,)``, C a multiple of
      ``micro_batch``, and each output has a leading axis of size C. Network i is drawn
      from ``network_key(rng_seed, indices[i])`` (with common random numbers, from the key
      of the first network of its draw).
    """
    per_draw = probe.gains_per_draw
    if micro_batch % per_draw:
        raise ValueError(f"micro_batch {micro_batch} is not a multiple of gains_per_draw {per_draw}")

    if per_draw == 1:
        def one(rng_seed, index, gain, bias_std):
            return network_stats(arch, probe, network.network_key(rng_seed, index), gain, bias_std)
    else:
        per_draw_stats = scaled_copies.draw_stats if scaled_copies.applies(arch, probe) else draw_stats

        def one(rng_seed, index, gain, bias_std):
            return per_draw_stats(arch, probe, network.network_key(rng_seed, index[0]), gain, bias_std[0])

    batched = micro_batched(one, (None, 0, 0, 0), micro_batch // per_draw)
    if per_draw == 1:
        return jax.jit(batched)

    def run(rng_seed, indices, gains, bias_stds):
        size = indices.shape[0]
        draws = lambda a: a.reshape(size // per_draw, per_draw)
        out = batched(rng_seed, draws(indices), draws(gains), draws(bias_stds))
        return jax.tree.map(lambda a: a.reshape((size,) + a.shape[2:]), out)

    return jax.jit(run)


def finish(raw: dict) -> dict[str, np.ndarray]:
    """Combines the kernel's mantissas and exponents into float64 statistics on the host.

    Args:
      raw: the kernel's output, arrays with leading network axis ``(C, ...)``.

    Returns:
      ``LAYER_STATS`` as ``(C, L)`` float64, ``overflow`` ``(C, L)`` bool (a statistic of
      that layer is not finite: float32, or float64 after rescaling, was exceeded), ``loss``
      ``(C,)`` and, if measured, ``jacobian_singular_values`` ``(C, k)``.
    """
    raw = {k: np.asarray(v) for k, v in raw.items()}
    e_in, e_out, f = (raw[k].astype(np.int64) for k in ("exp_in", "exp_out", "exp_grad"))
    exponents = {
        "preact_mean": e_in, "preact_meansq": 2 * e_in, "preact_var": 2 * e_in,
        "act_mean": e_out, "act_meansq": 2 * e_out, "act_var": 2 * e_out,
        "dead_fraction": np.zeros_like(e_in),
        "grad_act_meansq": 2 * f, "grad_preact_meansq": 2 * f, "grad_weight_meansq": 2 * (e_in + f),
    }
    with np.errstate(over="ignore", invalid="ignore"):
        out = {k: np.ldexp(raw[k].astype(np.float64), exponents[k]) for k in LAYER_STATS}
        out["overflow"] = ~np.all([np.isfinite(out[k]) for k in LAYER_STATS], axis=0)
        out["loss"] = np.ldexp(raw["loss"].astype(np.float64), raw["exp_loss"].astype(np.int64))
        if "jacobian" in raw:
            raw["jacobian_sv"] = passes.jacobian_singular_values(raw["jacobian"])
        if "jacobian_sv" in raw:
            out["jacobian_singular_values"] = np.ldexp(
                raw["jacobian_sv"].astype(np.float64), raw["exp_jacobian"].astype(np.int64)[:, None]
            )
    return out
