"""``predict(spec)``: the theory's value of every measured statistic, as a dataset beside the measurement.

Variables are named ``theory_<statistic>`` with the measurement's dims minus ``seed`` and the
same coordinates (values and dtypes as ``sweep.store.to_dataset``), so that
``ds.preact_meansq / theory.theory_preact_meansq`` aligns; NaN beyond each network's depth.

* Layer statistics: the infinite-width recursions of ``sweep.theory.recursion`` (mean field
  forward, gradient independence backward, the exact readout moments and the batch's
  cross-example term in the weight gradient).
* ``theory_loss``: the expected batch-mean loss.
* ``theory_log_act_norm_mean`` / ``_var``: the exact finite-width law of log(‖x_l‖²/n_l)
  for one input (``sweep.theory.finite_width``; relu, Gaussian fan_in/fan_out/fan_avg
  weights, σ_b = 0, else NaN). At batch 1 this is log act_meansq. ``..._large_width``: the
  approximations −(5/2)Σ1/n and 5Σ1/n (plus the input's −1/n_0 and 2/n_0 and log scales).
* ``theory_fw_<stat>`` for the gradient statistics and ``theory_fw_loss``: the exact finite-width
  means of ``sweep.theory.relu_gradients`` (dense relu and leaky relu networks, Gaussian weights,
  σ_b = 0, else NaN: elsewhere only the infinite-width ``theory_<stat>`` is derived). Each example's own
  gradients and loss have the one-input law at any batch, so ``fw_grad_act_meansq``,
  ``fw_grad_preact_meansq`` and ``fw_loss`` are exact at every batch size; ``fw_grad_weight_meansq``
  (the batch-mean loss's weight gradient, which mixes examples) is exact in closed form at batch 1 and,
  above, the exact two-input law of ``sweep.theory.relu_batch`` estimated from exact draws of the
  forward chain (4 per measured network, 2^12–2^16: ``relu_batch.draws_for``), with its Monte Carlo
  standard error as ``theory_fw_grad_weight_meansq_error`` (0 at batch 1).
* With a ``parametrization`` axis: every backward statistic and the loss with the probe readout's
  init as the parametrisation sets it (μP: variance 1/m_in of the standard one, ``recursion.backward``'s
  ``readout_variance``; exactly, in the finite-width laws too), and ``theory_grad_param_meansq``,
  ``theory_sgd_update_meansq`` (and ``fw_``) the weight gradient's times their per-layer factors
  (``sweep.plan.TrainedFactors``), at every batch size.
* ``theory_log_grad_weight_norm_mean`` / ``_var``, at batch 1 and for relu only: the law of log grad_weight_meansq
  over alive networks, from 2^18 exact draws of the reduced law (``relu_gradients.log_grad_weight_law``;
  Monte Carlo standard errors about 0.3% of the variance); ``..._large_width``: their first-order forms
  (projection: log E − 1/n_0 − (5/2)β and 2/n_0 + 5β; mse: the readout's χ²_O part exactly and the rest
  to first order, ``relu_gradients.log_grad_weight_law_large_width``).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from sweep.config import Spec, activations, inits, profiles
from sweep.io import schema
from sweep.plan.plan import TrainedFactors, trained_factors
from sweep.theory import finite_width, recursion, relu_batch, relu_gradients, residual
from sweep.theory.precision import float64

LAYER_STATS = (
    "preact_mean", "preact_meansq", "preact_var", "act_mean", "act_meansq", "act_var", "dead_fraction",
    "grad_act_meansq", "grad_preact_meansq", "grad_weight_meansq",
)
"""Layer statistics that have a theory value (all the engine measures per layer)."""

LOG_NORM_STATS = ("log_act_norm_mean", "log_act_norm_var", "log_act_norm_mean_large_width",
                  "log_act_norm_var_large_width")

FINITE_WIDTH_STATS = ("fw_grad_act_meansq", "fw_grad_preact_meansq", "fw_grad_weight_meansq")
"""Per-layer statistics with an exact finite-width mean (``theory_fw_<stat>``), beside ``theory_fw_loss``."""

FINITE_WIDTH_ERRORS = ("fw_grad_weight_meansq_error",)
"""The Monte Carlo standard errors of those ``theory_fw_<stat>`` that are estimated from draws."""

LOG_GRAD_STATS = ("log_grad_weight_norm_mean", "log_grad_weight_norm_var", "log_grad_weight_norm_mean_large_width",
                  "log_grad_weight_norm_var_large_width")

_DEFINITIONS = {
    "preact_mean": "0: pre-activations are symmetric",
    "preact_meansq": "q_l = σ_w² (n_{l-1}/fan_l) E[x_{l-1}²] + σ_b², E[x_0²] = 1",
    "preact_var": "q_l: the mean over units vanishes at infinite width",
    "act_mean": "E[φ(z)], z ~ N(0, q_l)",
    "act_meansq": "E[φ(z)²], z ~ N(0, q_l)",
    "act_var": "E[φ(z)²] − E[φ(z)]²",
    "dead_fraction": "P(φ'(z_b) = 0 for every example b), the batch's pre-activations with the mean-field "
                     "cross-example correlation (relu: E_v[Φ(−v√(c/(1−c)))^B]; 0 where φ' vanishes nowhere)",
    "grad_act_meansq": "G_l = σ_w² (n_{l+1}/fan_{l+1}) D_{l+1}; G_L from the readout (see sweep.theory.recursion)",
    "grad_preact_meansq": "D_l = G_l E[φ'(z_l)²]",
    "grad_weight_meansq": "(1/B) E[x_{l-1}²] D_l + (1 − 1/B) E[x_{l-1} x'_{l-1}] D×_l",
    "loss": "mse: (O/2)(E[x_L²] + 1); projection: 0",
    "log_act_norm_mean": "exact E[log(‖x_l‖²/n_l)] for one input, relu, Gaussian weights, σ_b = 0, alive networks",
    "log_act_norm_var": "exact Var[log(‖x_l‖²/n_l)] for one input, relu, Gaussian weights, σ_b = 0, alive networks",
    "log_act_norm_mean_large_width": "Σ log s_k − 1/n_0 − (5/2) Σ_{k≤l} 1/n_k",
    "log_act_norm_var_large_width": "2/n_0 + 5 Σ_{k≤l} 1/n_k",
    "fw_grad_act_meansq": "exact E[‖∂ℓ/∂x_l‖²]/n_l at finite width, relu and leaky relu, Gaussian weights, "
                          "σ_b = 0 (see sweep.theory.relu_gradients); NaN elsewhere",
    "fw_grad_preact_meansq": "exact E[‖∂ℓ/∂z_l‖²]/n_l at finite width, relu and leaky relu, Gaussian weights, "
                             "σ_b = 0 (see sweep.theory.relu_gradients); NaN elsewhere",
    "fw_grad_weight_meansq": "E[‖∂C/∂W_l‖²]/(n_{l-1} n_l) at finite width, relu and leaky relu, Gaussian weights, "
                             "σ_b = 0: exact at batch 1 (sweep.theory.relu_gradients); above, (1/B) T_same + "
                             "(1 − 1/B) T_pair with the two-input term T_pair estimated from exact draws of the "
                             "forward chain (sweep.theory.relu_batch); NaN elsewhere",
    "fw_grad_weight_meansq_error": "the Monte Carlo standard error of theory_fw_grad_weight_meansq (0 at batch 1, "
                                   "where it is exact)",
    "grad_param_meansq": "a_l² · theory_grad_weight_meansq, a_l the parametrisation's multiplier of layer l",
    "sgd_update_meansq": "(c_l a_l²)² · theory_grad_weight_meansq, c_l the layer's SGD learning-rate factor",
    "fw_grad_param_meansq": "a_l² · theory_fw_grad_weight_meansq",
    "fw_sgd_update_meansq": "(c_l a_l²)² · theory_fw_grad_weight_meansq",
    "fw_loss": "exact E[C] at finite width, relu and leaky relu, Gaussian weights, σ_b = 0: mse "
               "(O/2)(E[‖x_L‖²]/n_L + 1), projection 0; NaN elsewhere",
    "log_grad_weight_norm_mean": "E[log grad_weight_meansq] at batch 1 over alive networks, relu only, Gaussian weights, "
                                 "σ_b = 0: 2^18 exact draws of the reduced law (sweep.theory.relu_gradients)",
    "log_grad_weight_norm_var": "Var[log grad_weight_meansq] at batch 1 over alive networks, relu only, Gaussian weights, "
                                "σ_b = 0: 2^18 exact draws of the reduced law (sweep.theory.relu_gradients)",
    "log_grad_weight_norm_mean_large_width": "projection loss: log E[grad_weight_meansq] − 1/n_0 − (5/2) Σ_k 1/n_k; "
                                             "mse: the first-order form of sweep.theory.relu_gradients "
                                             "(log_grad_weight_law_large_width)",
    "log_grad_weight_norm_var_large_width": "projection loss: 2/n_0 + 5 Σ_k 1/n_k, every layer; mse: ψ'(O/2) + "
                                            "(1 + 2a)(2/n_0 + 5β_<l) + 5β_≥l + a²(2/n_0 + 5β) + 10aβ_≥l, "
                                            "a = m/(1 + m), m = E[x_L²]",
}


_CONV_DEFINITIONS = {
    "grad_act_meansq": "G_l per position as for dense layers with fans k^d·c, from the pooled readout: "
                       "G_L = (1/P²)·(the dense G_L of the pooled features), P positions (see sweep.theory.recursion)",
    "grad_weight_meansq": "(P/B) M_{l-1} D_l + (P(P−1)/B) K_{l-1} D°_l + (1 − 1/B) P² K_{l-1} D×_l, D° between "
                          "two positions of one example (see sweep.theory.recursion)",
    "loss": "mse: (O/2)(M_L/P + (1 − 1/P) K_L + 1), the pooled features' second moment; projection: 0",
    "log_act_norm_mean": "dense relu networks only: NaN", "log_act_norm_var": "dense relu networks only: NaN",
    "log_act_norm_mean_large_width": "dense relu networks only: NaN",
    "log_act_norm_var_large_width": "dense relu networks only: NaN",
    **{k: "dense relu networks only: NaN" for k in FINITE_WIDTH_STATS + FINITE_WIDTH_ERRORS + LOG_GRAD_STATS
       + ("fw_loss", "fw_grad_param_meansq", "fw_sgd_update_meansq")},
}


def coords(spec: Spec) -> dict:
    """The coordinates of ``sweep.store.to_dataset`` for ``spec``, without ``seed``."""
    g = spec.grid
    out = {axis: list(getattr(g, axis)) for axis in g.axes}
    out["layer"] = np.arange(1, max(g.depth) + 1)
    return out


def _ratios(init: str, widths: tuple[int, ...], taps: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(n_{l-1}/fan_l, n_l/fan_l) for l = 1..L, each times the layer's random taps (``Init.ratios``)."""
    ratios = [inits.get(init).ratios(taps + shape) for shape in zip(widths[:-1], widths[1:])]
    return np.array([f for f, _ in ratios]), np.array([b for _, b in ratios])


