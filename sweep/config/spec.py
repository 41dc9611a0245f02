"""The sweep spec: a TOML file and the same thing as a frozen Python object.

Every key is validated when the spec is built; an unknown key, a wrong type or a value
outside what is allowed raises ``SpecError`` naming the field, so that a typo is never
silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from sweep.config import activations, inits, parametrizations, profiles, validate
from sweep.errors import SpecError

GRID_AXES: tuple[str, ...] = ("activation", "init", "profile", "depth", "width", "gain", "bias_std")
"""The grid axes of a dense sweep, in the order of the dataset's dims (``Grid.axes`` of any sweep)."""

STATIC_AXES: tuple[str, ...] = GRID_AXES[:5]
"""The axes that set a dense network's architecture (``Grid.static_axes``); the others (and
``seed``) are ``vmap``-ed."""

OPTIONAL_AXES: tuple[str, ...] = ("kernel_size", "branch_scale", "parametrization")
"""Static axes a grid has only when its family needs them, after ``width``: empty tuples otherwise."""

ALL_GRID_AXES: tuple[str, ...] = GRID_AXES[:5] + OPTIONAL_AXES + GRID_AXES[5:]
"""Every axis a statistics grid can have, in the order of the dataset's dims."""

LAYERS = ("dense", "conv")
SAMPLERS = ("direct", "conditional")
BLOCKS = ("plain", "residual")
"""``block``: layers one after another, or residual blocks x_l = x_{l-1} + α·F_l(x_{l-1})."""
"""``layer``: fully connected layers, or circular convolutions over ``spatial`` positions."""

