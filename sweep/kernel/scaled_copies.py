"""The gains of one draw as scaled copies of one network: homogeneous activations, no biases.

With common random numbers, network g of a draw has weights γ_g · W. When the activation is
positively homogeneous (φ(cz) = c φ(z) for c > 0: relu, leaky relu, linear), the biases are
zero and γ > 0, every layer of that network is the unit-gain network's, scaled:

    z_l(γ) = γ^l z_l(1),    x_l(γ) = γ^l x_l(1),    φ'(z_l(γ)) = φ'(z_l(1)).

So the forward pass runs once per draw, at unit gain. The backward pass is linear in the
output cotangent, and every gain's cotangent is a combination of K fixed ones:

* ``"mse"``: ∂ℓ/∂x_L(γ) = γ^L x_L(1) R Rᵀ − y Rᵀ, two streams;
* ``"projection"``: ∂ℓ/∂x_L = p for every gain, one stream.

Only the K streams are backpropagated. At layer l the cotangent of gain γ is
γ^{L-l} Σ_k c_k(γ) s_{k,l}, so its mean square is γ^{2(L-l)} cᵀ M_l c, with M_l the K × K
mean products of the streams (``passes.backward_streams``); likewise at z_l, and for the weight
gradient with the input x_{l-1}(γ) = γ^{l-1} x_{l-1}(1). A draw of G networks costs one
forward and K backward passes instead of G of each.

Rounding. Powers of γ are split into a power of two, exact, and a factor in [1, 2). The
quadratic form cᵀMc subtracts when the two mse streams point against each other: its
relative rounding error is at most about u / (1 - |ρ|), u float32's unit roundoff and ρ the
cosine between the two streams at that layer, which is near 0 for targets drawn
independently of the network. The statistics otherwise equal those of the per-gain passes
up to float32 rounding (tested against plain autodiff).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sweep.kernel import passes
from sweep.kernel.passes import Readout, StreamProducts
from sweep.kernel.results import BackwardStats, ForwardStats, NetworkStats
from sweep.kernel.scale import Scaled, ldexp, normalise
from sweep.model import network
from sweep.model.network import Program


def _split(t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``2^t = 2^k · r`` with ``k`` an int32 and ``r`` in [1, 2)."""
    k = jnp.floor(t)
    return k.astype(jnp.int32), jnp.exp2(t - k)


def _streams(prediction: jax.Array, e_last: jax.Array, readout: Readout, probe, depth: jax.Array):
    """The output cotangent of every gain as a combination of fixed, normalised streams.

    Args:
      prediction: the unit-gain network's scaled readout x_L R (mse), ``(batch, outputs)``,
        or x_L p (projection); x_L is 2^e_last times the scaled one.
      e_last: an int32 scalar.
      readout: R ``(n_L, outputs)`` and y ``(batch, outputs)``, or p ``(n_L,)``.
      probe: what is measured.
      depth: L, an int32 scalar.

    Returns:
      ``(streams, exponents, signs, powers)``: ``streams`` ``(K, batch, n_L)``; the cotangent
      of gain γ is Σ_k signs[k] · 2^exponents[k] · γ^powers[k] · streams[k], with
      ``exponents`` and ``powers`` ``(K,)`` int32 and ``signs`` a tuple of Python ints.
    """
    hi = probe.lax_precision
    if readout.targets is not None:
        output_part = jnp.matmul(prediction, readout.weights.T, precision=hi)
        target_part = jnp.matmul(readout.targets, readout.weights.T, precision=hi)
        (a, ka), (b, kb) = normalise(output_part), normalise(target_part)
        return jnp.stack([a, b]), jnp.stack([e_last + ka, kb]), (1, -1), jnp.stack([depth, jnp.zeros_like(depth)])
    p, kp = normalise(jnp.broadcast_to(readout.weights, prediction.shape + readout.weights.shape))
    return p[None], kp[None], (1,), jnp.zeros(1, jnp.int32)


