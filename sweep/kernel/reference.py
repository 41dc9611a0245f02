"""The kernel's statistics by plain float32 autodiff, one network at a time: the reference it is checked against.

No scale tracking, no fused backward, no Gram matrices: the network of ``sweep.model`` run
forward with ``jnp.matmul`` (or ``lax.conv_general_dilated`` on circularly padded images),
and its gradients from ``jax.grad`` with zero probes added to
every pre-activation and activation. Used by the tests and by ``scripts/accelerator_check.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sweep.model import network, streams


def circular_conv(h: jax.Array, w: jax.Array, precision) -> jax.Array:
    """XLA's convolution of ``h`` ``(N, *spatial, c_in)``, padded around ("wrap"), with ``w`` ``(*taps, c_in, c_out)``."""
    d = w.ndim - 2
    pad = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in w.shape[:d]] + [(0, 0)]
    letters = "HW"[:d]
    return jax.lax.conv_general_dilated(jnp.pad(h, pad, mode="wrap"), w, (1,) * d, "VALID",
                                        dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
                                        precision=precision)


def plain_statistics(arch, probe, key, gain, bias_std) -> tuple[dict[str, np.ndarray], float]:
    """One network's per-layer statistics and loss, by plain float32 JAX with ``jax.grad``.

    Args:
      arch: the ``network.Architecture``.
      probe: what is measured (batch, loss, outputs).
      key: the network's key.
      gain, bias_std: scalars.

    Returns:
      ``(stats, loss)``: each per-layer statistic as ``(L,)`` float64 (the dead fraction
      aside), and the batch-mean loss.
    """
    if arch.is_residual:
        return _plain_residual_statistics(arch, probe, key, gain, bias_std)
    params = network.draw_params(key, arch, gain, bias_std)
    weights = network.layer_list(params)
    x0 = network.inputs(key, arch, probe.batch)
    n_last = arch.widths[-1]
    hi = jax.lax.Precision.HIGHEST

    def mean_loss(weights, z_probes, x_probes):
        h, zs, xs = x0, [], []
        for (w, b), pz, px in zip(weights, z_probes, x_probes):
            z = (jnp.matmul(h, w, precision=hi) if arch.conv is None else circular_conv(h, w, hi)) + b + pz
            h = arch.phi(z) + px
            zs.append(z)
            xs.append(h)
        if arch.conv is not None:  # global average pooling
            h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
        if probe.loss == "mse":
            readout = streams.readout(key, n_last, probe.outputs)
            target = streams.targets(key, probe.batch, probe.outputs)
            per_example = 0.5 * jnp.sum(jnp.square(jnp.matmul(h, readout, precision=hi) - target), -1)
        else:
            per_example = h @ streams.projection(key, n_last)
        return jnp.mean(per_example), (zs, xs)

    spatial = arch.conv.spatial if arch.conv else ()
    zeros = [jnp.zeros((probe.batch, *spatial, w.shape[-1])) for w, _ in weights]
    grads, (zs, xs) = jax.grad(mean_loss, argnums=(0, 1, 2), has_aux=True)(weights, zeros, zeros)
    loss = mean_loss(weights, zeros, zeros)[0]
    dw, dz, dx = grads
    b = probe.batch  # gradients of the mean loss, times B, are each example's own gradients
    out = {
        "preact_mean": [jnp.mean(z) for z in zs], "preact_meansq": [jnp.mean(z**2) for z in zs],
        "preact_var": [jnp.var(z) for z in zs], "act_mean": [jnp.mean(x) for x in xs],
        "act_meansq": [jnp.mean(x**2) for x in xs], "act_var": [jnp.var(x) for x in xs],
        "grad_preact_meansq": [jnp.mean((g * b) ** 2) for g in dz],
        "grad_act_meansq": [jnp.mean((g * b) ** 2) for g in dx],
        "grad_weight_meansq": [jnp.mean(g[0] ** 2) for g in dw],
    }
    return {k: np.array(v, np.float64) for k, v in out.items()}, float(loss)