_INPUTS = ("gaussian",)
_LOSSES = ("mse", "projection")
PRECISIONS = ("highest", "default")
"""``"highest"``: exact float32 matmuls; ``"default"``: the backend's faster reduced precision."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """The axes of a sweep; each a tuple of coordinate values, never empty.

    Attributes:
      activation: canonical activation names (see ``sweep.activations``).
      init: init names (see ``sweep.inits``).
      profile: width-profile names (see ``sweep.profiles``).
      depth: numbers of hidden layers, positive.
      width: base widths n (also the input dimension), positive.
      gain: σ_w; weights have variance gain² / fan.
      bias_std: σ_b; biases are N(0, σ_b²).
      kernel_size: the convolutions' kernel sizes k (odd); empty for dense layers, whose
        grid has no such axis.
      branch_scale: residual networks' branch multipliers α ≥ 0; empty for plain networks.
      parametrization: the parametrisations (``sweep.config.parametrizations``); empty for the
        standard one alone.
    """

    activation: tuple[str, ...] = ("relu",)
    init: tuple[str, ...] = ("fan_in",)
    profile: tuple[str, ...] = ("constant",)
    depth: tuple[int, ...] = (10,)
    width: tuple[int, ...] = (64,)
    gain: tuple[float, ...] = (math.sqrt(2.0),)
    bias_std: tuple[float, ...] = (0.0,)
    kernel_size: tuple[int, ...] = ()
    branch_scale: tuple[float, ...] = ()
    parametrization: tuple[str, ...] = ()

    @property
    def axes(self) -> tuple[str, ...]:
        """The grid's axes in the order of the dataset's dims: ``GRID_AXES``, with
        ``kernel_size`` (convolutions), ``branch_scale`` (residual networks) and ``parametrization``
        (grids that set it) after ``width``."""
        return self.static_axes + GRID_AXES[5:]

    @property
    def static_axes(self) -> tuple[str, ...]:
        """The axes that set a network's group (its architecture and branch scale); the others
        (and ``seed``) are ``vmap``-ed."""
        return STATIC_AXES + tuple(a for a in OPTIONAL_AXES if getattr(self, a))

    @property
    def shape(self) -> tuple[int, ...]:
        """Length of each axis, in ``axes`` order."""
        return tuple(len(getattr(self, a)) for a in self.axes)

    @property
    def size(self) -> int:
        """Number of grid points."""
        return math.prod(self.shape)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Grid:
        """Builds and validates a grid from its TOML table.

        Raises:
          SpecError: unknown axis, empty axis, wrong type or value out of range.
        """
        validate.reject_unknown(raw, ALL_GRID_AXES, "grid")
        values: dict[str, tuple] = {}
        for axis in ("activation", "init", "profile"):
            names = validate.string_list(raw.get(axis, getattr(cls, axis)), f"grid.{axis}")
            if axis == "activation":
                names = [activations.get(n, "grid.activation").name for n in names]
            elif axis == "init":
                names = [inits.get(n, "grid.init").name for n in names]
            else:
                names = [profiles.check(n, "grid.profile") for n in names]
            values[axis] = validate.unique(names, f"grid.{axis}")
        for axis in ("depth", "width"):
            ints = validate.number_list(raw.get(axis, getattr(cls, axis)), f"grid.{axis}", integer=True)
            if any(v < 1 for v in ints):
                raise SpecError(f"grid.{axis}", f"must be positive integers, got {ints}")
            values[axis] = validate.unique(ints, f"grid.{axis}")
        for axis in ("gain", "bias_std"):
            floats = validate.number_list(raw.get(axis, getattr(cls, axis)), f"grid.{axis}", integer=False)
            if any(not math.isfinite(v) or v < 0 for v in floats):
                raise SpecError(f"grid.{axis}", f"must be finite numbers >= 0, got {floats}")
            values[axis] = validate.unique(floats, f"grid.{axis}")
        if "kernel_size" in raw:
            sizes = validate.number_list(raw["kernel_size"], "grid.kernel_size", integer=True)
            if any(k < 1 or k % 2 == 0 for k in sizes):
                raise SpecError("grid.kernel_size", f"must be odd positive integers, got {sizes}")
            values["kernel_size"] = validate.unique(sizes, "grid.kernel_size")
        if "branch_scale" in raw:
            scales = validate.number_list(raw["branch_scale"], "grid.branch_scale", integer=False)
            if any(not math.isfinite(v) or v < 0 for v in scales):
                raise SpecError("grid.branch_scale", f"must be finite numbers >= 0, got {scales}")
            values["branch_scale"] = validate.unique(scales, "grid.branch_scale")
        if "parametrization" in raw:
            names = validate.string_list(raw["parametrization"], "grid.parametrization")
            values["parametrization"] = validate.unique([parametrizations.check(n, "grid.parametrization") for n in names],
                                                        "grid.parametrization")
        return cls(**values)


class SpecBase:
    """What every kind of spec shares: the network family's switches, copies, and the plain-dict and JSON forms."""

    @property
    def conv(self) -> bool:
        """Whether the layers are convolutions."""
        return self.layer == "conv"

    @property
    def residual(self) -> bool:
        """Whether the network is made of residual blocks."""
        return self.block == "residual"

    def replace(self, **changes: Any):
        """A copy with fields changed and validated again; ``grid`` may be a dict of axes."""
        raw = self.to_dict()
        grid_changes = changes.pop("grid", None)
        raw.update(changes)
        if dataclasses.is_dataclass(grid_changes):
            raw["grid"] = dataclasses.asdict(grid_changes)
        elif grid_changes is not None:
            raw["grid"] = {**raw["grid"], **grid_changes}
        return type(self).from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that ``from_dict`` turns back into an equal spec (ranges expanded).

        The keys of the network family (``layer``, ``spatial``, ``kernel_size``, ``parametrization``),
        ``sampler`` and the training keys added since (``sharpness_iterations``, ``coord_steps``,
        ``readout_init``, ``base_width``) appear only when they differ from their defaults, so a
        dense spec reads as it always has.
        """
        raw = dataclasses.asdict(self)
        raw["grid"] = {k: list(v) for k, v in raw["grid"].items() if k not in OPTIONAL_AXES or v}
        if raw.get("layer") == "dense":
            del raw["layer"]
            raw.pop("spatial", None)
        elif "spatial" in raw:
            raw["spatial"] = list(raw["spatial"])
        if raw.get("block") == "plain":
            del raw["block"], raw["branch_depth_exponent"]
        if raw.get("sampler") == "direct":
            del raw["sampler"]
        for key, default in (("sharpness_iterations", 0), ("coord_steps", 3), ("readout_init", "normal"),
                             ("base_width", None)):
            if key in raw and raw[key] == default:
                del raw[key]
        return raw

    @classmethod
    def _common_fields(cls, raw: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
        """The fields every kind has, validated: ``kind``, ``name``, ``rng_seed``, ``seeds``,
        ``batch``, ``precision``; after refusing a non-table or an unknown key."""
        if not isinstance(raw, dict):
            raise SpecError("spec", f"must be a table of keys, got {type(raw).__name__}")
        validate.reject_unknown(raw, {f.name for f in dataclasses.fields(cls)}, "")
        name = raw.get("name", cls.name)
        if not isinstance(name, str) or not validate.NAME.match(name):
            raise SpecError("name", f"must be letters, digits, '.', '_' or '-', got {name!r}")
        return {
            "kind": validate.choice(raw.get("kind", cls.kind), "kind", kinds), "name": name,
            "rng_seed": validate.integer(raw.get("rng_seed", cls.rng_seed), "rng_seed", minimum=0),
            "seeds": validate.integer(raw.get("seeds", cls.seeds), "seeds", minimum=1),
            "batch": validate.integer(raw.get("batch", cls.batch), "batch", minimum=1),
            "precision": validate.choice(raw.get("precision", cls.precision), "precision", PRECISIONS),
        }

    def to_json(self) -> str:
        """The spec as JSON, as stored in the dataset's attributes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        """Inverse of ``to_json``."""
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class Spec(SpecBase):
    """A whole sweep.

    Attributes:
      name: a short name, used for default output paths.
      kind: ``"stats"``: random-init statistics. (``"train"`` specs are ``TrainSpec``s, see
        ``sweep.config.train_spec``; ``sweep.load_spec`` reads either kind.)
      rng_seed: base PRNG seed of the whole sweep.
      seeds: independent networks per grid point (dim ``seed`` = 0..seeds-1).
      batch: inputs per network.
      input: ``"gaussian"``: i.i.d. N(0, 1) inputs of dimension ``width``.
      loss: ``"mse"`` (linear readout against random Gaussian targets) or ``"projection"``
        (a random linear projection of the last layer).
      outputs: readout dimension of the ``"mse"`` loss.
      precision: ``"highest"`` (exact float32 matmuls) or ``"default"`` (the backend's
        faster, reduced-precision matmuls on GPU and TPU).
      jacobian: also record the singular values of the input-output Jacobian.
      common_random_numbers: networks that differ only in gain share all their random
        numbers (weights at unit gain, biases, inputs, readout, targets): those of the
        network at the first gain. ``False`` (the default) draws every network independently.
      layer: ``"dense"`` or ``"conv"``: circular convolutions of stride 1 over ``spatial``
        positions, ``width`` channels and ``kernel_size`` (a grid axis) taps per spatial dim;
        inputs are i.i.d. N(0, 1) images of ``width`` channels, and the readout averages the
        last layer over positions before the loss. A conv layer's fans are k^d times its
        channels, as He et al. (2015) count them.
      spatial: the conv inputs' spatial shape, ``(s,)`` or ``(s, s')`` (empty for dense).
      block: ``"plain"`` or ``"residual"``: ``depth`` blocks x_l = x_{l-1} + α_eff·F_l(x_{l-1})
        with the pre-activation branch F_l(x) = W_{l,2} φ(W_{l,1} φ(x) + b_{l,1}) + b_{l,2}
        (He et al. 2016), stream width ``width``, inner width the profile's; α is the grid
        axis ``branch_scale``.
      branch_depth_exponent: residual networks' α_eff = α · depth^exponent (−0.5: the 1/√L rule).
      sampler: ``"direct"`` draws every weight matrix; ``"conditional"`` samples each Gaussian
        dense layer with more inputs than ``batch`` from its exact conditional law given the
        batch (``sweep.model.conditional``): the same joint law of every statistic at a cost
        linear in the width. Layers it does not apply to (non-Gaussian inits, n_in <= batch,
        and every layer when ``jacobian`` is set) are drawn; the store's ``sampler_layers``
        attribute says which ran how.
      base_width: the width at which every parametrisation is the standard one; needed by,
        and only by, a grid whose ``parametrization`` axis has ``"ntk"`` or ``"mup"``. A
        statistics network's effective weights have the same law in every parametrisation;
        what changes is the probe readout's init (μP) and the gradient and step of each trained
        tensor (the ``grad_param_meansq`` and ``sgd_update_meansq`` variables).
      scaled_copies: with common random numbers, no biases (every bias std 0), positive
        gains and a positively homogeneous activation (relu, leaky relu, linear), the gains of
        a draw are scaled copies of one network: run it once at unit gain and rescale
        (``sweep.scaled_copies``; equal up to float32 rounding). ``False`` runs every gain's
        passes. Ignored otherwise.
      grid: the grid axes.
    """

    name: str = "sweep"
    kind: str = "stats"
    rng_seed: int = 0
    seeds: int = 16
    batch: int = 128
    input: str = "gaussian"
    loss: str = "mse"
    outputs: int = 10
    precision: str = "highest"
    jacobian: bool = False
    common_random_numbers: bool = False
    scaled_copies: bool = True
    sampler: str = "direct"
    layer: str = "dense"
    spatial: tuple[int, ...] = ()
    block: str = "plain"
    branch_depth_exponent: float = 0.0
    base_width: int | None = None
    grid: Grid = dataclasses.field(default_factory=Grid)

    @property
    def num_networks(self) -> int:
        """Networks in the sweep: grid points times seeds."""
        return self.grid.size * self.seeds

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Spec:
        """Builds and validates a spec from a dict shaped like the TOML file.

        Raises:
          SpecError: naming the first offending field (a training spec, ``kind = "train"``,
            is refused here: it is a ``TrainSpec``, and ``sweep.load_spec`` reads either kind).
        """
        if isinstance(raw, dict) and raw.get("kind") == "train":
            raise SpecError("kind", "a kind = \"train\" spec is a TrainSpec; sweep.load_spec reads either kind")
        kw = cls._common_fields(raw, ("stats",))
        kw["outputs"] = validate.integer(raw.get("outputs", cls.outputs), "outputs", minimum=1)
        kw["input"] = validate.choice(raw.get("input", cls.input), "input", _INPUTS)
        kw["loss"] = validate.choice(raw.get("loss", cls.loss), "loss", _LOSSES)
        kw["jacobian"] = validate.boolean(raw.get("jacobian", cls.jacobian), "jacobian")
        kw["common_random_numbers"] = validate.boolean(
            raw.get("common_random_numbers", cls.common_random_numbers), "common_random_numbers")
        kw["scaled_copies"] = validate.boolean(raw.get("scaled_copies", cls.scaled_copies), "scaled_copies")
        kw["grid"] = validate.grid(raw.get("grid", {}), Grid)
        kw["base_width"] = base_width_field(raw, kw["grid"])
        kw["layer"] = validate.choice(raw.get("layer", cls.layer), "layer", LAYERS)
        kw["spatial"], kw["grid"] = layer_fields(raw, kw["layer"], kw["grid"], kw["jacobian"])
        kw["block"] = validate.choice(raw.get("block", cls.block), "block", BLOCKS)
        kw["branch_depth_exponent"], kw["grid"] = block_fields(raw, kw)
        kw["sampler"] = validate.choice(raw.get("sampler", cls.sampler), "sampler", SAMPLERS)
        if kw["sampler"] == "conditional" and (kw["layer"] != "dense" or kw["block"] != "plain"):
            raise SpecError("sampler", "\"conditional\" is only for layer = \"dense\", block = \"plain\"")
        return cls(**kw)

    @classmethod
    def from_toml(cls, path: str | Path) -> Spec:
        """Reads and validates a statistics spec file.

        Raises:
          SpecError: the file is missing, is not TOML, or a field is bad.
        """
        return cls.from_dict(read_toml(path))