def _quadratic_forms(back: StreamProducts, exponents, signs, powers, log2_gain, depth) -> BackwardStats:
    """Each gain's mean squares from the streams' mean products.

    Args:
      back: from ``passes.backward_streams``.
      exponents, signs, powers: the streams' coefficients (``_streams``).
      log2_gain: log2 γ, a scalar.
      depth: L, an int32 scalar.

    Returns:
      ``BackwardStats`` of ``(L_max,)`` arrays (those beyond L meaningless); the weight gradient's form is still to be divided
      by the input's scale (``stats``).
    """
    layers = jnp.arange(1, back.exp_grad.shape[-1] + 1)
    # Stream k at x_l, in true units: sign_k · 2^(exponent_k + exp_grad[k, l]) · γ^(power_k + L - l).
    power = powers[:, None] + depth - layers  # (K, L_max)
    power_exponent, power_factor = _split(power.astype(log2_gain.dtype) * log2_gain)
    whole = exponents[:, None] + back.exp_grad + power_exponent
    top = jnp.max(whole, axis=0)
    weights = jnp.asarray(signs, jnp.float32)[:, None] * ldexp(power_factor, whole - top)  # (K, L), |w| < 2
    form = lambda products: jnp.sum(weights[:, None] * products * weights[None, :], axis=(0, 1))
    return BackwardStats(form(back.grad_act), form(back.grad_preact), form(back.grad_weight), top)


def stats(program: Program, probe, depth: jax.Array, params, x: jax.Array, readout: Readout,
          gains: jax.Array) -> NetworkStats:
    """All statistics of the G networks of one draw, from one network at unit gain.

    The contract is ``sweep.kernel.stats.draw_stats``'s, for a draw whose networks are scaled
    copies (``Probe.runs_scaled_copies``): no biases and positive gains.

    Args:
      program: the program, positively homogeneous.
      probe: what to measure.
      depth: the draw's depth L in the program, an int32 scalar.
      params: the draw's unit-gain parameters, without biases (``network.draw_params``).
      x: the draw's inputs ``(batch, n_0)``.
      readout: the draw's readout.
      gains: ``(G,)``, positive.

    Returns:
      ``NetworkStats``, each array with a leading axis G.
    """
    precision = probe.lax_precision
    fwd = passes.forward(params, program, x, precision, depth=depth)
    x_last, e_last = fwd.x_last
    prediction = jnp.matmul(network.pooled(x_last), readout.weights, precision=precision)
    streams, exponents, signs, powers = _streams(prediction, e_last, readout, probe, depth)
    streams = passes.unpooled(streams, x_last.shape)
    back = passes.backward_streams(params, program, fwd.residuals, streams, x_last, precision, depth)
    jacobian = None
    if probe.jacobian:
        jacobian = passes.jacobian(params, program, x[0], precision, not probe.jacobian_on_host, depth)

    def one_gain(gain):
        log2_gain = jnp.log2(gain)
        # γ^l = 2^k_l · r_l: layer l's input, pre-activation and output all scale by it
        # (the input x_{l-1} by γ^(l-1) = 2^k_l · r_l / γ).
        k, r = _split(jnp.arange(1, program.depth + 1, dtype=log2_gain.dtype) * log2_gain)
        k_last, r_last = k[depth - 1], r[depth - 1]
        f = fwd.stats
        scaled_fwd = ForwardStats(
            f.preact_mean * r, f.preact_meansq * r * r, f.preact_var * r * r,
            f.act_mean * r, f.act_meansq * r * r, f.act_var * r * r,
            f.dead_fraction, f.exp_in + k, f.exp_out + k)
        forms = _quadratic_forms(back, exponents, signs, powers, log2_gain, depth)
        forms = forms._replace(grad_weight_meansq=forms.grad_weight_meansq * jnp.square(r / gain))
        loss, _ = passes.loss_of_prediction(prediction * r_last, e_last + k_last, readout.targets)
        # The Jacobian and its singular values scale like x_L: by γ^L = 2^k_L · r_L.
        scaled_jacobian = None if jacobian is None else Scaled(jacobian.mantissa * r_last, jacobian.exponent + k_last)
        return NetworkStats(scaled_fwd, forms, loss, scaled_jacobian)

    return jax.vmap(one_gain)(gains)
