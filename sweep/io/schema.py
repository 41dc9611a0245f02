"""The dataset contract of both kinds of sweep: dims, variables, their attributes (no JAX).

Statistics sweeps (``kind = "stats"``): dims are every grid axis (each with its coordinate
even when of length 1), then ``seed``, and ``layer`` = 1..max(depth) for per-layer statistics
(NaN beyond a network's own depth); ``singular_value`` for the Jacobian.

Training sweeps (``kind = "train"``): the grid axes, ``learning_rate`` and ``seed`` for what
depends on the run; ``step`` (every ``log_every``-th step) and ``eval_step`` (0,
``eval_every``, ..., ``steps``) for the curves; and, without ``learning_rate``, the initial
networks' ``loss_at_init`` and per-layer statistics ``init_<stat>`` (of residual networks
with ``branch_layer``, and ``init_stream_*`` per block).

Every variable carries ``long_name``, ``units`` and a ``definition``; ``measured`` gives the
variables a sweep computes, with their full shapes, dtypes and fill values, and ``to_dataset``
wraps arrays of those shapes into the dataset.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from sweep.config import inits, parametrizations, profiles
from sweep.config.spec import GRID_AXES, Spec
from sweep.config.train_spec import TrainSpec

NETWORK_DIMS: tuple[str, ...] = GRID_AXES + ("seed",)
"""The dims of one network's values in a dense sweep (``network_dims``)."""
RUN_DIMS: tuple[str, ...] = GRID_AXES + ("learning_rate", "seed")
"""The dims of one training run's values in a dense training sweep (``run_dims``)."""


def network_dims(spec: Spec | TrainSpec) -> tuple[str, ...]:
    """The dims of one network's values: the statistics grid's axes, then ``seed``."""
    grid = spec.grid.stats if isinstance(spec, TrainSpec) else spec.grid
    return grid.axes + ("seed",)


def run_dims(spec: TrainSpec) -> tuple[str, ...]:
    """The dims of one training run's values: the training grid's axes (``learning_rate`` last), then ``seed``."""
    return spec.grid.axes + ("seed",)

STATS: dict[str, tuple[str, str]] = {
    "preact_mean": ("mean pre-activation", "mean over units and batch of z_l = W_l x_{l-1} + b_l"),
    "preact_meansq": ("pre-activation second moment", "mean over units and batch of z_l²"),
    "preact_var": ("pre-activation variance", "variance of z_l over units and batch, pooled"),
    "act_mean": ("mean activation", "mean over units and batch of x_l = φ(z_l)"),
    "act_meansq": ("activation second moment", "mean over units and batch of x_l²"),
    "act_var": ("activation variance", "variance of x_l over units and batch, pooled"),
    "dead_fraction": ("dead unit fraction", "fraction of units with φ'(z_l) = 0 on every example"),
    "grad_act_meansq": ("activation gradient second moment",
                        "mean over units and batch of (∂ℓ/∂x_l)², ℓ each example's own loss"),
    "grad_preact_meansq": ("pre-activation gradient second moment",
                           "mean over units and batch of (∂ℓ/∂z_l)², ℓ each example's own loss"),
    "grad_weight_meansq": ("weight gradient second moment",
                           "mean over entries of (∂C/∂W_l)², C the batch-mean loss"),
}
"""The per-layer statistics the kernel measures, in its order: ``(long_name, definition)``."""
LAYER_STATS: tuple[str, ...] = tuple(STATS)

_CONV_STATS: dict[str, tuple[str, str]] = {
    name: (long_name, definition.replace("W_l x_{l-1}", "W_l ⋆ x_{l-1} (circular convolution)")
           .replace("over units and batch", "over channels, positions and batch")
           .replace("over units", "over channels, positions").replace("units with", "units (channel, position) with")
           .replace("over entries", "over the kernel's entries"))
    for name, (long_name, definition) in STATS.items()
}
"""``STATS`` as a conv net defines them: a unit is a (channel, position); z_l = W_l ⋆ x_{l-1} + b_l."""

_BRANCH = ("in a residual network, of block l's branch layer j (dim branch_layer): z_1 = W_1 φ(x_{l-1}) + b_1, "
           "z_2 = W_2 φ(z_1) + b_2; activation statistics are of φ(z_1) (NaN at j = 2, whose output z_2 joins the "
           "stream)")
