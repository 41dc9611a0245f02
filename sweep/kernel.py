"""The statistics kernel: draw, run forward, backpropagate and reduce, for many networks at once.

For one network the kernel draws its layers (``sweep.network``), runs a batch of inputs forward
with ``lax.scan``, backpropagates each example's loss with a reverse ``lax.scan`` of per-layer
VJPs, and reduces every layer to a few scalars on device. ``make_kernel`` ``vmap``s this over
networks and ``jit``s it once per architecture; only the per-layer scalars leave the device.

Exact scale tracking. Deep networks at large or small gains leave float32's range. The
kernel keeps every array near unit size by dividing it by a power of two, which is exact in
floating point, and carries the exponent alongside:

* Backward, always: the cotangent is linear in the loss gradient, so rescaling it is exact for
  every activation.
* Forward, for positively homogeneous activations (relu, leaky relu, linear), where
  φ(2^k z) = 2^k φ(z). Biases are divided by the running scale, so z_l = 2^E z̃_l exactly.

Statistics come out as float32 mantissas and int32 exponents; ``finish`` combines them in
float64 on the host. For other activations a forward value can still overflow; the layers
where that happens are marked in ``overflow`` and no other network is touched, since
networks never mix.

Cost. On a CPU the random weights cost more than the GEMMs that use them (threefry gives tens
of millions of normals per second against ~100 GFLOP/s). With common random numbers
(``Probe.gains_per_draw`` > 1, ``draw_stats``) the networks of one draw that differ only in
gain share their draws, which are made once, and every layer runs as one GEMM over all their
rows. The weight gradient's mean square comes from two batch × batch Gram matrices when that
is cheaper than the n_in × n_out gradient (``grad_weight_meansq``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep import network
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
      gains_per_draw: networks that share one draw of random numbers (weights, biases,
        inputs, readout and targets) and differ only in their gain: 1 for independent draws,
        the number of gains for common random numbers across gains.
    """

    batch: int
    loss: str
    outputs: int
    precision: str
    jacobian: bool
    gains_per_draw: int = 1

    @property
    def lax_precision(self):
        return jax.lax.Precision.HIGHEST if self.precision == "highest" else jax.lax.Precision.DEFAULT


# Beyond this, x · 2^k is 0 or infinite for every finite float32 x (2^-149 <= |x| < 2^128).
_MAX_SHIFT = 280


def _pow2(k: jax.Array) -> jax.Array:
    """2^k as float32, exactly, for integer ``k`` in [-126, 127] (built from its bits)."""
    return jax.lax.bitcast_convert_type((k + 127) << 23, jnp.float32)


def _ldexp(a: jax.Array, k: jax.Array) -> jax.Array:
    """``a · 2^k`` for an int32 scalar ``k``, as ``jnp.ldexp`` but far cheaper.

    ``jnp.ldexp`` splits every element into mantissa and exponent and raises 2 to a
    per-element power; here ``k`` is one scalar, so three multiplications by normal powers of
    two (each |step| <= 94) do the same: each is exact while the result is a normal number,
    and XLA flushes subnormal results to zero in both.
    """
    k = jnp.clip(k, -_MAX_SHIFT, _MAX_SHIFT).astype(jnp.int32)
    k1 = k // 3
    k2 = (k - k1) // 2
    return a * _pow2(k1) * _pow2(k2) * _pow2(k - k1 - k2)