def predict(spec: Spec) -> xr.Dataset:
    """The theory's prediction of every statistic ``sweep.run(spec)`` measures.

    Args:
      spec: the sweep spec (its grid, batch, loss and outputs matter; the number of seeds sets only how
        many draws estimate ``theory_fw_grad_weight_meansq`` at batch > 1).

    Returns:
      A dataset with ``theory_<stat>`` for ``LAYER_STATS`` (dims ``GRID_AXES + ("layer",)``),
      ``theory_loss`` (dims ``GRID_AXES``) and the ``LOG_NORM_STATS`` (with ``layer``), all
      float64, NaN beyond each depth and where a law does not apply.
    """
    if spec.residual:
        return _with_attrs(_predict_residual(spec), spec)
    g = spec.grid
    shape = g.shape
    layers = max(g.depth)
    out = {k: np.full(shape + (layers,), np.nan) for k in LAYER_STATS + LOG_NORM_STATS + FINITE_WIDTH_STATS
           + FINITE_WIDTH_ERRORS + LOG_GRAD_STATS + _trained_stats(spec)}
    pairs = {}  # (widths, slope) -> batch > 1 points whose weight gradient needs the two-input law
    trained = []  # (index, factors, depth): filled once every weight gradient theory is
    loss, fw_loss = np.full(shape, np.nan), np.full(shape, np.nan)
    rest = tuple(getattr(g, axis) for axis in g.static_axes[1:])  # init, profile, depth, width[, kernel_size][, ...]
    arch_index = list(itertools.product(*(range(len(a)) for a in rest)))
    positions = int(np.prod(spec.spatial)) if spec.conv else 1
    taps = lambda index: (g.kernel_size[index[4]],) * len(spec.spatial) if spec.conv else ()
    gains, biases = np.meshgrid(np.asarray(g.gain, np.float64), np.asarray(g.bias_std, np.float64), indexing="ij")
    gains, biases = gains.ravel(), biases.ravel()
    per_arch = len(gains)
    known: dict = {}  # finite-width gradient means by what they depend on
    # All architectures of an activation in one forward pass, padded to the deepest; the
    # activations' passes compile and run in threads at once (XLA releases the GIL).
    widths = [profiles.widths(g.profile[p], g.width[w], g.depth[d]) for _, p, d, w, *_ in arch_index]
    ratios = [_ratios(g.init[index[0]], ws, taps(index)) for index, ws in zip(arch_index, widths)]
    forward_ratio = np.ones((len(arch_index), layers))
    for j, (fr, _) in enumerate(ratios):
        forward_ratio[j, : len(fr)] = fr
    rows = (np.tile(gains, len(arch_index)), np.tile(biases, len(arch_index)), np.repeat(forward_ratio, per_arch, axis=0))
    pool = ThreadPoolExecutor(min(len(g.activation), os.cpu_count() or 1))
    passes = [pool.submit(_forward_unique, name, *rows, spec.batch) for name in g.activation]
    pool.shutdown(wait=False)

    for a, name in enumerate(g.activation):
        fw = passes[a].result()
        for j, (arch, ws, (_, br)) in enumerate(zip(arch_index, widths, ratios)):
            i, d = arch[0], arch[2]
            depth = g.depth[d]
            rows = slice(j * per_arch, (j + 1) * per_arch)
            own = recursion.Forward(*(x[rows, :depth] for x in fw))
            factors = trained_factors(spec, (name,) + tuple(axis[k] for axis, k in zip(rest, arch)))
            back = recursion.backward(own, gains, np.broadcast_to(br, (per_arch, depth)),
                                      np.full(per_arch, ws[-1]), spec.loss, spec.outputs, spec.batch, positions,
                                      factors.readout**2)
            values = {
                "preact_mean": np.zeros_like(own.q), "preact_meansq": own.q, "preact_var": own.q,
                "act_mean": own.mean, "act_meansq": own.meansq, "act_var": own.meansq - own.mean**2,
                "dead_fraction": own.dead, "grad_act_meansq": back.grad_act_meansq,
                "grad_preact_meansq": back.grad_preact_meansq, "grad_weight_meansq": back.grad_weight_meansq,
            }
            index = (a,) + arch
            for key, v in values.items():
                out[key][index][..., :depth] = v.reshape(len(g.gain), len(g.bias_std), depth)
            loss[index] = back.loss.reshape(len(g.gain), len(g.bias_std))
            if not spec.conv:
                _log_norms(out, index, name, g.init[i], ws, g.gain, g.bias_std)
                _finite_width_gradients(out, fw_loss, index, name, g.init[i], ws, g.gain, g.bias_std, spec, known,
                                        pairs, factors.readout)
            trained.append((index, factors, depth))
    _batch_weight_gradients(out, pairs, spec)
    for index, factors, depth in trained:
        _trained(out, index, factors, depth)

    ds_coords = coords(spec)
    data = {f"theory_{k}": (g.axes + ("layer",), v, _attrs(k, spec.conv)) for k, v in out.items()}
    data["theory_loss"] = (g.axes, loss, _attrs("loss", spec.conv))
    data["theory_fw_loss"] = (g.axes, fw_loss, _attrs("fw_loss", spec.conv))
    return _with_attrs(xr.Dataset(data, coords=ds_coords), spec)


