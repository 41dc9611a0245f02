"""One network's forward and backward passes, with exact scale tracking, reduced per layer.

Scale tracking (``sweep.kernel.scale``):

* Backward, always: the cotangent is linear in the loss gradient, so rescaling it is exact for
  every activation.
* Forward, for positively homogeneous activations (relu, leaky relu, linear), where
  φ(2^k z) = 2^k φ(z). Biases are divided by the running scale, so z_l = 2^E z̃_l exactly.

For other activations a forward value can still overflow; the statistics of that layer are
then not finite (``sweep.kernel.results.finish`` marks them).

Every pass takes either one network or, with ``gains`` of shape ``(G,)``, the G networks that
share one draw of unit weights and differ only in gain: every layer then runs as one GEMM of
G · batch rows. The weight gradient's mean square comes from two batch × batch Gram matrices
when that is cheaper than the n_in × n_out gradient (``grad_weight_meansq``). The passes
draw nothing: the parameters, inputs and readout come from ``sweep.model``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sweep.kernel.results import BackwardStats, ForwardStats
from sweep.kernel.scale import Scaled, ldexp, normalise, pow2, rms_exponent
from sweep.model import conditional, layers, network


class ForwardPass(NamedTuple):
    """What ``forward`` returns.

    Attributes:
      x_last: the last activations ``(batch, n_L)``, scaled: ``Scaled(x̃_L, E_L)``.
      stats: per-layer ``ForwardStats``.
      residuals: per segment and block position, the stacked ``(x_{l-1}, z_l, extra)`` the
        backward pass needs (z_l is ``None`` when ``arch.slope_from_output``: φ' is taken at
        x_l; ``extra`` is a conditional layer's, see ``layer_forward``).
    """

    x_last: Scaled
    stats: ForwardStats
    residuals: tuple


class Readout(NamedTuple):
    """The probe loss's random numbers (``sweep.model.streams``).

    Attributes:
      weights: the ``"mse"`` readout R ``(n_L, outputs)``, or the ``"projection"`` p ``(n_L,)``.
      targets: the ``"mse"`` targets y ``(batch, outputs)``; ``None`` for the projection.
    """

    weights: jax.Array
    targets: jax.Array | None


class StreamProducts(NamedTuple):
    """K cotangent streams' mean products per layer (``backward_streams``).

    Attributes:
      grad_act: ``(K, K, L)``, of the scaled cotangents at x_l.
      grad_preact: ``(K, K, L)``, at z_l.
      grad_weight: ``(K, K, L)``, of their weight gradients x_{l-1}ᵀδ_l / B.
      exp_grad: ``(K, L)``: stream k at x_l is 2^exp_grad[k, l] times its scaled value.
    """

    grad_act: jax.Array
    grad_preact: jax.Array
    grad_weight: jax.Array
    exp_grad: jax.Array


def _moments(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    mean = jnp.mean(a)
    return mean, jnp.mean(jnp.square(a)), jnp.mean(jnp.square(a - mean))


def gemm(h: jax.Array, w: jax.Array, precision, gains, transpose: bool = False) -> jax.Array:
    """``h @ w`` (or ``h @ wᵀ``) for one network, or for the gains of one draw at once.

    A conv kernel ``w`` ``(*taps, c_in, c_out)`` gives its circular convolution instead
    (``sweep.model.layers``), ``h`` then holding images ``(..., batch, *spatial, c)``.

    Args:
      h: ``(..., batch, n)``: one network's rows, or several row blocks that share ``w``
        (``(G, batch, n)`` when ``gains`` is given).
      w: the weights, ``(n, m)`` (``(m, n)`` with ``transpose``); with ``gains``, the unit
        weights that every gain shares.
      precision: ``lax.Precision``.
      gains: ``None``, or ``(G,)``: network g has weights gains[g] · w.
      transpose: contract with w's second axis (the output side): the input gradient.

    Returns:
      ``(..., batch, m)``.
    """
    # With gains: one GEMM of G·batch rows instead of G small ones; the gains scale the rows.
    return _gained((layers.linear_transpose if transpose else layers.linear)(h, w, precision), gains)


def _gained(out: jax.Array, gains) -> jax.Array:
    """``out`` ``(G, ...)`` with row block g times gains[g]; ``out`` itself without gains."""
    return out if gains is None else gains.reshape(gains.shape + (1,) * (out.ndim - 1)) * out


def layer_forward(h: jax.Array, w, n_out: int, precision, gains) -> tuple[jax.Array, tuple | None]:
    """``gemm(h, w)``, or for a ``conditional.ConditionalLayer`` its product in law.

    Returns:
      ``(h W, extra)``: ``extra`` is what the conditional layer's backward pass needs
      (``None`` for a drawn weight).
    """
    if isinstance(w, conditional.ConditionalLayer):
        hw, extra = conditional.forward(h, w, n_out, precision)
        return _gained(hw, gains), extra
    return gemm(h, w, precision, gains), None


def layer_backward(delta: jax.Array, w, extra, precision, gains, differences=None) -> jax.Array:
    """``gemm(delta, w, transpose=True)``, or for a conditional layer its product in law given
    the forward pass's ``extra`` (``layer_forward``) and, if known, ``differences``, the
    Gram matrix of δ's row differences (``conditional.differences_gram``)."""
    if isinstance(w, conditional.ConditionalLayer):
        return _gained(conditional.backward(delta, w, extra, precision, differences), gains)
    return gemm(delta, w, precision, gains, transpose=True)


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


def grad_weight_meansq(h: jax.Array, delta: jax.Array, precision, gram: bool | None = None,
                       taps: tuple[int, ...] = (), gram_h: jax.Array | None = None,
                       gram_delta: jax.Array | None = None) -> jax.Array:
    """Mean square of the entries of ∂C/∂W = hᵀδ / B, C the batch-mean loss.

    Args:
      h: the layer's inputs ``(B, n_in)``, or ``(B, *spatial, c_in)`` for a conv layer.
      delta: ∂ℓ_b/∂z, each example's own loss gradient, ``(B, n_out)`` (``(B, *spatial, c_out)``).
      precision: ``lax.Precision``.
      gram: ``True``: ‖hᵀδ‖²_F = ⟨hhᵀ, δδᵀ⟩, two B × B Gram matrices; ``False``: the
        n_in × n_out gradient itself; ``None``: whichever is cheaper (``gram_is_cheaper``).
        A conv layer's gradient is always computed itself.
      taps: a conv kernel's spatial shape; ``()`` for a dense layer.
      gram_h: h hᵀ ``(B, B)`` when it is known already (a conditional layer's); the Gram
        path then uses it.
      gram_delta: δ δᵀ ``(B, B)`` when it is known already, as ``gram_h``.

    Returns:
      A float32 scalar.
    """
    if taps:
        shape = taps + (h.shape[-1], delta.shape[-1])
        return jnp.mean(jnp.square(layers.weight_gradient(h, delta, shape, precision) / h.shape[0]))
    batch, n_in = h.shape
    n_out = delta.shape[-1]
    if gram is None:
        gram = gram_h is not None or gram_is_cheaper(batch, n_in, n_out)
    if not gram:
        dw = jnp.matmul(h.T, delta, precision=precision) / batch
        return jnp.mean(jnp.square(dw))
    hh = jnp.einsum("bi,ci->bc", h, h, precision=precision) if gram_h is None else gram_h
    dd = jnp.einsum("bo,co->bc", delta, delta, precision=precision) if gram_delta is None else gram_delta
    return jnp.sum(hh * dd) / (float(batch) ** 2 * n_in * n_out)


def forward(params, arch, x: jax.Array, precision, gains=None, depth=None):
    """Runs a batch forward with exact scale tracking, reducing each layer.

    Args:
      params: from ``network.draw_params``; with ``gains``, drawn at unit gain.
      arch: the ``Architecture``, or with ``depth`` the ``Program``.
      x: inputs, ``(batch, n_0)``, or ``(G, batch, n_0)`` with ``gains``.
      precision: ``lax.Precision``.
      gains: ``None`` for one network; or ``(G,)``, the gains of G networks that share the
        unit draws in ``params`` (network g has weights gains[g] · W); every output then has
        a leading axis G.
      depth: ``None``, every layer; or an int32 scalar L, the network's depth inside the
        program: layers beyond it are skipped (their statistics are zeros) and ``x_last`` is
        layer L's output.

    Returns:
      ``ForwardPass``; its stats are ``(L,)`` arrays (``(G, L)`` with ``gains``; L_max with
      ``depth``).
    """
    phi, homogeneous = arch.phi, arch.homogeneous

    def after_gemm(hw, e, b):
        z = hw + ldexp(b, -e)
        u = phi(z)
        k = jnp.int32(0)
        if homogeneous:
            u, k = normalise(u)
        slope = jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
        z_mean, z_meansq, z_var = _moments(z)
        u_mean, u_meansq, u_var = _moments(u)
        dead = jnp.mean(jnp.all(slope == 0, axis=0))
        stats = ForwardStats(z_mean, z_meansq, z_var, u_mean, u_meansq, u_var, dead.astype(z.dtype), e, e + k)
        return u, e + k, z, stats

    def real(h, e, w, b):
        hw, extra = layer_forward(h, w, b.shape[-1], precision, gains)
        u, e_out, z, stats = _each(after_gemm, gains, (0, 0, None))(hw, e, b)
        # The backward pass takes φ' at z, or at the layer's output, which is the next layer's h.
        return (u, e_out), stats, (h, None if arch.slope_from_output else z, extra)

    def layer(carry, w, b, l):
        h, e, last = carry
        if depth is None:
            out, stats, residual = real(h, e, w, b)
            return (*out, None), stats, residual
        out, stats, residual = _when(l <= depth, real, h, e, w, b)
        if b.shape[-1] == arch.last_width:  # only such a layer can be a network's last
            last = _where(l == depth, out, last)
        return (*out, last), stats, residual

    def block_step(carry, xs):
        block, first = xs
        outs, res = [], []
        for j, (w, b) in enumerate(block):
            carry, stats, residual = layer(carry, w, b, first + j)
            outs.append(stats)
            res.append(residual)
        return carry, (_stack_block(outs), tuple(res))

    batch = x.shape[:-1]
    exponent = jnp.int32(0) if gains is None else jnp.zeros(gains.shape, jnp.int32)
    last = None if depth is None else (jnp.zeros(batch + (arch.last_width,)), exponent)
    carry = (x, exponent, last)
    per_segment, residuals = [], []
    for seg, block in zip(network.segments(arch.shapes), params):
        firsts = seg.start + 1 + len(seg.block) * jnp.arange(seg.repeats)
        carry, (stats, res) = network.scan_blocks(block_step, carry, (block, firsts))
        per_segment.append(stats)
        residuals.append(res)
    return ForwardPass(Scaled(*(carry[:2] if depth is None else carry[2])), _concat_layers(per_segment), tuple(residuals))


def _when(active, fn, *operands):
    """``fn(*operands)`` where ``active`` (a scalar bool), else zeros of its outputs' shapes.

    The skipped branch does no work: ``active`` is the same for every network of a call
    (it depends on the layer and the call's depth only), so under ``vmap`` this stays a
    conditional rather than a select of both branches.
    """
    shapes = jax.eval_shape(fn, *operands)
    zeros = lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return jax.lax.cond(active, fn, zeros, *operands)


def _where(condition, new, old):
    """``new`` where ``condition`` (a scalar bool), else ``old``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def backward(params, arch, residuals, g: jax.Array, x_last: jax.Array, precision, gains=None, depth=None):
    """Backpropagates the per-example cotangent ``g`` = ∂ℓ/∂x_L (scaled) through the layers.

    Args:
      params: from ``network.draw_params``; with ``gains``, drawn at unit gain.
      arch: as for ``forward``.
      residuals: from ``forward``.
      g: scaled ∂ℓ/∂x_L, ``(batch, n_L)`` (``(G, batch, n_L)`` with ``gains``), normalised.
      x_last: the scaled last activations from ``forward``, of ``g``'s shape.
      precision: ``lax.Precision``.
      gains: as for ``forward``.
      depth: as for ``forward``: the pass starts at layer L, and the layers beyond are skipped.

    Returns:
      ``BackwardStats`` of ``(L,)`` arrays (``(G, L)`` with ``gains``), of the scaled
      cotangents, F_L = 0 here.
    """
    phi = arch.phi

    def before_gemm(g, h, z, gram_h, taps):
        delta = jax.vjp(phi, z)[1](g)[0]  # z, or the layer's scaled output: the same φ' (see forward)
        # A conditional layer's backward pass needs the Gram matrix of δ's row differences;
        # the weight gradient's norm takes δδᵀ from it instead of a product of its own.
        differences = None if gram_h is None else conditional.differences_gram(delta)
        gram_delta = None if gram_h is None else conditional.gram(differences)
        moments = (jnp.mean(jnp.square(g)), jnp.mean(jnp.square(delta)),
                   grad_weight_meansq(h, delta, precision, taps=taps, gram_h=gram_h, gram_delta=gram_delta))
        return delta, moments, differences

    def real(carry, w, residual):
        g, f, output = carry
        h, z, extra = residual
        z = output if arch.slope_from_output else z
        lazy = isinstance(w, conditional.ConditionalLayer)
        taps, gram_h = ((), conditional.input_gram(extra)) if lazy else (w.shape[:-2], None)
        delta, moments, differences = _each(functools.partial(before_gemm, taps=taps), gains)(g, h, z, gram_h)
        stats = BackwardStats(*moments, f)
        g_prev, m = _each(normalise, gains)(layer_backward(delta, w, extra, precision, gains, differences))
        return (g_prev, f + m, h if arch.slope_from_output else None), stats

    start = (g, jnp.int32(0) if gains is None else jnp.zeros(gains.shape, jnp.int32),
             x_last if arch.slope_from_output else None)
    return _reverse_layers(real, params, residuals, start, arch, depth)


def mean_products(a: jax.Array) -> jax.Array:
    """``(K, K)``: the mean over all other axes of a_j · a_k, for ``a`` of shape ``(K, ...)``.

    K is small (one or two): elementwise products and reductions, which XLA fuses, are far
    cheaper here than a dot of K rows.
    """
    k = a.shape[0]
    squares = jnp.mean(a * a, axis=tuple(range(1, a.ndim)))
    pairs = {(i, j): jnp.mean(a[i] * a[j]) for i in range(k) for j in range(i + 1, k)}
    pairs.update({(i, i): squares[i] for i in range(k)})
    return jnp.stack([jnp.stack([pairs[min(i, j), max(i, j)] for j in range(k)]) for i in range(k)])


def grad_weight_products(h: jax.Array, deltas: jax.Array, precision, taps: tuple[int, ...] = (),
                         grams: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """``grad_weight_meansq`` for K cotangents at once, with their cross terms.

    Args:
      h: the layer's inputs ``(B, n_in)`` (``(B, *spatial, c_in)`` for a conv layer).
      deltas: K per-example cotangents at z, ``(K, B, n_out)`` (``(K, B, *spatial, c_out)``).
      precision: ``lax.Precision``.
      taps: a conv kernel's spatial shape; ``()`` for a dense layer.
      grams: ``(h hᵀ, δ δᵀ)`` when they are known already (a conditional layer's), ``(B, B)``
        and ``(K, K, B, B)``; the Gram path then uses them.

    Returns:
      ``(K, K)``: the mean over the weight's entries of (hᵀδ_j / B)(hᵀδ_k / B).
    """
    if taps:
        shape = taps + (h.shape[-1], deltas.shape[-1])
        dw = jax.vmap(lambda d: layers.weight_gradient(h, d, shape, precision))(deltas) / h.shape[0]
        return mean_products(dw)
    batch, n_in = h.shape
    n_out = deltas.shape[-1]
    if grams is not None or gram_is_cheaper(batch, n_in, n_out):
        hh, dd = grams or (jnp.einsum("bi,ci->bc", h, h, precision=precision),
                           jnp.einsum("kbo,jco->kjbc", deltas, deltas, precision=precision))
        return jnp.einsum("bc,kjbc->kj", hh, dd, precision=precision) / (float(batch) ** 2 * n_in * n_out)
    dw = jnp.einsum("bi,kbo->kio", h, deltas, precision=precision) / batch
    return mean_products(dw)


def backward_streams(params, arch, residuals, cotangents: jax.Array, x_last: jax.Array, precision, depth=None):
    """Backpropagates K output cotangents of one network together, reducing their products.

    The backward pass is linear in the output cotangent. When every cotangent of interest is
    a combination Σ_k c_k s_k of K fixed ones, the mean squares of all of them at every layer
    are the quadratic forms cᵀ M c of the K × K matrices M returned here
    (``sweep.scaled_copies``). Each stream is rescaled by powers of two on its own; the
    rescaling of the cotangent at x_l is found from its mean square, which is reduced anyway,
    and applied where δ_l is formed, so it costs no pass of its own.

    Args:
      params, arch, residuals, x_last, precision, depth: as for ``backward``, of one network.
      cotangents: the K streams ∂ℓ/∂x_L, each normalised, ``(K, batch, n_L)``.

    Returns:
      ``StreamProducts``.
    """
    phi = arch.phi

    def real(carry, w, residual):
        g, f, output = carry  # g: the cotangent at x_l, 2^f · g, not yet rescaled
        h, z, extra = residual
        z = output if arch.slope_from_output else z
        lazy = isinstance(w, conditional.ConditionalLayer)
        taps = () if lazy else w.shape[:-2]
        products = mean_products(g)
        # Within float32's normal exponents, so that 2^-shift is one exact multiplication.
        shift = jnp.clip(rms_exponent(jnp.diagonal(products)), -126, 126)
        pullback = jax.vjp(phi, z)[1]  # φ' at z, or at the layer's scaled output (see forward)
        delta = jax.vmap(lambda gk: pullback(gk)[0])(g) * pow2(-shift).reshape(shift.shape + (1,) * (g.ndim - 1))
        # A conditional layer's K streams share its W̃, so they go through it stacked; the Gram
        # matrix of the stacked rows' differences serves it and the weight gradients' products.
        stacked = delta.reshape((-1,) + delta.shape[2:])
        differences = conditional.differences_gram(stacked) if lazy else None
        grams = None
        if lazy:
            k, b = delta.shape[:2]
            grams = (conditional.input_gram(extra),
                     conditional.gram(differences).reshape(k, b, k, b).transpose(0, 2, 1, 3))
        stats = StreamProducts(ldexp(products, -(shift[:, None] + shift[None, :])), mean_products(delta),
                               grad_weight_products(h, delta, precision, taps, grams), f + shift)
        stacked = layer_backward(stacked, w, extra, precision, None, differences)
        g_prev = stacked.reshape(delta.shape[:2] + stacked.shape[1:])
        return (g_prev, f + shift, h if arch.slope_from_output else None), stats

    start = (cotangents, jnp.zeros(cotangents.shape[:1], jnp.int32), x_last if arch.slope_from_output else None)
    return _reverse_layers(real, params, residuals, start, arch, depth)


def jacobian(params, arch, x0: jax.Array, precision, singular_values: bool, depth=None) -> Scaled:
    """The input-output Jacobian ∂x_L/∂x_0 at one input, or its singular values, scaled.

    Args:
      params: from ``network.draw_params``, of one network.
      arch, depth: as for ``forward``.
      x0: the input ``(n_0,)``.
      precision: ``lax.Precision``.
      singular_values: return the singular values, from ``jnp.linalg.svd`` on the device;
        else the matrix, for ``results.finish`` to factorise on the host (jaxlib's CPU SVD
        can deadlock XLA's thread pool, see ``sweep.model.linalg``).

    Returns:
      ``Scaled``: the Jacobian ``(n_L, n_0)`` or its singular values ``(min(n_0, n_L),)``,
      with a scalar exponent.
    """

    def last_layer(x):
        x_last = forward(params, arch, x[None], precision, depth=depth).x_last
        return x_last.mantissa[0], x_last.exponent

    jac, e_jac = jax.jacfwd(last_layer, has_aux=True)(x0)
    return Scaled(jnp.linalg.svd(jac, compute_uv=False) if singular_values else jac, e_jac)


def _reverse_layers(real, params, residuals, start, arch, depth):
    """Runs ``real(carry, w, residual) -> (carry, stats)`` from the last layer to the first.

    Args:
      real: one layer's backward step.
      params, residuals: the forward pass's.
      start: the carry at the network's last layer.
      arch: the ``Architecture``, or with ``depth`` the ``Program``.
      depth: ``None``; or the network's depth L in the program: the carry is ``start`` from
        layer L down, and the layers beyond L are skipped (zeros in, zeros out).

    Returns:
      The stats (a pytree), each leaf ``(..., L)``, in layer order.
    """

    def layer(carry, w, n_out, residual, l):
        if depth is None:
            return real(carry, w, residual)
        if n_out == arch.last_width:  # the layers where a network can end
            carry = _where(l == depth, start, carry)
        return _when(l <= depth, real, carry, w, residual)

    def block_step(carry, xs):
        block, res, first = xs
        outs = []
        for j, ((w, b), residual) in reversed(tuple(enumerate(zip(block, res)))):
            carry, stats = layer(carry, w, b.shape[-1], residual, first + j)
            outs.append(stats)
        return carry, _stack_block(outs[::-1])

    if depth is None:
        carry = start
    else:  # zeros until the network's last layer, of the deepest layer's shapes
        n_out = arch.shapes[-1][1]
        carry = jax.tree.map(lambda a: jnp.zeros(a.shape[:-1] + (n_out,), a.dtype) if a.ndim >= 2 else jnp.zeros_like(a),
                             start)
    per_segment = []
    segments = network.segments(arch.shapes)
    for seg, block, res in reversed(tuple(zip(segments, params, residuals))):
        firsts = seg.start + 1 + len(seg.block) * jnp.arange(seg.repeats)
        carry, stats = network.scan_blocks(block_step, carry, (block, res, firsts), reverse=True)
        per_segment.append(stats)
    return _concat_layers(per_segment[::-1])


def _stack_block(outs: list):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outs)


def _concat_layers(per_segment: list):
    """Scan outputs of shape (repeats, period, ...) per segment -> one (..., L) array per leaf."""
    return jax.tree.map(
        lambda *leaves: jnp.moveaxis(jnp.concatenate([a.reshape((-1,) + a.shape[2:]) for a in leaves]), 0, -1),
        *per_segment)


def unpooled(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The transpose of ``network.pooled``: a cotangent ``(..., batch, c)`` at the features, at the
    last layer of ``shape`` ``(batch, *spatial, c)`` (``g``/P at every position)."""
    if len(shape) == 2:
        return g
    spatial = shape[1:-1]
    lead = g.shape[:-1]
    g = g.reshape(lead + (1,) * len(spatial) + g.shape[-1:]) / float(np.prod(spatial))
    return jnp.broadcast_to(g, lead + spatial + g.shape[-1:])


def loss_and_cotangent(x_last: Scaled, readout: Readout, precision) -> tuple[Scaled, Scaled]:
    """The batch-mean probe loss at the scaled output, and each example's gradient.

    Args:
      x_last: the last activations ``(batch, n_L)`` (``(batch, *spatial, c_L)``), from ``forward``.
      readout: the loss's random numbers, applied to ``network.pooled(x_last)``.
      precision: ``lax.Precision``.

    Returns:
      ``(loss, cotangent)``: the batch-mean loss C, a scalar, and ∂ℓ_b/∂x_L of ``x_last``'s shape.
    """
    shape = x_last.mantissa.shape
    features = network.pooled(x_last.mantissa)
    prediction = jnp.matmul(features, readout.weights, precision=precision)
    loss, residual = loss_of_prediction(prediction, x_last.exponent, readout.targets)
    if readout.targets is None:
        return loss, Scaled(unpooled(jnp.broadcast_to(readout.weights, features.shape), shape), jnp.int32(0))
    g = jnp.matmul(residual.mantissa, readout.weights.T, precision=precision)
    return loss, Scaled(unpooled(g, shape), residual.exponent)


def loss_of_prediction(prediction: jax.Array, e_last, targets: jax.Array | None) -> tuple[Scaled, Scaled | None]:
    """The batch-mean loss of the scaled readout ``prediction`` = x̃_L R (mse) or x̃_L p (projection).

    Args:
      prediction: ``(batch, outputs)`` for mse, ``(batch,)`` for the projection.
      e_last: the exponent of x_L, an int32 scalar.
      targets: ``(batch, outputs)``, or ``None`` for the projection.

    Returns:
      ``(loss, residual)``: the loss C; for mse, the prediction minus the targets (else
      ``None``).
    """
    if targets is None:
        return Scaled(jnp.mean(prediction), e_last), None
    # The residual 2^E·(x R) − y is held as 2^s·(...) with s = max(E, 0): both terms then
    # carry non-positive exponents, so neither overflows whether the output is huge or tiny.
    s = jnp.maximum(e_last, 0)
    residual = ldexp(prediction, e_last - s) - ldexp(targets, -s)
    return Scaled(jnp.mean(0.5 * jnp.sum(jnp.square(residual), axis=-1)), 2 * s), Scaled(residual, s)
