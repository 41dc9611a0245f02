"""What the statistics kernel returns per network, and how it becomes float64 statistics.

The passes reduce every layer on device to a few float32 mantissas with int32 exponents
(``sweep.kernel.scale``). Their fields are named as the stored variables they become
(``sweep.io.schema``); ``finish`` combines each with its exponent in float64 on the host.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from sweep.kernel.scale import Scaled


class ForwardStats(NamedTuple):
    """Per-layer forward statistics of the scaled signals, each ``(..., L)``.

    With z_l = 2^E_{l-1} z̃_l and x_l = 2^E_l x̃_l (the scaled arrays the pass holds), the
    moments are those of z̃_l and x̃_l. Attributes ``exp_in`` (E_{l-1}) and ``exp_out`` (E_l)
    are int32; ``dead_fraction`` needs no exponent.
    """

    preact_mean: jax.Array
    preact_meansq: jax.Array
    preact_var: jax.Array
    act_mean: jax.Array
    act_meansq: jax.Array
    act_var: jax.Array
    dead_fraction: jax.Array
    exp_in: jax.Array
    exp_out: jax.Array


class BackwardStats(NamedTuple):
    """Per-layer backward statistics of the scaled cotangents, each ``(..., L)``.

    ∂ℓ/∂x_l = 2^F_l · (scaled), F_l = ``exp_grad`` (int32); the weight gradient's input is
    x_{l-1}, whose exponent is the forward pass's ``exp_in``.
    """

    grad_act_meansq: jax.Array
    grad_preact_meansq: jax.Array
    grad_weight_meansq: jax.Array
    exp_grad: jax.Array


class StreamStats(NamedTuple):
    """Per-block statistics of a residual network's stream x_l and its cotangent, each ``(..., L)``.

    x_l = 2^``exp_stream`` · (scaled), ∂ℓ/∂x_l = 2^``exp_grad_stream`` · (scaled), int32.
    """

    stream_mean: jax.Array
    stream_meansq: jax.Array
    grad_stream_meansq: jax.Array
    exp_stream: jax.Array
    exp_grad_stream: jax.Array


STREAM_STATS: tuple[str, ...] = StreamStats._fields[:3]
"""A residual network's per-block stream statistics, named as stored."""
RESIDUAL_UNDEFINED: tuple[str, ...] = ("act_mean", "act_meansq", "act_var", "dead_fraction", "grad_act_meansq")
"""The statistics a residual branch's second layer does not have: its output z_2 joins the stream
with no activation of its own (NaN in the store)."""


class NetworkStats(NamedTuple):
    """Everything the kernel measures of one network (a leading network axis when batched).

    Attributes:
      forward: ``ForwardStats``.
      backward: ``BackwardStats``.
      loss: the batch-mean loss C, ``Scaled`` scalars.
      jacobian: ``None``, or the input-output Jacobian's singular values ``(min(n_0, n_L),)``,
        or (``Probe.jacobian_on_host``) the Jacobian itself ``(n_L, n_0)``, as ``Scaled``
        with a scalar exponent.
      stream: residual networks' ``StreamStats`` (their forward and backward statistics are
        then per weight layer, ``(..., 2L)``: block l's branch layers at 2l − 2 and 2l − 1).
    """

    forward: ForwardStats
    backward: BackwardStats
    loss: Scaled
    jacobian: Scaled | None
    stream: StreamStats | None = None


FORWARD_STATS: tuple[str, ...] = ForwardStats._fields[:7]
BACKWARD_STATS: tuple[str, ...] = BackwardStats._fields[:3]
LAYER_STATS: tuple[str, ...] = FORWARD_STATS + BACKWARD_STATS
"""The per-layer statistics, named as stored."""


def jacobian_singular_values(matrices: np.ndarray) -> np.ndarray:
    """Singular values of float32 Jacobians, in float64 with numpy's LAPACK, on the host.

    Args:
      matrices: ``(..., n_L, n_0)``.

    Returns:
      ``(..., min(n_0, n_L))``, descending.
    """
    return np.linalg.svd(np.asarray(matrices, np.float64), compute_uv=False)