def _normalise(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Divides ``a`` by the power of two 2^k nearest its RMS, exactly.

    Returns:
      ``(a / 2^k, k)`` with ``k`` an int32 scalar; ``k = 0`` when the RMS is 0 or not finite.
    """
    rms = jnp.sqrt(jnp.mean(jnp.square(a)))
    _, k = jnp.frexp(rms)
    k = jnp.where(jnp.isfinite(rms) & (rms > 0), k, 0).astype(jnp.int32)
    k = jax.lax.stop_gradient(k)
    return _ldexp(a, -k), k


def _moments(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    mean = jnp.mean(a)
    return mean, jnp.mean(jnp.square(a)), jnp.mean(jnp.square(a - mean))


def _gemm(h: jax.Array, w: jax.Array, precision, gains, transpose: bool = False) -> jax.Array:
    """``h @ w`` (or ``h @ wᵀ``) for one network, or for the gains of one draw at once.

    Args:
      h: ``(batch, n)``, or ``(G, batch, n)`` when ``gains`` is given.
      w: the weights, ``(n, m)`` (``(m, n)`` with ``transpose``); with ``gains``, the unit
        weights that every gain shares.
      precision: ``lax.Precision``.
      gains: ``None``, or ``(G,)``: network g has weights gains[g] · w.
      transpose: contract with w's second axis. Written as one ``dot_general`` rather than
        ``h @ w.T``, which XLA on CPU would lower to a copy of the transposed weights.

    Returns:
      ``(batch, m)`` or ``(G, batch, m)``.
    """
    contract = 1 if transpose else 0
    rows = h.reshape(-1, h.shape[-1])
    # With gains: one GEMM of G·batch rows instead of G small ones; the gains scale the rows.
    out = jax.lax.dot_general(rows, w, (((1,), (contract,)), ((), ())), precision=precision)
    out = out.reshape(h.shape[:-1] + (out.shape[-1],))
    return out if gains is None else gains[:, None, None] * out


def _each(fn, gains, in_axes=0):
    """``fn`` for one network, ``vmap``-ed over the gains of a draw when there are any."""
    return fn if gains is None else jax.vmap(fn, in_axes=in_axes)


def gram_is_cheaper(batch: int, n_in: int, n_out: int) -> bool:
    """Whether ``grad_weight_meansq`` is cheaper from two batch × batch Gram matrices.

    The weight gradient XᵀΔ costs 2·B·n_in·n_out FLOPs, writes n_in·n_out values and
    contracts over the batch, which XLA on CPU runs through a transposed copy; the Gram
    matrices XXᵀ and ΔΔᵀ cost 2·B²·(n_in + n_out) and write 2·B². At equal FLOPs (B = n/2
    for square layers) the Gram path is still the faster one (measured on CPU).
    """
    return batch * (n_in + n_out) <= n_in * n_out


def grad_weight_meansq(h: jax.Array, delta: jax.Array, precision, gram: bool | None = None) -> jax.Array:
    """Mean square of the entries of ∂C/∂W = hᵀδ / B, C the batch-mean loss.

    Args:
      h: the layer's inputs ``(B, n_in)``.
      delta: ∂ℓ_b/∂z, each example's own loss gradient, ``(B, n_out)``.
      precision: ``lax.Precision``.
      gram: ``True``: ‖hᵀδ‖²_F = ⟨hhᵀ, δδᵀ⟩, two B × B Gram matrices; ``False``: the
        n_in × n_out gradient itself; ``None``: whichever is cheaper (``gram_is_cheaper``).

    Returns:
      A float32 scalar.
    """
    batch, n_in = h.shape
    n_out = delta.shape[-1]
    if gram is None:
        gram = gram_is_cheaper(batch, n_in, n_out)
    if not gram:
        dw = jnp.matmul(h.T, delta, precision=precision) / batch
        return jnp.mean(jnp.square(dw))
    hh = jnp.einsum("bi,ci->bc", h, h, precision=precision)
    dd = jnp.einsum("bo,co->bc", delta, delta, precision=precision)
    return jnp.sum(hh * dd) / (float(batch) ** 2 * n_in * n_out)


def _forward(params, arch: Architecture, x: jax.Array, precision, gains=None):
    """Runs a batch forward with exact scale tracking, reducing each layer.

    Args:
      params: from ``network.draw_params``; with ``gains``, drawn at unit gain.
      arch: the architecture.
      x: inputs, ``(batch, n_0)``, or ``(G, batch, n_0)`` with ``gains``.
      precision: ``lax.Precision``.
      gains: ``None`` for one network; or ``(G,)``, the gains of G networks that share the
        unit draws in ``params`` (network g has weights gains[g] · W); every output then has
        a leading axis G.

    Returns:
      ``(x_L, E_L, stats, residuals)``: the scaled last activations ``(batch, n_L)`` with
      x_L(true) = 2^E_L · x_L; ``stats`` a dict of ``(L,)`` arrays (``FORWARD_STATS``
      mantissas plus the exponents ``exp_in`` = E_{l-1} and ``exp_out`` = E_l); and, per
      segment and block position, the stacked ``(x_{l-1}, z_l)`` needed backward (only
      ``(x_{l-1},)`` when ``arch.slope_from_output``: φ' is then taken at x_l).
    """
    phi, homogeneous = arch.phi, arch.homogeneous

    def after_gemm(hw, e, b):
        z = hw + _ldexp(b, -e)
        u = phi(z)
        k = jnp.int32(0)
        if homogeneous:
            u, k = _normalise(u)
        slope = jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
        z_mean, z_meansq, z_var = _moments(z)
        u_mean, u_meansq, u_var = _moments(u)
        dead = jnp.mean(jnp.all(slope == 0, axis=0))
        stats = dict(
            preact_mean=z_mean, preact_meansq=z_meansq, preact_var=z_var,
            act_mean=u_mean, act_meansq=u_meansq, act_var=u_var,
            dead_fraction=dead.astype(z.dtype), exp_in=e, exp_out=e + k,
        )
        return u, e + k, z, stats

    def layer(carry, w, b):
        h, e = carry
        u, e_out, z, stats = _each(after_gemm, gains, (0, 0, None))(_gemm(h, w, precision, gains), e, b)
        # The backward pass takes φ' at z, or at the layer's output, which is the next layer's h.
        return (u, e_out), stats, (h,) if arch.slope_from_output else (h, z)

    def block_step(carry, block):
        outs, res = [], []
        for w, b in block:
            carry, stats, residual = layer(carry, w, b)
            outs.append(stats)
            res.append(residual)
        return carry, (_stack_block(outs), tuple(res))

    carry = (x, jnp.int32(0) if gains is None else jnp.zeros(gains.shape, jnp.int32))
    per_segment, residuals = [], []
    for block in params:
        carry, (stats, res) = network.scan_blocks(block_step, carry, block)
        per_segment.append(stats)
        residuals.append(res)
    x_last, e_last = carry
    return x_last, e_last, _concat_layers(per_segment), tuple(residuals)


def _backward(params, arch: Architecture, residuals, g: jax.Array, x_last: jax.Array, precision, gains=None):
    """Backpropagates the per-example cotangent ``g`` = ∂ℓ/∂x_L (scaled) through the layers.

    Args:
      params: from ``network.draw_params``; with ``gains``, drawn at unit gain.
      arch: the architecture.
      residuals: from ``_forward``.
      g: scaled ∂ℓ/∂x_L, ``(batch, n_L)`` (``(G, batch, n_L)`` with ``gains``), normalised.
      x_last: the scaled last activations from ``_forward``, of ``g``'s shape.
      precision: ``lax.Precision``.
      gains: as for ``_forward``.

    Returns:
      A dict of ``(L,)`` arrays (``(G, L)`` with ``gains``): ``BACKWARD_STATS`` mantissas (of
      the scaled quantities) and ``exp_grad`` = F_l with ∂ℓ/∂x_l(true) = 2^F_l · (scaled),
      F_L = 0 here.
    """
    phi = arch.phi

    def before_gemm(g, h, z):
        delta = jax.vjp(phi, z)[1](g)[0]  # z, or the layer's scaled output: the same φ' (see _forward)
        stats = dict(
            grad_act_meansq=jnp.mean(jnp.square(g)),
            grad_preact_meansq=jnp.mean(jnp.square(delta)),
            grad_weight_meansq=grad_weight_meansq(h, delta, precision),
        )
        return delta, stats

    def layer(carry, w, residual):
        g, f, output = carry
        h, z = (residual[0], output) if arch.slope_from_output else residual
        delta, stats = _each(before_gemm, gains)(g, h, z)
        stats["exp_grad"] = f
        g_prev, m = _each(_normalise, gains)(_gemm(delta, w, precision, gains, transpose=True))
        return (g_prev, f + m, h if arch.slope_from_output else None), stats

    def block_step(carry, xs):
        block, res = xs
        outs = []
        for (w, _), residual in reversed(tuple(zip(block, res))):
            carry, stats = layer(carry, w, residual)
            outs.append(stats)
        return carry, _stack_block(outs[::-1])

    carry = (g, jnp.int32(0) if gains is None else jnp.zeros(gains.shape, jnp.int32),
             x_last if arch.slope_from_output else None)
    per_segment = []
    for block, res in reversed(tuple(zip(params, residuals))):
        carry, stats = network.scan_blocks(block_step, carry, (block, res), reverse=True)
        per_segment.append(stats)
    return _concat_layers(per_segment[::-1])


def _stack_block(outs: list[dict]) -> dict:
    return {k: jnp.stack([o[k] for o in outs]) for k in outs[0]}


def _concat_layers(per_segment: list[dict]) -> dict:
    """Scan outputs of shape (repeats, period, ...) per segment -> one (..., L) array per key."""
    return {
        k: jnp.moveaxis(jnp.concatenate([s[k].reshape((-1,) + s[k].shape[2:]) for s in per_segment]), 0, -1)
        for k in per_segment[0]
    }


def _loss_and_cotangent(x_last, e_last, key, probe: Probe):
    """The per-example loss at the scaled output, and its gradient, with exponents.

    Returns:
      ``(loss_mantissa, loss_exp, g, g_exp)``: the batch-mean loss is loss_mantissa ·
      2^loss_exp and ∂ℓ_b/∂x_L = 2^g_exp · g[b].
    """
    n_last = x_last.shape[-1]
    readout_key = jax.random.fold_in(key, network.READOUT_STREAM)
    if probe.loss == "mse":
        readout = jax.random.normal(readout_key, (n_last, probe.outputs)) / np.sqrt(n_last)
        target = jax.random.normal(jax.random.fold_in(key, network.TARGET_STREAM), (probe.batch, probe.outputs))
        # The residual 2^E·(x R) − y is held as 2^s·(...) with s = max(E, 0): both terms then
        # carry non-positive exponents, so neither overflows whether the output is huge or tiny.
        s = jnp.maximum(e_last, 0)
        prediction = jnp.matmul(x_last, readout, precision=probe.lax_precision)
        residual = _ldexp(prediction, e_last - s) - _ldexp(target, -s)
        loss = jnp.mean(0.5 * jnp.sum(jnp.square(residual), axis=-1))
        g = jnp.matmul(residual, readout.T, precision=probe.lax_precision)
        return loss, 2 * s, g, s
    projection = jax.random.normal(readout_key, (n_last,)) / np.sqrt(n_last)
    loss = jnp.mean(x_last @ projection)
    return loss, e_last, jnp.broadcast_to(projection, x_last.shape), jnp.int32(0)


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
      ``probe.jacobian`` also ``jacobian_sv`` ``(min(n_0, n_L),)`` and ``exp_jacobian``.
    """
    precision = probe.lax_precision
    params = network.draw_params(key, arch, gain, bias_std)
    x = jax.random.normal(jax.random.fold_in(key, network.INPUT_STREAM), (probe.batch, arch.widths[0]))
    x_last, e_last, out, residuals = _forward(params, arch, x, precision)
    loss, exp_loss, g, exp_g = _loss_and_cotangent(x_last, e_last, key, probe)
    g, m = _normalise(g)
    back = _backward(params, arch, residuals, g, x_last, precision)
    out.update(back)
    out["exp_grad"] = out["exp_grad"] + exp_g + m
    out["loss"], out["exp_loss"] = loss, exp_loss
    if probe.jacobian:
        def last_layer(x0):
            x_l, e_l, _, _ = _forward(params, arch, x0[None], precision)
            return x_l[0], e_l

        jac, e_jac = jax.jacfwd(last_layer, has_aux=True)(x[0])
        out["jacobian_sv"] = jnp.linalg.svd(jac, compute_uv=False)
        out["exp_jacobian"] = e_jac
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
    x_last, e_last, out, residuals = _forward(params, arch, xs, precision, gains)
    loss, exp_loss, g, exp_g = jax.vmap(_loss_and_cotangent, in_axes=(0, 0, None, None))(x_last, e_last, key, probe)
    g, m = jax.vmap(_normalise)(g)
    back = _backward(params, arch, residuals, g, x_last, precision, gains)
    out.update(back)
    out["exp_grad"] = out["exp_grad"] + (exp_g + m)[:, None]
    out["loss"], out["exp_loss"] = loss, exp_loss
    if probe.jacobian:
        def jacobian(gain):
            scaled = tuple(tuple((gain * w, b) for w, b in block) for block in params)

            def last_layer(x0):
                x_l, e_l, _, _ = _forward(scaled, arch, x0[None], precision)
                return x_l[0], e_l

            jac, e_jac = jax.jacfwd(last_layer, has_aux=True)(x[0])
            return jnp.linalg.svd(jac, compute_uv=False), e_jac

        out["jacobian_sv"], out["exp_jacobian"] = jax.vmap(jacobian)(gains)
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
    consecutive networks is one draw (``draw_stats``): its key is that of the run's first
    network, its bias std that of the first network, and each network keeps its own gain.

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
        def one(rng_seed, index, gain, bias_std):
            return draw_stats(arch, probe, network.network_key(rng_seed, index[0]), gain, bias_std[0])

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
        if "jacobian_sv" in raw:
            out["jacobian_singular_values"] = np.ldexp(
                raw["jacobian_sv"].astype(np.float64), raw["exp_jacobian"].astype(np.int64)[:, None]
            )
    return out