def one_input_weight_meansq(spec: Spec, infinite: xr.DataArray) -> xr.DataArray:
    """The batch-mean weight gradient with only its one-input term at finite width: (1/B) T_same exact and
    (1 − 1/B) times the infinite-width cross-example term, i.e. ``infinite`` plus (1/B)(fw − infinite) of
    batch 1. Set against ``theory_fw_grad_weight_meansq`` it shows what the two-input law adds.

    Args:
      spec: the sweep spec (batch B).
      infinite: ``theory_grad_weight_meansq`` of ``spec`` (at batch B), as stored beside a measurement.

    Returns:
      Aligned with ``infinite`` (which may be a selection of the grid, with axes of length 1 dropped); NaN
      where the finite-width law is.
    """
    one = predict(spec.replace(batch=1))
    excess = one.theory_fw_grad_weight_meansq - one.theory_grad_weight_meansq
    excess = excess.sel({k: infinite[k] for k in infinite.coords if k in excess.dims})
    excess = excess.squeeze([d for d in excess.dims if d not in infinite.dims and excess.sizes[d] == 1], drop=True)
    return infinite + excess / spec.batch


def _trained_stats(spec: Spec) -> tuple[str, ...]:
    """With a ``parametrization`` axis: the theory of ``grad_param_meansq`` and ``sgd_update_meansq`` (and fw_)."""
    if not spec.grid.parametrization:
        return ()
    names = tuple(schema.PARAMETRIZED)
    return names + (() if spec.residual else tuple(f"fw_{n}" for n in names))