def layer_fields(raw: dict[str, Any], layer: str, grid: Grid, jacobian: bool) -> tuple[tuple[int, ...], Grid]:
    """``spatial`` and the grid, checked against the layer type (conv grids get ``kernel_size = [3]``
    by default)."""
    if layer == "dense":
        if "spatial" in raw:
            raise SpecError("spatial", "is only for layer = \"conv\"")
        if grid.kernel_size:
            raise SpecError("grid.kernel_size", "is only for layer = \"conv\"")
        if "delta_orthogonal" in grid.init:
            raise SpecError("grid.init", "delta_orthogonal is only for layer = \"conv\"")
        return (), grid
    if "spatial" not in raw:
        raise SpecError("spatial", "missing; layer = \"conv\" needs the input's spatial shape, [s] or [s, s]")
    spatial = raw["spatial"]
    if (not isinstance(spatial, list) or not 1 <= len(spatial) <= 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in spatial)):
        raise SpecError("spatial", f"must be a list of one or two positive integers, got {spatial!r}")
    if jacobian:
        raise SpecError("jacobian", "is only for layer = \"dense\" (a conv net's Jacobian has (positions · channels)² entries)")
    if not grid.kernel_size:
        grid = dataclasses.replace(grid, kernel_size=(3,))
    if max(grid.kernel_size) > min(spatial):
        raise SpecError("grid.kernel_size", f"must be at most the smallest spatial size {min(spatial)}, "
                                            f"got {list(grid.kernel_size)}")
    if "delta_orthogonal" in grid.init:
        for profile in grid.profile:
            for width in grid.width:
                widths = profiles.widths(profile, width, max(grid.depth))
                for a, b in zip(widths[:-1], widths[1:]):
                    if a > b:
                        raise SpecError("grid.init", f"delta_orthogonal needs fan_in <= fan_out in every layer; profile "
                                                     f"{profile!r} at width {width} has a layer of {a} > {b} channels")
    return tuple(spatial), grid