STREAM: dict[str, tuple[str, str]] = {
    "stream_mean": ("mean of the residual stream", "mean over units and batch of x_l = x_{l-1} + α_eff z_2, block l's output"),
    "stream_meansq": ("residual stream second moment", "mean over units and batch of x_l², block l's output"),
    "grad_stream_meansq": ("residual stream gradient second moment",
                           "mean over units and batch of (∂ℓ/∂x_l)², ℓ each example's own loss"),
}
"""A residual network's per-block statistics of its stream."""

PARAMETRIZED: dict[str, tuple[str, str]] = {
    "grad_param_meansq": ("trained parameter gradient second moment",
                          "mean over entries of (∂C/∂ω_l)² = a_l² grad_weight_meansq, ω_l the trained parameter behind "
                          "the effective weights W_l = a_l ω_l (a_l the parametrisation's multiplier)"),
    "sgd_update_meansq": ("SGD step second moment per unit learning rate",
                          "mean over entries of (ΔW_l/η)² = (c_l a_l²)² grad_weight_meansq, ΔW_l the change of the "
                          "effective weights in a first SGD step at base learning rate η (c_l the layer's "
                          "learning-rate factor)"),
}
"""A statistics sweep's variables per trained tensor, with a ``parametrization`` axis (``sweep.plan.TrainedFactors``)."""

_OTHER: dict[str, tuple[str, str]] = {
    "overflow": ("overflow", "a statistic of this layer exceeded the float range and is not finite"),
    "loss": ("loss", "batch-mean loss C at initialisation"),
    "jacobian_singular_values": ("Jacobian singular values",
                                 "singular values of ∂x_L/∂x_0 at the first input, descending"),
    "layer_width": ("layer width", "n_l, the width of hidden layer l; 0 beyond the depth"),
}

_TRAINING: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    # name: (dims after RUN_DIMS, long_name, units ("loss" for the task's loss units), definition)
    "train_loss": (("step",), "training loss", "loss",
                   "mini-batch loss at the step, before its update; NaN after the network diverged"),
    "test_loss": (("eval_step",), "test loss", "loss",
                  "mean loss over the test split after eval_step updates; NaN after the network diverged"),
    "test_accuracy": (("eval_step",), "test accuracy", "1",
                      "fraction of the test split classified correctly (arg-max of the logits); "
                      "NaN for regression and after the network diverged"),
    "diverged": ((), "diverged", "1",
                 "a training or test loss was not finite (NaN or inf) at some step; the network was then frozen"),
    "steps_to_target": ((), "steps to target loss", "step",
                        "the first step whose training loss is below target_loss (see attrs); NaN if none"),
}

COORDINATES: dict[str, tuple[str, str]] = {
    "activation": ("activation function φ", ""), "init": ("weight initialisation", ""),
    "profile": ("width profile", ""), "depth": ("number of hidden layers L", "1"),
    "width": ("base width n (input dimension)", "1"), "gain": ("weight gain σ_w", "1"),
    "bias_std": ("bias standard deviation σ_b", "1"), "seed": ("network seed", "1"),
    "kernel_size": ("convolution kernel size k (taps per spatial dim)", "1"),
    "branch_scale": ("residual branch multiplier α (before the depth factor depth^branch_depth_exponent)", "1"),
    "branch_layer": ("weight layer j of a residual block's branch", "1"),
    "layer": ("hidden layer l", "1"), "singular_value": ("singular value rank", "1"),
    "learning_rate": ("learning rate", "1"), "step": ("optimizer step (updates before it)", "step"),
    "eval_step": ("updates before the evaluation", "step"),
    "coord_step": ("updates before the coordinate check", "step"),
    "parametrization": ("parametrisation (standard, ntk or mup; see attrs parametrization_table)", ""),
}
"""``(long_name, units)`` of each coordinate."""


class Variable(NamedTuple):
    """One variable of the contract.

    Attributes:
      dims: its dims, in order.
      dtype: numpy dtype.
      fill: the value of what is not (yet) computed.
      attrs: ``long_name``, ``units`` and ``definition``.
    """

    dims: tuple[str, ...]
    dtype: type
    fill: object
    attrs: dict


def _attrs(long_name: str, definition: str, units: str = "1") -> dict:
    return {"long_name": long_name, "units": units, "definition": definition}