def _plain_residual_statistics(arch, probe, key, gain, bias_std):
    """``plain_statistics`` of a residual network: per weight layer ``(L, 2)``, and the stream's ``(L,)``."""
    params = network.draw_params(key, arch, gain, bias_std)
    order = [None] * arch.depth  # blocks by index: segments hold block positions, each stacked over repeats
    for segment, seg in zip(params, network.segments(arch.shapes)):
        period = len(seg.block)
        for j, position in enumerate(segment):
            for r in range(position[0][0].shape[0]):
                order[seg.start + j + period * r] = jax.tree.map(lambda a, r=r: a[r], position)
    x0 = network.inputs(key, arch, probe.batch)
    hi = jax.lax.Precision.HIGHEST
    conv = (lambda h, w: circular_conv(h, w, hi)) if arch.conv else (lambda h, w: jnp.matmul(h, w, precision=hi))
    alpha = arch.residual

    def mean_loss(weights, probes):
        x, record = x0, []
        for ((w1, b1), (w2, b2)), (p1, ph, p2, px) in zip(weights, probes):
            z1 = conv(arch.phi(x), w1) + b1 + p1
            h = arch.phi(z1) + ph
            z2 = conv(h, w2) + b2 + p2
            x = x + alpha * z2 + px
            record.append((z1, h, z2, x))
        pooled = jnp.mean(x, axis=tuple(range(1, x.ndim - 1))) if arch.conv else x
        if probe.loss == "mse":
            readout = streams.readout(key, arch.widths[0], probe.outputs)
            target = streams.targets(key, probe.batch, probe.outputs)
            per_example = 0.5 * jnp.sum(jnp.square(jnp.matmul(pooled, readout, precision=hi) - target), -1)
        else:
            per_example = pooled @ streams.projection(key, arch.widths[0])
        return jnp.mean(per_example), record

    spatial = arch.conv.spatial if arch.conv else ()
    zeros = lambda n: jnp.zeros((probe.batch, *spatial, n))
    probes = [(zeros(w1.shape[-1]), zeros(w1.shape[-1]), zeros(arch.widths[0]), zeros(arch.widths[0]))
              for (w1, _), _ in order]
    (dw, dp), record = jax.grad(mean_loss, argnums=(0, 1), has_aux=True)(order, probes)
    loss = mean_loss(order, probes)[0]
    b = probe.batch
    pair = lambda f1, f2: np.array([[f1(l), f2(l)] for l in range(arch.depth)], np.float64)
    nan = lambda l: np.nan
    out = {
        "preact_mean": pair(lambda l: jnp.mean(record[l][0]), lambda l: jnp.mean(record[l][2])),
        "preact_meansq": pair(lambda l: jnp.mean(record[l][0] ** 2), lambda l: jnp.mean(record[l][2] ** 2)),
        "preact_var": pair(lambda l: jnp.var(record[l][0]), lambda l: jnp.var(record[l][2])),
        "act_mean": pair(lambda l: jnp.mean(record[l][1]), nan),
        "act_meansq": pair(lambda l: jnp.mean(record[l][1] ** 2), nan),
        "act_var": pair(lambda l: jnp.var(record[l][1]), nan),
        "grad_preact_meansq": pair(lambda l: jnp.mean((dp[l][0] * b) ** 2), lambda l: jnp.mean((dp[l][2] * b) ** 2)),
        "grad_act_meansq": pair(lambda l: jnp.mean((dp[l][1] * b) ** 2), nan),
        "grad_weight_meansq": pair(lambda l: jnp.mean(dw[l][0][0] ** 2), lambda l: jnp.mean(dw[l][1][0] ** 2)),
        "stream_mean": np.array([jnp.mean(record[l][3]) for l in range(arch.depth)], np.float64),
        "stream_meansq": np.array([jnp.mean(record[l][3] ** 2) for l in range(arch.depth)], np.float64),
        "grad_stream_meansq": np.array([jnp.mean((dp[l][3] * b) ** 2) for l in range(arch.depth)], np.float64),
    }
    return out, float(loss)