def block_fields(raw: dict[str, Any], kw: dict[str, Any]) -> tuple[float, Grid]:
    """``branch_depth_exponent`` and the grid, checked against the block type (residual grids get
    ``branch_scale = [1.0]`` by default)."""
    grid = kw["grid"]
    exponent = raw.get("branch_depth_exponent", 0.0)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not math.isfinite(exponent):
        raise SpecError("branch_depth_exponent", f"must be a number, got {exponent!r}")
    if kw["block"] == "plain":
        if grid.branch_scale:
            raise SpecError("grid.branch_scale", "is only for block = \"residual\"")
        if "branch_depth_exponent" in raw:
            raise SpecError("branch_depth_exponent", "is only for block = \"residual\"")
        if "fixup" in grid.init:
            raise SpecError("grid.init", "fixup is only for block = \"residual\"")
        return 0.0, grid
    for key in ("common_random_numbers", "jacobian"):
        if kw[key]:
            raise SpecError(key, "is only for block = \"plain\"")
    if not grid.branch_scale:
        grid = dataclasses.replace(grid, branch_scale=(1.0,))
    return float(exponent), grid


def base_width_field(raw: dict[str, Any], grid: Grid) -> int | None:
    """``base_width``, checked against the parametrisations of the grid."""
    scaled = [p for p in grid.parametrization if p != "standard"]
    if "base_width" not in raw:
        if scaled:
            raise SpecError("base_width", f"missing; grid.parametrization {scaled} scales with width relative to it")
        return None
    if not scaled:
        raise SpecError("base_width", "is only for a grid.parametrization with \"ntk\" or \"mup\"")
    return validate.integer(raw["base_width"], "base_width", minimum=1)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table of a TOML spec file, not yet validated.

    Raises:
      SpecError: the file is missing or is not TOML.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError("spec", f"cannot read {str(path)!r}: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("spec", f"{str(path)!r} is not valid TOML: {e}") from None