def network_family(spec: Spec | TrainSpec) -> str:
    """One line on a sweep's network family."""
    layers = "dense layers (width = units)"
    if spec.conv:
        layers = (f"circular convolutions of stride 1 over {' x '.join(map(str, spec.spatial))} positions "
                  "(width = channels), global average pooling before the readout")
    if not spec.residual:
        return layers
    exponent = "" if spec.branch_depth_exponent == 0 else f" · depth^{spec.branch_depth_exponent:g}"
    return (f"residual blocks x_l = x_(l-1) + α{exponent} · (W_2 φ(W_1 φ(x_(l-1)) + b_1) + b_2), stream width = width, "
            f"inner width = the profile's; {layers}")


def sampler_layers(spec: Spec) -> str:
    """Which layers of a ``sampler = "conditional"`` sweep ran conditionally, and which were drawn.

    One clause per init, profile and width (of the deepest network; shallower ones are its
    first layers), e.g. ``fan_in constant 256: conditional 1-30``; ``drawn`` lists the rest.
    """
    from sweep.model import conditional

    if spec.jacobian:
        return "every layer drawn: the Jacobian needs the weight matrices"
    clauses = []
    for init in spec.grid.init:
        distribution = inits.get(init).distribution
        for profile in spec.grid.profile:
            for width in spec.grid.width:
                widths = profiles.widths(profile, width, max(spec.grid.depth))
                runs = [conditional.applies(distribution, n_in, spec.batch) for n_in in widths[:-1]]
                parts = [f"{kind} {_ranges([i + 1 for i, r in enumerate(runs) if r == want])}"
                         for kind, want in (("conditional", True), ("drawn", False)) if want in runs]
                clauses.append(f"{init} {profile} {width}: {', '.join(parts)}")
    return f"batch {spec.batch}; " + "; ".join(clauses)