def _trained(out: dict, index: tuple, factors: TrainedFactors, depth: int) -> None:
    """Fills ``_trained_stats`` from the weight gradient's theory: fixed factors per layer (``TrainedFactors``)."""
    for prefix in ("", "fw_"):
        if f"{prefix}grad_param_meansq" in out:
            weight = out[f"{prefix}grad_weight_meansq"][index][..., :depth]
            for name, value in factors.apply(weight).items():
                out[prefix + name][index][..., :depth] = value


def _with_attrs(ds: xr.Dataset, spec: Spec) -> xr.Dataset:
    ds.attrs.update(title=f"sweep theory: {spec.name}", spec=spec.to_json())
    return ds


def _predict_residual(spec: Spec) -> xr.Dataset:
    """``predict`` of a residual sweep (``sweep.theory.residual``)."""
    g = spec.grid
    layers = max(g.depth)
    stream_stats = ("stream_mean", "stream_meansq", "grad_stream_meansq")
    out = {k: np.full(g.shape + (layers, 2), np.nan) for k in LAYER_STATS + _trained_stats(spec)}
    out.update({k: np.full(g.shape + (layers,), np.nan) for k in stream_stats})
    loss = np.full(g.shape, np.nan)
    gains, biases = (a.ravel() for a in np.meshgrid(np.asarray(g.gain, np.float64), np.asarray(g.bias_std, np.float64),
                                                    indexing="ij"))
    static = g.static_axes
    positions = int(np.prod(spec.spatial)) if spec.conv else 1
    for index in itertools.product(*(range(len(getattr(g, a))) for a in static)):
        point = {a: getattr(g, a)[i] for a, i in zip(static, index)}
        depth, width = point["depth"], point["width"]
        taps = (point["kernel_size"],) * len(spec.spatial) if spec.conv else ()
        widths = profiles.widths(point["profile"], width, depth)
        init = inits.get(point["init"])
        shapes = [(taps + (width, m), taps + (m, width)) for m in widths[1:]]
        forward = np.array([[init.ratios(s)[0] for s in pair] for pair in shapes])
        backward = np.array([[init.ratios(s)[1] for s in pair] for pair in shapes])
        variances = np.ones((depth, 2))
        if point["init"] == "fixup":
            variances[:, 0], variances[:, 1] = 1.0 / depth, 0.0
        alpha = point["branch_scale"] * depth ** spec.branch_depth_exponent
        factors = trained_factors(spec, tuple(point.values()))
        values = residual.predict(point["activation"], gains, biases, alpha, variances, forward, backward, width,
                                  spec.loss, spec.outputs, spec.batch, positions, factors.readout**2)
        rows = (len(g.gain), len(g.bias_std))
        for key in LAYER_STATS:
            out[key][index][..., :depth, :] = values[key].reshape(rows + (depth, 2))
        _trained(out, index, factors, depth)
        for key in stream_stats:
            out[key][index][..., :depth] = values[key].reshape(rows + (depth,))
        loss[index] = values["loss"].reshape(rows)
    ds_coords = {**coords(spec), "branch_layer": np.arange(1, 3)}
    data = {f"theory_{k}": (g.axes + ("layer", "branch_layer"), out[k], _attrs(k, spec.conv, True))
            for k in LAYER_STATS + _trained_stats(spec)}
    data.update({f"theory_{k}": (g.axes + ("layer",), out[k], _attrs(k, spec.conv, True)) for k in stream_stats})
    data["theory_loss"] = (g.axes, loss, _attrs("loss", spec.conv, True))
    return xr.Dataset(data, coords=ds_coords)


