"""The plan: a sweep of either kind cut into groups, jobs, micro-batches, calls and tiles.

A group is one architecture (activation, init, profile, depth, width). Its statistics run in
a compiled ``network.Program`` that it may share with other groups: every depth that is a
prefix of the deepest and every fan mode of one distribution share a program, so a grid
compiles once per (activation, distribution, profile, width, output width), not once per
point (``network.programs``). Its networks differ only along the vmapped axes: ``(gain, bias_std,
seed)`` in a statistics sweep, and ``learning_rate`` as well in a training sweep. A group's
work is one or more *jobs*, each a kind of kernel call over its own rectangle of networks:

* ``stats``: the statistics kernel over ``(gain, bias_std, seed)``;
* ``init``: the statistics kernel on a training sweep's initial networks, ``(gain, bias_std,
  seed)`` (every learning rate trains the same initial network);
* ``train``: training over ``(gain, bias_std, seed, learning_rate)``.

A job's *positions* are flat indices of its rectangle in C order, and three ways of cutting
them serve three purposes:

* Micro-batches: positions ``[m·µ, (m+1)·µ)``, the last one padded with the job's final
  network. ``µ`` is fixed by the program, the platform and the job's size (on a CPU,
  ``least_padded``: a power of two that pads a sixteenth of the networks at most), and a
  network is always computed inside the same micro-batch, hence the same compiled shape: this
  is what makes results bit-identical whatever the memory budget, device count, process count
  or resumption.
* Kernel calls: runs of whole micro-batches, as many as the memory budget allows per device.
* Tiles (``sweep.plan.tiles``): the stored chunks, the same cells of the group's rectangle for
  every job; a tile is complete when every job has computed its networks.

Every network has a global index, its position in the statistics grid
``(activation, init, profile, depth, width, gain, bias_std, seed)`` in C order (with
``kernel_size`` after ``width`` for convolutions); its random
draws depend only on ``rng_seed`` and that index (``sweep.model.streams``), never on the
chunking, and not on the learning rate or the parametrisation (which has no place in it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from sweep.config import STATIC_AXES, Spec, TrainSpec, parametrizations, profiles
from sweep.config.train_spec import DATASET_SHAPES
from sweep.errors import SpecError
from sweep.io import schema
from sweep.model import network
from sweep.model.network import Architecture, Prefix, Program
from sweep.plan import sizing
from sweep.plan.memory import fitting_power_of_two, parse_memory, platform
from sweep.plan.probe import Probe
from sweep.plan.tiles import Tile, cells, choose_tile_shape

LOCAL_AXES = {"stats": ("gain", "bias_std", "seed"), "train": ("gain", "bias_std", "seed", "learning_rate")}
"""The vmapped axes of each kind, in flat order."""

_CONDITIONAL_REFERENCE_FACTOR = 4  # 1024 wide, batch 128: 0.21 s per network at 1 per micro-batch, 0.15 at 4
_MAX_MICRO_BATCH = {"stats": {None: 256}, "train": {"cpu": 32, None: 256}}  # more gains nothing (measured)
_CHUNK_BYTES = 2**20  # a stored chunk of one variable: zarr's sweet spot
_PADDING_PARTS = 16  # a statistics job's last micro-batch may add a sixteenth of its networks


class Job(NamedTuple):
    """One kind of kernel call of a group.

    Attributes:
      kind: ``"stats"``, ``"init"`` or ``"train"`` (see the module's docstring).
      arch: the architecture it runs.
      probe: what the statistics kernel measures (``stats``, ``init``); ``None`` for ``train``.
      micro_batch: networks ``vmap``-ed together; fixed by the program and the number of
        networks per grid point (``least_padded``).
      bytes_per_network: device memory of one network in a call.
      flops_per_network: floating-point work of one network.
      shape: the job's rectangle of networks, in flat order.
      tile_fold: tile flat positions per job position (a training tile holds every learning
        rate; the initial networks have none).
      per_key: consecutive job positions that share a network key (training: the learning
        rates of one initial network).
      program: the compiled program the statistics kernel runs ``arch`` in (``stats``,
        ``init``): every job of the sweep with the same program shares one compile, and its
        micro-batch and memory are the program's.
      parametrization: a ``stats`` or ``train`` job's parametrisation
        (``sweep.config.parametrizations``); a training sweep's ``init`` job measures its
        initial networks with the standard probe readout.
      base: with a parametrisation other than the standard one, the architecture at the
        spec's ``base_width``, against which its widths scale.
    """

    kind: str
    arch: Architecture
    probe: Probe | None
    micro_batch: int
    bytes_per_network: int
    flops_per_network: float
    shape: tuple[int, ...]
    tile_fold: int = 1
    per_key: int = 1
    program: Program | None = None
    parametrization: str = "standard"
    base: Architecture | None = None

    @property
    def prefix(self) -> Prefix:
        """The job's networks' depth, layer scales and probe readout scale inside ``program``
        (statistics jobs)."""
        prefix = self.arch.prefix(self.program)
        if self.base is None:
            return prefix
        scale = parametrizations.readout_init(self.parametrization, self.arch.readout_width, self.base.readout_width)
        return prefix._replace(readout_scale=np.float32(scale))

    @property
    def networks(self) -> int:
        return math.prod(self.shape)

    @property
    def micro_batches(self) -> int:
        return -(-self.networks // self.micro_batch)

    @property
    def micro_batch_bytes(self) -> int:
        """Device memory of one micro-batch: the least a kernel call of the job needs."""
        return self.micro_batch * self.bytes_per_network

    @property
    def gains_per_draw(self) -> int:
        """Networks per draw of random numbers: the number of gains with common random numbers, else 1."""
        return self.probe.gains_per_draw if self.probe is not None else 1


class Group(NamedTuple):
    """One group: the networks of one architecture (one grid point of the static axes).

    Attributes:
      position: index along each of the grid's static axes (``Grid.static_axes``).
      values: the group's value of each of them.
      jobs: its jobs, in the order they run.
      axes: the static axes' names.
    """

    position: tuple[int, ...]
    values: tuple
    jobs: tuple[Job, ...]
    axes: tuple[str, ...] = STATIC_AXES

    def describe(self) -> str:
        """The group's grid point, e.g. ``activation=relu, init=fan_in, ..., width=64``."""
        return ", ".join(f"{axis}={value}" for axis, value in zip(self.axes, self.values))


class Plan(NamedTuple):
    """How a sweep will run.

    Attributes:
      spec: the sweep.
      groups: the groups, in grid order.
      memory_bytes: the memory budget used to size kernel calls, per device.
      tile_shape: the tiles' extent along each of ``local_axes``.
    """

    spec: Spec | TrainSpec
    groups: tuple[Group, ...]
    memory_bytes: int
    tile_shape: tuple[int, ...]

    @property
    def local_axes(self) -> tuple[str, ...]:
        return LOCAL_AXES[self.spec.kind]

    @property
    def local_shape(self) -> tuple[int, ...]:
        """The group's rectangle along ``local_axes``."""
        n = schema.sizes(self.spec)
        return tuple(n[a] for a in self.local_axes)

    @property
    def micro_batch_bytes(self) -> int:
        """Device memory of the largest micro-batch of any job: the least budget a device needs."""
        return max(job.micro_batch_bytes for group in self.groups for job in group.jobs)

    @property
    def tiles(self) -> tuple[Tile, ...]:
        """Every tile of the grid; the same cells in every group."""
        group_cells = cells(self.local_axes, self.local_shape, self.tile_shape)
        return tuple(
            Tile(g * len(group_cells) + i, g, start, stop, region)
            for g in range(len(self.groups))
            for i, (start, stop, region) in enumerate(group_cells)
        )

    def call_size(self, job: Job, devices: int = 1) -> int:
        """Micro-batches per kernel call on ``devices`` devices: a multiple of ``devices``.

        At most the budget's share per device, balanced so that the last call of the whole
        job is padded as little as possible. It depends on the job, not on which of its
        micro-batches a run still needs, so a resumed run reuses the same compiled shape.
        """
        per_device = max(1, self.memory_bytes // job.micro_batch_bytes)
        total = job.micro_batches
        calls = -(-total // (devices * per_device))
        return devices * -(-total // (calls * devices))

    def calls(self, job: Job, micro_batch_ids: np.ndarray, devices: int = 1) -> Iterator[np.ndarray]:
        """Cuts a job's micro-batches (ascending ids) into kernel calls of ``call_size``.

        The last call is padded by repeating its last micro-batch, to keep the compiled shape.
        """
        size = self.call_size(job, devices)
        for start in range(0, len(micro_batch_ids), size):
            ids = micro_batch_ids[start : start + size]
            yield np.concatenate([ids, np.repeat(ids[-1:], size - ids.size)])

    def call_flops(self, job: Job, devices: int = 1) -> float:
        """An estimate of the floating-point work of one kernel call on one device."""
        return float(self.call_size(job, devices) // devices * job.micro_batch * job.flops_per_network)

    def positions(self, job: Job, micro_batch_ids: np.ndarray) -> np.ndarray:
        """The job positions computed by a run of micro-batches, ``(len(ids) * µ,)`` int64.

        Micro-batch m holds kernel slots ``m·µ .. m·µ + µ - 1``. Slot k is position k, except
        with common random numbers (G gains per draw): then slot k is gain ``k mod G`` of the
        ``(bias_std, seed)`` pair ``k div G``, so that the G networks of a draw sit side by
        side (``sweep.kernel.stats.make_kernel``). Slots past the job's end repeat its final
        draw, which computes exactly the same numbers as that draw does.
        """
        mu, n, per_draw = job.micro_batch, job.networks, job.gains_per_draw
        slots = np.asarray(micro_batch_ids, np.int64)[:, None] * mu + np.arange(mu)
        slots = np.where(slots < n, slots, n - per_draw + slots % per_draw).reshape(-1)
        draw, gain = np.divmod(slots, per_draw)
        return gain * (n // per_draw) + draw

    def slots(self, job: Job, positions: np.ndarray) -> np.ndarray:
        """The kernel slots of job positions: the inverse of ``positions``' slot order."""
        per_draw = job.gains_per_draw
        gain, draw = np.divmod(np.asarray(positions, np.int64), job.networks // per_draw)
        return draw * per_draw + gain

    def job_range(self, job: Job, tile: Tile) -> tuple[int, int]:
        """The job positions ``[start, stop)`` of a tile."""
        return tile.start // job.tile_fold, tile.stop // job.tile_fold

    def micro_batches_of(self, job: Job, tiles: Sequence[Tile]) -> np.ndarray:
        """The ascending, distinct micro-batches of a job that cover ``tiles`` of one group."""
        mu = job.micro_batch
        ids = []
        for tile in tiles:
            start, stop = self.job_range(job, tile)
            if job.gains_per_draw == 1:
                ids.append(np.arange(start // mu, (stop - 1) // mu + 1))
            else:
                ids.append(np.unique(self.slots(job, np.arange(start, stop)) // mu))
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)

    def key_indices(self, group: Group, job: Job, positions: np.ndarray) -> np.ndarray:
        """The global indices, whose ``network_key`` each network is drawn from."""
        per_group = job.networks // job.per_key
        # every parametrisation trains the same initial networks, as every learning rate does
        keep = [i for i, axis in enumerate(group.axes) if axis != "parametrization"]
        shape = self.spec.grid.shape
        offset = int(np.ravel_multi_index(tuple(group.position[i] for i in keep), tuple(shape[i] for i in keep))) * per_group
        return offset + np.asarray(positions, np.int64) // job.per_key

    def axis_indices(self, job: Job, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Each network's index along each of the job's vmapped axes."""
        axes = self.local_axes[: len(job.shape)]
        return dict(zip(axes, np.unravel_index(np.asarray(positions, np.int64), job.shape)))

    def program_name(self, job: Job) -> str:
        """The compiled program a job runs, named; jobs with the same name share one compile."""
        if job.kind == "train":
            alpha = f" alpha={job.arch.residual:g}" if job.arch.is_residual else ""  # trained with α compiled in
            scaled = f" {job.parametrization}" if job.parametrization != "standard" else ""
            return f"train {job.arch.init} {job.arch.program().describe()}{alpha}{scaled}"
        return f"{'init' if job.kind == 'init' else 'stats'} {job.program.describe()}"

    @property
    def programs(self) -> tuple[str, ...]:
        """Every program the sweep compiles, in the order they are first needed."""
        return tuple(dict.fromkeys(self.program_name(job) for group in self.groups for job in group.jobs))

    def summary(self) -> str:
        """One line: networks, grid points and compiled programs."""
        networks = sum(job.networks for group in self.groups for job in group.jobs if job.kind != "init")
        return (f"{networks} networks at {len(self.groups)} grid points; {len(self.programs)} programs to compile, "
                f"{len(self.tiles)} tiles")

    def tile_cost(self, tile: Tile) -> float:
        """A tile's estimated floating-point work, over its group's jobs."""
        jobs = self.groups[tile.group].jobs
        return sum((tile.size // job.tile_fold) * job.flops_per_network for job in jobs)


def architecture(spec: Spec | TrainSpec, values: Sequence) -> Architecture:
    """The architecture at one group's grid point.

    A statistics network has n_0 = ``width``. A trained plain network reads the dataset's
    features, so its ``widths = (n_0,) + hidden widths``, n_0 the number of features (dense
    layers) or 1 (a conv net's one input channel), the hidden widths being the profile's for
    ``width`` and ``depth``: only layer 1's shape differs from the statistics network's, and
    since each layer is drawn from its own key, layers 2..L are still its draws. A trained
    residual network is the statistics network itself, its stream fed by the trainer's input
    map (``sweep.train.model``).
    """
    activation, init, profile, depth, width, *family = values
    widths = profiles.widths(profile, width, depth)
    point = dict(zip(spec.grid.static_axes[5:], family))
    conv = network.Conv(point["kernel_size"], spec.spatial) if spec.conv else None
    alpha = point["branch_scale"] * depth ** spec.branch_depth_exponent if spec.residual else None
    if isinstance(spec, TrainSpec) and not spec.residual:
        widths = (1 if spec.conv else DATASET_SHAPES[spec.dataset].features,) + widths[1:]
    return Architecture(activation, init, widths, conv, alpha)


def stats_probe(spec: Spec, platform_name: str | None = None) -> Probe:
    """The statistics kernel's settings of a statistics spec on this platform."""
    g = spec.grid
    per_draw = len(g.gain) if spec.common_random_numbers else 1
    scaled = spec.scaled_copies and min(g.gain) > 0 and max(g.bias_std) == 0
    return Probe(spec.batch, spec.loss, spec.outputs, spec.precision, spec.jacobian, per_draw, scaled,
                 jacobian_on_host=spec.jacobian and platform(platform_name) == "cpu", sampler=spec.sampler)


def init_probe(spec: TrainSpec) -> Probe:
    """The statistics kernel's settings for a training spec's initial networks: the ``"mse"``
    probe with a readout of the task's dimension (the trained network's initial readout)."""
    return Probe(spec.batch, "mse", DATASET_SHAPES[spec.dataset].outputs, spec.precision, False)


def parametrization(spec: Spec | TrainSpec, values: Sequence) -> tuple[str, Architecture | None]:
    """A group's parametrisation, and the architecture at the base width it scales against
    (``None`` for the standard one)."""
    point = dict(zip(spec.grid.static_axes, values))
    name = point.get("parametrization", "standard")
    if name == "standard":
        return name, None
    return name, architecture(spec, tuple(spec.base_width if axis == "width" else v for axis, v in point.items()))


class TrainedFactors(NamedTuple):
    """What a parametrisation changes in a statistics network, whose effective weights have the
    standard law (``sweep.config.parametrizations``).

    Attributes:
      readout: the probe readout's init factor (μP: m_in^-1/2 of the width it reads; else 1).
      grad_param: per weight layer, a_l²: E[(∂C/∂ω_l)²] = a_l² E[(∂C/∂W_l)²], ω_l the trained
        parameter behind W_l = a_l ω_l; ``(L,)``, or ``(L, 2)`` (block, branch layer).
      sgd_update: per weight layer, (c_l a_l²)²: the first SGD step moves W_l by
        −η c_l a_l² ∂C/∂W_l, c_l the layer's learning-rate factor; shaped as ``grad_param``.
    """

    readout: float
    grad_param: np.ndarray
    sgd_update: np.ndarray

    def apply(self, grad_weight_meansq):
        """``grad_param_meansq`` and ``sgd_update_meansq`` from ``grad_weight_meansq`` ``(..., L[, 2])``."""
        return {"grad_param_meansq": grad_weight_meansq * self.grad_param,
                "sgd_update_meansq": grad_weight_meansq * self.sgd_update}


def trained_factors(spec: Spec, values: Sequence) -> TrainedFactors:
    """The ``TrainedFactors`` of the statistics network of the group at ``values``.

    The network's input has ``width`` dimensions, so every weight layer is a hidden one in
    Tensor Programs V's sense (``weight_rules(reads_data=False)``); the learning-rate factors
    are SGD's.
    """
    name, base = parametrization(spec, values)
    arch = architecture(spec, values)
    base = arch if base is None else base
    rules = [w for w, _ in parametrizations.weight_rules(name, arch.weight_shapes, base.weight_shapes, "sgd",
                                                         reads_data=False)]
    a2 = np.array([r.multiplier**2 for r in rules])
    c = np.array([r.learning_rate for r in rules])
    per_layer = (lambda v: v.reshape(-1, 2)) if arch.is_residual else (lambda v: v)
    return TrainedFactors(parametrizations.readout_init(name, arch.readout_width, base.readout_width),
                          per_layer(a2), per_layer((c * a2) ** 2))


def _stats_job(kind: str, arch: Architecture, program: Program, probe: Probe, shape, micro: int | None,
               tile_fold: int = 1, scaling: tuple[str, Architecture | None] = ("standard", None)) -> Job:
    need = sizing.stats_bytes(program, probe)
    if micro is None:
        per_draw = probe.gains_per_draw
        # Conditional layers run B-step factorisation loops, which gain from more networks at once.
        factor = _CONDITIONAL_REFERENCE_FACTOR if any(sizing.conditional_layers(program, probe)) else 1
        fits = fitting_power_of_two(per_draw * need, max(1, _MAX_MICRO_BATCH["stats"][None] // per_draw),
                                    reference_factor=factor)
        # A CPU computes a network in a smaller micro-batch as fast or faster, so the copies
        # that pad the last one are pure cost there; an accelerator runs a micro-batch's
        # networks in parallel and keeps the largest that fits.
        micro = per_draw * (least_padded(math.prod(shape) // per_draw, fits) if platform() == "cpu" else fits)
    return Job(kind, arch, probe, micro, need, sizing.stats_flops(arch, probe), shape, tile_fold, program=program,
               parametrization=scaling[0], base=scaling[1])


def least_padded(items: int, most: int) -> int:
    """Items per micro-batch: the largest power of two from ``most``/16 to ``most`` that pads
    ``items`` by at most a sixteenth, else the one of them that pads them least.

    A job's last micro-batch is filled up with copies of its final network (or draw), which
    cost as much as the others: 144 networks in micro-batches of 128 compute 256, in
    micro-batches of 16 they compute 144. On a CPU a network costs no more in a smaller
    micro-batch (tanh, width 64, 288 networks per grid point: micro-batches of 16 or 32 took
    a third of the time of 256). The floor keeps micro-batches large enough to batch well.
    """
    sizes = [most >> k for k in range(5) if most >> k >= 1]
    padding = {m: -(-items // m) * m - items for m in sizes}
    fitting = [m for m in sizes if padding[m] * _PADDING_PARTS <= items]
    return fitting[0] if fitting else min(sizes, key=lambda m: (padding[m], -m))


def _train_job(spec: TrainSpec, values: tuple, arch: Architecture, shape, micro: int | None) -> Job:
    d = DATASET_SHAPES[spec.dataset]
    need = sizing.train_bytes(arch, d.outputs, spec.batch, spec.optimizer, features=d.features,
                              first_step=spec.sharpness_iterations > 0)
    if micro is None:
        most = _MAX_MICRO_BATCH["train"].get(platform(), _MAX_MICRO_BATCH["train"][None])
        micro = fitting_power_of_two(need, most)
    # a Hessian-vector product costs about two steps, and the first step takes iterations + 2 of them
    steps = spec.steps + (2 * (spec.sharpness_iterations + 2) + 2 if spec.sharpness_iterations else 0)
    flops = sizing.train_flops(arch, d.outputs, spec.batch, steps, len(spec.eval_steps) + 1, d.examples, d.features)
    name, base = parametrization(spec, values)
    return Job("train", arch, None, micro, need, flops, shape, per_key=len(spec.grid.learning_rate),
               parametrization=name, base=base)


def make_plan(
    spec: Spec | TrainSpec,
    memory: str | int | None = None,
    chunk_networks: int | None = None,
    micro_batches: Sequence | None = None,
    tile_shape: Sequence[int] | None = None,
) -> Plan:
    """Splits a sweep into groups, jobs, kernel calls and tiles.

    Args:
      spec: the sweep, of either kind.
      memory: the device memory budget per device (see ``sweep.plan.memory.parse_memory``).
      chunk_networks: about how many networks a tile (stored chunk) holds; by default, as
        many as make about 1 MiB per chunk of the largest variable.
      micro_batches: each group's micro-batch per job, as recorded by a run being resumed;
        by default from the architecture and this machine's platform.
      tile_shape: the tile shape recorded by a run being resumed; overrides ``chunk_networks``.

    Returns:
      The plan.

    Raises:
      SpecError: for ``memory`` when one micro-batch of some job does not fit the budget,
        ``chunk_networks`` when it is not a positive integer, or ``seeds`` when the sweep
        has more networks than keys can index.
    """
    budget = parse_memory(memory)
    if spec.num_networks >= 2**32:
        raise SpecError("seeds", f"a sweep holds at most 2^32 networks; this one has {spec.num_networks}")
    g = spec.grid
    training = isinstance(spec, TrainSpec)
    stats_shape = (len(g.gain), len(g.bias_std), spec.seeds)
    static = g.static_axes
    points = [(position, tuple(getattr(g, axis)[i] for axis, i in zip(static, position)))
              for position in np.ndindex(*g.shape[: len(static)])]
    archs = [architecture(spec, values) for _, values in points]
    programs = network.programs(archs)
    groups = []
    for n, ((position, values), arch) in enumerate(zip(points, archs)):
        recorded = [None, None] if micro_batches is None else list(np.atleast_1d(micro_batches[n]))
        if training:
            rates = len(g.learning_rate)
            jobs = (_stats_job("init", arch, programs[arch], init_probe(spec), stats_shape, recorded[0], tile_fold=rates),
                    _train_job(spec, values, arch, stats_shape + (rates,), recorded[-1]))
        else:
            jobs = (_stats_job("stats", arch, programs[arch], stats_probe(spec), stats_shape, recorded[0],
                               scaling=parametrization(spec, values)),)
        for job in jobs:
            need = job.micro_batch_bytes
            if need > budget:
                what = "training the smallest chunk" if job.kind == "train" else "the smallest chunk"
                raise SpecError("memory", (
                    f"{what} of {dict(zip(static, values))} ({job.micro_batch} networks) needs about "
                    f"{need / 1e6:.1f} MB; the budget is {budget / 1e6:.1f} MB per device (raise --memory, "
                    "or lower --devices on a CPU, or batch/width/depth)"))
        groups.append(Group(tuple(position), values, jobs, static))
    local_shape = stats_shape + ((len(g.learning_rate),) if training else ())
    if tile_shape is None:
        if chunk_networks is None:
            chunk_networks = max(1, _CHUNK_BYTES // _bytes_per_network(spec))
        elif isinstance(chunk_networks, bool) or not isinstance(chunk_networks, int) or chunk_networks < 1:
            raise SpecError("chunk_networks", f"must be a positive integer, got {chunk_networks!r}")
        tile_shape = choose_tile_shape(local_shape, chunk_networks, whole=1 if training else 0)
    return Plan(spec, tuple(groups), budget, tuple(int(t) for t in tile_shape))


def _bytes_per_network(spec: Spec | TrainSpec) -> int:
    """About the bytes of one network's values in the sweep's largest per-network variable."""
    layers = 8 * max(spec.grid.depth)
    return max(layers, 4 * len(spec.log_steps)) if isinstance(spec, TrainSpec) else layers


def bytes_of_result(spec: Spec | TrainSpec) -> int:
    """Size of the stored dataset, uncompressed: an upper bound of the store on disk."""
    return sum(math.prod(schema.shape(spec, v)) * np.dtype(v.dtype).itemsize for v in schema.measured(spec).values())