def _ranges(layers: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3,5``."""
    out, start = [], None
    for i, l in enumerate(layers):
        if start is None:
            start = l
        if i + 1 == len(layers) or layers[i + 1] != l + 1:
            out.append(str(start) if start == l else f"{start}-{l}")
            start = None
    return ",".join(out)


def sizes(spec: Spec | TrainSpec) -> dict[str, int]:
    """The length of every dim of a sweep's dataset."""
    g = spec.grid
    out = {axis: len(getattr(g, axis)) for axis in g.axes}
    out.update(seed=spec.seeds, layer=max(g.depth))
    if spec.residual:
        out["branch_layer"] = 2
    if isinstance(spec, TrainSpec):
        out.update(learning_rate=len(g.learning_rate), step=len(spec.log_steps), eval_step=len(spec.eval_steps),
                   coord_step=len(spec.coord_check_steps))
    elif spec.jacobian:
        out.update(singular_value=max(g.width))
    return out


def measured(spec: Spec | TrainSpec) -> dict[str, Variable]:
    """The variables a sweep computes, by name, in the order they are stored."""
    if isinstance(spec, TrainSpec):
        return _training(spec)
    dims = network_dims(spec)
    out = _network_statistics(spec, dims, lambda name, long_name, definition: (name, long_name, definition))
    if spec.grid.parametrization:
        per_layer = dims + ("layer",) + (("branch_layer",) if spec.residual else ())
        for name, (long_name, definition) in PARAMETRIZED.items():
            out[name] = Variable(per_layer, np.float64, np.nan, _attrs(long_name, definition))
    out["loss"] = Variable(dims, np.float64, np.nan, _attrs(*_OTHER["loss"]))
    if spec.jacobian:
        out["jacobian_singular_values"] = Variable(dims + ("singular_value",), np.float64, np.nan,
                                                   _attrs(*_OTHER["jacobian_singular_values"]))
    return out


def _network_statistics(spec: Spec | TrainSpec, dims: tuple[str, ...], named) -> dict[str, Variable]:
    """The statistics kernel's per-layer (and per-block) variables of a sweep's family, and ``overflow``.

    ``named(name, long_name, definition) -> (name, long_name, definition)`` renames them (a
    training sweep's ``init_*``).
    """
    layer = dims + ("layer",)
    stats = {**STATS, **_CONV_STATS} if spec.conv else STATS
    if spec.residual:
        stats = {name: (long_name, f"{definition}; {_BRANCH}") for name, (long_name, definition) in stats.items()}
    per_layer = layer + (("branch_layer",) if spec.residual else ())
    out = {}
    for name, (long_name, definition) in stats.items():
        name, long_name, definition = named(name, long_name, definition)
        out[name] = Variable(per_layer, np.float64, np.nan, _attrs(long_name, definition))
    if spec.residual:
        for name, (long_name, definition) in STREAM.items():
            name, long_name, definition = named(name, long_name, definition)
            out[name] = Variable(layer, np.float64, np.nan, _attrs(long_name, definition))
    name, long_name, definition = named("overflow", *_OTHER["overflow"])
    out[name] = Variable(layer, np.bool_, False, _attrs(long_name, definition))
    return out


def _training(spec: TrainSpec) -> dict[str, Variable]:
    loss_units = "nat" if spec.task == "classification" else "1"
    runs, networks = run_dims(spec), network_dims(spec)
    out = {}
    for name, (extra, long_name, units, definition) in _TRAINING.items():
        dtype, fill = {"diverged": (np.bool_, False), "steps_to_target": (np.float64, np.nan)}.get(
            name, (np.float32, np.nan))
        out[name] = Variable(runs + extra, dtype, fill, _attrs(long_name, definition,
                                                               loss_units if units == "loss" else units))
    out["loss_at_init"] = Variable(networks, np.float32, np.nan, _attrs(
        "loss at initialisation",
        "mean loss over the whole training split before any update (the same at every learning rate)", loss_units))
    if spec.sharpness_iterations:
        out.update(_first_step(spec, loss_units))
    out.update(_coordinate_check(spec))
    source = "statistics kernel on batch i.i.d. N(0, 1) inputs (see attrs init_statistics)"
    out.update(_network_statistics(spec, networks, lambda name, long_name, definition: (
        f"init_{name}", f"{long_name} at initialisation", f"{definition}; {source}")))
    return out


def _first_step(spec: TrainSpec, loss_units: str) -> dict[str, Variable]:
    """The first step's record: C is the mean loss of step 0's mini-batch, g = ∇C and H its Hessian at θ₀."""
    runs, networks = run_dims(spec), network_dims(spec)
    squared = "1" if loss_units == "1" else f"{loss_units}²"
    return {
        "first_step_grad_sqnorm": Variable(networks, np.float32, np.nan, _attrs(
            "squared gradient norm at initialisation", "‖g‖² = ‖∇C(θ₀)‖² over every trained parameter, C the mean loss "
            "of step 0's mini-batch; −η‖g‖² is the first SGD step's loss change to first order", squared)),
        "first_step_curvature": Variable(networks, np.float32, np.nan, _attrs(
            "curvature along the gradient at initialisation", "gᵀHg / ‖g‖², H the Hessian of C at θ₀; "
            "with it the first SGD step's loss change is −η‖g‖² (1 − η gᵀHg / (2‖g‖²)) to second order", loss_units)),
        "init_sharpness": Variable(networks, np.float32, np.nan, _attrs(
            "sharpness at initialisation", f"λ_max, the largest eigenvalue of H, the Hessian of C at θ₀: the Rayleigh "
            f"quotient after {spec.sharpness_iterations} power-iteration steps of Hessian-vector products from g, "
            "half on H and half on H + |λ| I, |λ| the largest magnitude the first half found", loss_units)),
        "first_step_loss_change": Variable(runs, np.float32, np.nan, _attrs(
            "first step's loss change", "C(θ₁) − C(θ₀) on step 0's mini-batch, θ₁ the parameters after the "
            "optimizer's first update (float32)", loss_units)),
    }


_COORDINATE_CHECK: dict[str, tuple[str, str]] = {
    "preact_abs_mean": ("mean |pre-activation|", "mean over the batch, units and positions of |z_l|"),
    "preact_rms": ("RMS pre-activation", "√(mean over the batch, units and positions of z_l²)"),
    "act_abs_mean": ("mean |activation|", "mean over the batch, units and positions of |x_l|"),
    "act_rms": ("RMS activation", "√(mean over the batch, units and positions of x_l²)"),
    "output_abs_mean": ("mean |output|", "mean over the batch and outputs of |f(x)|, the readout's outputs"),
    "output_rms": ("RMS output", "√(mean over the batch and outputs of f(x)²)"),
}


def _coordinate_check(spec: TrainSpec) -> dict[str, Variable]:
    """The coordinate check: sizes of each layer's coordinates on a fixed batch as training goes."""
    runs = run_dims(spec) + ("coord_step",)
    where = ("on step 0's mini-batch of the training set, after coord_step updates (the mup package's coordinate "
             "check); NaN after the network diverged")
    residual = "; of a residual block, z_l is its inner pre-activation W_1 φ(x_(l-1)) + b_1 and x_l its stream output"
    out = {}
    for name, (long_name, definition) in _COORDINATE_CHECK.items():
        per_layer = not name.startswith("output")
        dims = runs + (("layer",) if per_layer else ())
        text = f"{definition} {where}" + (residual if per_layer and spec.residual else "")
        out[f"coord_{name}"] = Variable(dims, np.float32, np.nan, _attrs(long_name, text))
    return out


def shape(spec: Spec | TrainSpec, variable: Variable) -> tuple[int, ...]:
    """A variable's full shape in a sweep."""
    n = sizes(spec)
    return tuple(n[d] for d in variable.dims)


def coordinates(spec: Spec | TrainSpec) -> dict[str, np.ndarray | list]:
    """The coordinate values of a sweep's dataset."""
    g = spec.grid
    coords = {axis: list(getattr(g, axis)) for axis in g.axes}
    coords["seed"] = np.arange(spec.seeds)
    coords["layer"] = np.arange(1, max(g.depth) + 1)
    if spec.residual:
        coords["branch_layer"] = np.arange(1, 3)
    if isinstance(spec, TrainSpec):
        coords["learning_rate"] = list(g.learning_rate)
        coords["step"] = np.asarray(spec.log_steps)
        coords["eval_step"] = np.asarray(spec.eval_steps)
        coords["coord_step"] = np.asarray(spec.coord_check_steps)
    elif spec.jacobian:
        coords["singular_value"] = np.arange(1, max(g.width) + 1)
    return coords


def layer_widths(spec: Spec | TrainSpec) -> np.ndarray:
    """n_l of every (profile, depth, width) and layer, 0 beyond the depth."""
    g = spec.grid
    out = np.zeros((len(g.profile), len(g.depth), len(g.width), max(g.depth)), np.int64)
    for i, p in enumerate(g.profile):
        for j, d in enumerate(g.depth):
            for k, w in enumerate(g.width):
                out[i, j, k, :d] = profiles.widths(p, w, d)[1:]
    return out


def to_dataset(spec: Spec | TrainSpec, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> xr.Dataset:
    """Wraps a sweep's measured arrays (full shapes, ``measured``'s names) into its dataset.

    Args:
      spec: the sweep.
      arrays: every measured variable, of its full shape.
      attrs: the dataset's attributes (provenance, and for training the data's).

    Returns:
      The dataset, with ``layer_width``, the attributes of every variable and coordinate, and
      the spec (``title``, ``spec`` as JSON) before ``attrs``.
    """
    data = {name: (v.dims, arrays[name], dict(v.attrs)) for name, v in measured(spec).items()}
    data["layer_width"] = (("profile", "depth", "width", "layer"), layer_widths(spec), _attrs(*_OTHER["layer_width"]))
    ds = xr.Dataset(data, coords=coordinates(spec))
    for axis, (long_name, units) in COORDINATES.items():
        if axis in ds.coords:
            ds[axis].attrs.update(long_name=long_name, units=units)
    if isinstance(spec, TrainSpec):
        ds["width"].attrs.update(long_name="base width n of the hidden layers")
    ds.attrs.update(title=f"sweep {spec.kind}: {spec.name}", spec=spec.to_json())
    if spec.conv or spec.residual:
        ds.attrs["network"] = network_family(spec)
    if spec.grid.parametrization:
        ds.attrs.update(base_width=spec.base_width, parametrization_table=parametrizations.TABLE)
    if isinstance(spec, Spec) and spec.sampler == "conditional":
        ds.attrs.update(sampler=spec.sampler, sampler_layers=sampler_layers(spec))
    ds.attrs.update(attrs or {})
    return ds


def template(spec: Spec | TrainSpec, attrs: dict | None = None) -> xr.Dataset:
    """The full dataset of a sweep with every measured value missing, using no memory for them."""
    arrays = {name: np.broadcast_to(np.asarray(v.fill, v.dtype), shape(spec, v)) for name, v in measured(spec).items()}
    return to_dataset(spec, arrays, attrs)


def empty_arrays(spec: Spec | TrainSpec) -> dict[str, np.ndarray]:
    """Writable measured arrays of their full shapes, filled as ``template``'s."""
    return {name: np.full(shape(spec, v), v.fill, v.dtype) for name, v in measured(spec).items()}