def _forward_unique(name: str, gains: np.ndarray, biases: np.ndarray, ratio: np.ndarray, batch: int) -> recursion.Forward:
    """The forward recursion, run once per distinct (σ_w, σ_b, ratios) row.

    Under fan_in every ratio is 1, and under constant widths every init's are, so the many
    architectures of a grid mostly share their forward pass.
    """
    rows = np.concatenate([gains[:, None], biases[:, None], ratio], axis=1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    with float64():
        fw = recursion.forward(name, unique[:, 0], unique[:, 1], unique[:, 2:], batch)
    return recursion.Forward(*(x[inverse.ravel()] for x in fw))


def _log_norms(out: dict, index: tuple, name: str, init: str, widths: tuple, gains, biases) -> None:
    """Fills the exact relu law (and its large-width form) where it applies."""
    if activations.get(name).name != "relu" or init not in finite_width.GAUSSIAN_INITS:
        return
    depth = len(widths) - 1
    for k, b, gain in _bias_free_points(gains, biases):
        exact = finite_width.log_act_norm_moments(widths, gain, init)
        approx = finite_width.log_act_norm_moments_large_width(widths, gain, init)
        for key, v in zip(LOG_NORM_STATS, (exact.mean, exact.var, approx.mean, approx.var)):
            out[key][index][k, b, :depth] = v


def _bias_free_points(gains, biases):
    """``(gain index, bias index, gain)`` of the points with σ_b = 0 and σ_w > 0, where the exact laws
    apply (at σ_w = 0 every network is dead, and the laws are of alive networks)."""
    for b, bias in enumerate(biases):
        for k, gain in enumerate(gains):
            if bias == 0 and gain != 0:
                yield k, b, gain


def _finite_width_gradients(out: dict, fw_loss: np.ndarray, index: tuple, name: str, init: str, widths: tuple,
                            gains, biases, spec: Spec, known: dict, pairs: dict, readout_scale: float = 1.0) -> None:
    """Fills the exact finite-width gradient means (and, at batch 1 for relu, the law of their logarithm); at
    batch > 1 adds the point to ``pairs`` for ``_batch_weight_gradients``. ``known`` keeps the means
    computed so far in this prediction.

    A readout s times the standard one (μP's) is the standard readout of the network with every
    gain t = s^(1/L) times larger: the networks are positively homogeneous and bias-free, so
    x_l, the cotangents at x_l and z_l, and ∂ℓ/∂W_l are t^l, t^-(L-l)·s = t^l and t times those of
    this network at gain σ_w, with the same loss. Its means are this network's at σ_w·t times
    t^(2l) (cotangents) and t² (weight gradients).
    """
    act = activations.get(name)
    if act.family not in ("relu", "leaky_relu") or init not in finite_width.GAUSSIAN_INITS:
        return
    slope = act.params[0] if act.family == "leaky_relu" else 0.0
    depth = len(widths) - 1
    t = readout_scale ** (1.0 / depth)
    cotangent = t ** (2.0 * np.arange(1, depth + 1))
    for k, b, gain in _bias_free_points(gains, biases):
        gain = gain * t
        # The means depend on gain and init only through the layers' variances: fan_in and fan_avg
        # at constant widths, say, share them, and are computed once.
        key = (widths, relu_gradients.variance_scales(widths, gain, init).tobytes(), slope)
        if key not in known:
            known[key] = relu_gradients.gradient_means(widths, gain, init, spec.loss, spec.outputs, slope)
        means = known[key]
        out["fw_grad_act_meansq"][index][k, b, :depth] = means.grad_act_meansq * cotangent
        out["fw_grad_preact_meansq"][index][k, b, :depth] = means.grad_preact_meansq * cotangent
        fw_loss[index][k, b] = means.loss
        if spec.batch != 1:
            pairs.setdefault((widths, slope), []).append((index + (k, b), gain, init, t**2))
            continue
        out["fw_grad_weight_meansq"][index][k, b, :depth] = means.grad_weight_meansq * t**2
        out["fw_grad_weight_meansq_error"][index][k, b, :depth] = 0.0
        if slope != 0:
            continue  # the law of the logarithm is drawn for relu only
        law = relu_gradients.log_grad_weight_law(widths, gain, init, spec.loss, spec.outputs)
        out["log_grad_weight_norm_mean"][index][k, b, :depth] = law.mean + 2.0 * np.log(t)
        out["log_grad_weight_norm_var"][index][k, b, :depth] = law.var
        mean, var = relu_gradients.log_grad_weight_law_large_width(widths, gain, init, spec.loss, spec.outputs)
        out["log_grad_weight_norm_mean_large_width"][index][k, b, :depth] = mean + 2.0 * np.log(t)
        out["log_grad_weight_norm_var_large_width"][index][k, b, :depth] = var


def _batch_weight_gradients(out: dict, pairs: dict, spec: Spec) -> None:
    """Fills ``fw_grad_weight_meansq`` and its error at batch > 1, one set of draws per (widths, slope)."""
    for (widths, slope), points in pairs.items():
        depth = len(widths) - 1
        estimate = relu_batch.batch_weight_meansq(widths, [(gain, init) for _, gain, init, _ in points], spec.batch,
                                                  spec.loss, spec.outputs, slope, relu_batch.draws_for(spec.seeds))
        for (index, _, _, scale), mean, error in zip(points, estimate.mean, estimate.error):
            out["fw_grad_weight_meansq"][index][:depth] = mean * scale
            out["fw_grad_weight_meansq_error"][index][:depth] = error * scale


def _attrs(stat: str, conv: bool = False, residual: bool = False) -> dict:
    if residual:
        definition = ("the mean-field recursion of residual blocks (see sweep.theory.residual)"
                      + ("; per (channel, position), fans counting the k^d taps" if conv else ""))
        return {"long_name": f"theory: {stat}", "units": "1", "definition": definition}
    definition = _DEFINITIONS[stat]
    if conv:
        definition = _CONV_DEFINITIONS.get(stat, definition + "; per (channel, position), fans counting the k^d taps")
    return {"long_name": f"theory: {stat}", "units": "1", "definition": definition}
