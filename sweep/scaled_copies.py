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

from sweep import network, passes
from sweep.network import Architecture


def applies(arch: Architecture, probe) -> bool:
    """Whether the networks of a draw are scaled copies, and ``draw_stats`` here is used.

    Args:
      arch: the architecture.
      probe: a ``kernel.Probe``; its ``scaled_copies`` says that the sweep has no biases
        and only positive gains, and asks for scaled copies.
    """
    return probe.gains_per_draw > 1 and probe.scaled_copies and arch.homogeneous


def _split(t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``2^t = 2^k · r`` with ``k`` an int32 and ``r`` in [1, 2)."""
    k = jnp.floor(t)
    return k.astype(jnp.int32), jnp.exp2(t - k)


def _streams(prediction: jax.Array, e_last: jax.Array, readout: jax.Array, target, probe, depth: int):
    """The output cotangent of every gain as a combination of fixed, normalised streams.

    Args:
      prediction: the unit-gain network's scaled readout x_L R (mse), ``(batch, outputs)``,
        or x_L p (projection); x_L is 2^e_last times the scaled one.
      e_last: an int32 scalar.
      readout: R ``(n_L, outputs)`` or p ``(n_L,)``.
      target: y ``(batch, outputs)``, or ``None`` for the projection.
      probe: what is measured.
      depth: L.

    Returns:
      ``(streams, exponents, signs, powers)``: ``streams`` ``(K, batch, n_L)``; the cotangent
      of gain γ is Σ_k signs[k] · 2^exponents[k] · γ^powers[k] · streams[k], with
      ``exponents`` ``(K,)`` int32 and ``signs``, ``powers`` tuples of Python ints.
    """
    hi = probe.lax_precision
    if target is not None:
        output_part = jnp.matmul(prediction, readout.T, precision=hi)
        target_part = jnp.matmul(target, readout.T, precision=hi)
        (a, ka), (b, kb) = passes.normalise(output_part), passes.normalise(target_part)
        return jnp.stack([a, b]), jnp.stack([e_last + ka, kb]), (1, -1), (depth, 0)
    p, kp = passes.normalise(jnp.broadcast_to(readout, prediction.shape + readout.shape))
    return p[None], kp[None], (1,), (0,)


def _quadratic_forms(back: dict, exponents, signs, powers, log2_gain, depth: int):
    """Each gain's mean squares from the streams' mean products.

    Args:
      back: from ``passes.backward_streams``: ``(K, K, L)`` products and ``exp_grad`` ``(K, L)``.
      exponents, signs, powers: the streams' coefficients (``_streams``).
      log2_gain: log2 γ, a scalar.
      depth: L.

    Returns:
      ``(forms, exp_grad)``: ``forms`` maps each product name to ``(L,)`` mantissas and
      ``exp_grad`` ``(L,)`` is F with mean square = mantissa · 2^{2F}.
    """
    layers = jnp.arange(1, depth + 1)
    # Stream k at x_l, in true units: sign_k · 2^(exponent_k + exp_grad[k, l]) · γ^(power_k + L - l).
    power = jnp.asarray(powers)[:, None] + depth - layers  # (K, L)
    power_exponent, power_factor = _split(power * log2_gain)
    whole = exponents[:, None] + back["exp_grad"] + power_exponent
    top = jnp.max(whole, axis=0)
    weights = jnp.asarray(signs, jnp.float32)[:, None] * passes.ldexp(power_factor, whole - top)  # (K, L), |w| < 2
    forms = {name: jnp.sum(weights[:, None] * back[name] * weights[None, :], axis=(0, 1))
             for name in ("grad_act", "grad_preact", "grad_weight")}
    return forms, top


def draw_stats(arch: Architecture, probe, key: jax.Array, gains: jax.Array, bias_std) -> dict:
    """All statistics of the G networks of one draw, from one network at unit gain.

    The contract is ``kernel.draw_stats``'s, for a draw whose networks are scaled copies
    (``applies``): ``bias_std`` is 0 and every gain is positive.

    Args:
      arch: the architecture, positively homogeneous.
      probe: what to measure.
      key: the draw's key.
      gains: ``(G,)``, positive.
      bias_std: a scalar, 0 (the draw's biases are its multiple of zero).

    Returns:
      The dict of ``kernel.network_stats``, each array with a leading axis G.
    """
    precision = probe.lax_precision
    depth = arch.depth
    params = network.draw_params(key, arch, 1.0, bias_std)
    x = jax.random.normal(jax.random.fold_in(key, network.INPUT_STREAM), (probe.batch, arch.widths[0]))
    x_last, e_last, fwd, residuals = passes.forward(params, arch, x, precision)
    readout, target = passes.draw_readout(key, probe, arch.widths[-1])
    prediction = jnp.matmul(x_last, readout, precision=precision)
    streams, exponents, signs, powers = _streams(prediction, e_last, readout, target, probe, depth)
    back = passes.backward_streams(params, arch, residuals, streams, x_last, precision)
    jacobian = passes.jacobian(params, arch, x[0], precision, not probe.jacobian_on_host) if probe.jacobian else None

    def one_gain(gain):
        log2_gain = jnp.log2(gain)
        # γ^l = 2^k_l · r_l: layer l's input, pre-activation and output all scale by it
        # (the input x_{l-1} by γ^(l-1) = 2^k_l · r_l / γ).
        k, r = _split(jnp.arange(1, depth + 1) * log2_gain)
        out = {"exp_in": fwd["exp_in"] + k, "exp_out": fwd["exp_out"] + k, "dead_fraction": fwd["dead_fraction"]}
        for side in ("preact", "act"):
            out[f"{side}_mean"] = fwd[f"{side}_mean"] * r
            for moment in ("meansq", "var"):
                out[f"{side}_{moment}"] = fwd[f"{side}_{moment}"] * r * r
        forms, out["exp_grad"] = _quadratic_forms(back, exponents, signs, powers, log2_gain, depth)
        out["grad_act_meansq"] = forms["grad_act"]
        out["grad_preact_meansq"] = forms["grad_preact"]
        out["grad_weight_meansq"] = forms["grad_weight"] * jnp.square(r / gain)
        out["loss"], out["exp_loss"], _, _ = passes.loss_of_prediction(prediction * r[-1], e_last + k[-1], target)
        if jacobian is not None:
            # The Jacobian and its singular values scale like x_L: by γ^L = 2^k_L · r_L.
            out[probe.jacobian_key], out["exp_jacobian"] = jacobian[0] * r[-1], jacobian[1] + k[-1]
        return out

    return jax.vmap(one_gain)(gains)