def finish(raw: NetworkStats, depth: int | None = None) -> dict[str, np.ndarray]:
    """Combines the kernel's mantissas and exponents into float64 statistics on the host.

    Args:
      raw: the kernel's output, arrays with a leading network axis ``(C, ...)``.
      depth: the networks' depth L, when the program's L_max is larger (the layers beyond L
        were skipped and are dropped here).

    Returns:
      ``LAYER_STATS`` as ``(C, L)`` float64, ``overflow`` ``(C, L)`` bool (a statistic of
      that layer is not finite: float32, or float64 after rescaling, was exceeded), ``loss``
      ``(C,)`` and, if measured, ``jacobian_singular_values`` ``(C, k)``. For residual networks
      ``LAYER_STATS`` are ``(C, L, 2)`` (block, branch layer; ``RESIDUAL_UNDEFINED`` NaN at
      branch layer 2), ``STREAM_STATS`` ``(C, L)``, and ``overflow`` marks the block.
    """
    if raw.stream is not None:
        return _finish_residual(raw, depth)
    raw = jax.tree.map(np.asarray, raw)
    layers = lambda stats: type(stats)(*(a[..., :depth] for a in stats))
    fwd, back = layers(raw.forward), layers(raw.backward)
    e_in, e_out, f = (a.astype(np.int64) for a in (fwd.exp_in, fwd.exp_out, back.exp_grad))
    exponents = {
        "preact_mean": e_in, "preact_meansq": 2 * e_in, "preact_var": 2 * e_in,
        "act_mean": e_out, "act_meansq": 2 * e_out, "act_var": 2 * e_out,
        "dead_fraction": np.zeros_like(e_in),
        "grad_act_meansq": 2 * f, "grad_preact_meansq": 2 * f, "grad_weight_meansq": 2 * (e_in + f),
    }
    mantissas = {**fwd._asdict(), **back._asdict()}
    with np.errstate(over="ignore", invalid="ignore"):
        out = {k: np.ldexp(mantissas[k].astype(np.float64), exponents[k]) for k in LAYER_STATS}
        out["overflow"] = ~np.all([np.isfinite(out[k]) for k in LAYER_STATS], axis=0)
        out["loss"] = np.ldexp(raw.loss.mantissa.astype(np.float64), raw.loss.exponent.astype(np.int64))
        if raw.jacobian is not None:
            values = raw.jacobian.mantissa
            if values.ndim == 3:  # the matrices themselves: their singular values, here on the host
                values = jacobian_singular_values(values)
            out["jacobian_singular_values"] = np.ldexp(
                values.astype(np.float64), raw.jacobian.exponent.astype(np.int64)[:, None])
    return out


def _finish_residual(raw: NetworkStats, depth: int | None) -> dict[str, np.ndarray]:
    out = finish(raw._replace(stream=None), None if depth is None else 2 * depth)
    blocks = lambda a: a.reshape(a.shape[:-1] + (-1, 2))
    for name in LAYER_STATS:
        out[name] = blocks(out[name])
    overflow = blocks(out.pop("overflow"))
    stream = jax.tree.map(np.asarray, raw.stream)
    stream = type(stream)(*(a[..., :depth] for a in stream))
    e, f = stream.exp_stream.astype(np.int64), stream.exp_grad_stream.astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        for name, k in (("stream_mean", e), ("stream_meansq", 2 * e), ("grad_stream_meansq", 2 * f)):
            out[name] = np.ldexp(getattr(stream, name).astype(np.float64), k)
        out["overflow"] = (overflow[..., 0] | overflow[..., 1]
                           | ~np.all([np.isfinite(out[k]) for k in STREAM_STATS], axis=0))
    for name in RESIDUAL_UNDEFINED:
        out[name][..., 1] = np.nan
    return out
