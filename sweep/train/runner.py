"""Runs a training spec: every chunk of networks trained on device, results gathered and stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sweep import store
from sweep.errors import SpecError
from sweep.plan import parse_memory
from sweep.spec import Spec
from sweep.train import data as datasets
from sweep.train import init_stats, loop, plan, schema
from sweep.train.spec import TrainSpec


def run_training(
    spec: TrainSpec | str | Path,
    out: str | Path | None = None,
    memory: str | int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> xr.Dataset:
    """Trains every network of a training spec and returns (and optionally stores) the results.

    Args:
      spec: a ``TrainSpec`` or the path of a TOML spec file with ``kind = "train"``.
      out: where to write the zarr store; ``None`` keeps the result in memory only.
      memory: device memory budget for one call, e.g. ``"4GB"`` (default: automatic). The
        results do not depend on it.
      overwrite: replace an existing store at ``out``.
      progress: show a progress bar (network-steps) with the median current training loss.

    Returns:
      The dataset (see ``sweep.train.schema``).

    Raises:
      SpecError: bad spec, an existing ``out`` without ``overwrite``, too little disk or
        memory; raised before anything is trained or written.
    """
    if not isinstance(spec, TrainSpec):
        spec = Spec.from_toml(spec)
        if not isinstance(spec, TrainSpec):
            raise SpecError("kind", f"run_training needs kind = \"train\", got {spec.kind!r}")
    data = datasets.load(spec.dataset)
    if spec.batch > len(data.x_train):
        raise SpecError("batch", f"must be at most the {len(data.x_train)} training examples of {spec.dataset!r}")
    target = float(spec.target_loss if spec.target_loss is not None else 0.5 * data.constant_loss)
    budget = parse_memory(memory)
    groups = plan.make_groups(spec, data.n_features, data.n_outputs, budget)
    arrays = _empty_arrays(spec)
    if out is not None:
        store.check_writable(out, overwrite)
        _check_disk(out, sum(a.nbytes for a in arrays.values()))

    for name, values in init_stats.measure(spec, groups, data.n_outputs, budget).items():
        arrays[f"init_{name}"] = values

    inputs = _Inputs(spec, data, target)
    bar = tqdm(total=spec.num_networks * spec.steps, unit="step", unit_scale=True, desc=spec.name,
               disable=not progress, dynamic_ncols=True)
    for group in groups:
        config = loop.Config(group.arch, data.n_outputs, data.task, spec.optimizer, spec.precision)
        trainer = loop.make_trainer(config, group.micro_batch)
        for chunk in plan.chunks(spec, group):
            _train_chunk(spec, inputs, trainer, group, chunk, arrays, bar)
    bar.close()

    ds = schema.to_dataset(spec, arrays, data.task, _attrs(spec, data, target))
    if out is not None:
        store.write(ds, out, overwrite=overwrite)
    return ds


class _Inputs:
    """What every chunk's calls share: the data on device, the axes' values, the target loss."""

    def __init__(self, spec: TrainSpec, data: datasets.Dataset, target: float):
        self.n_train = len(data.x_train)
        self.x_train, self.y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        *arrays, self.train_slices, self.test_slices = plan.eval_set(data.x_train, data.y_train, data.x_test, data.y_test)
        self.eval_arrays = tuple(jnp.asarray(a) for a in arrays)
        g = spec.grid
        self.gains, self.bias_stds = np.asarray(g.gain, np.float32), np.asarray(g.bias_std, np.float32)
        self.rates = np.asarray(g.learning_rate, np.float32)
        self.target = target


def _train_chunk(spec: TrainSpec, inputs: _Inputs, trainer: loop.Trainer, group: plan.Group, chunk: plan.Chunk,
                 arrays: dict[str, np.ndarray], bar) -> None:
    """Trains one chunk of networks, evaluating between blocks of steps, into ``arrays``."""
    v = chunk.valid
    run = group.position + (chunk.gain[:v], chunk.bias_std[:v], chunk.learning_rate[:v], chunk.seed[:v])
    init = group.position + (chunk.gain[:v], chunk.bias_std[:v], chunk.seed[:v])
    rates = jnp.asarray(inputs.rates[chunk.learning_rate])
    state = trainer.init(jnp.uint32(spec.rng_seed), jnp.asarray(chunk.keys, jnp.uint32),
                         jnp.asarray(inputs.gains[chunk.gain]), jnp.asarray(inputs.bias_stds[chunk.bias_std]))
    state, loss, _ = trainer.evaluate(state, *inputs.eval_arrays, *inputs.train_slices)
    arrays["loss_at_init"][init] = np.asarray(loss)[:v]
    eval_steps = spec.eval_steps
    for e, (start, stop) in enumerate(zip((0,) + eval_steps, eval_steps)):
        if stop > start:
            rows = jnp.asarray(plan.batch_rows(spec.rng_seed, inputs.n_train, spec.batch, start, stop))
            state, losses = trainer.train(state, rates, inputs.x_train, inputs.y_train, rows, start, inputs.target)
            losses = np.asarray(losses)[:v]
            logged = np.asarray([t for t in range(start, stop) if t % spec.log_every == 0], int)
            if logged.size:
                where = slice(logged[0] // spec.log_every, logged[-1] // spec.log_every + 1)
                arrays["train_loss"][run + (where,)] = losses[:, logged - start]
            bar.update(v * (stop - start))
            bar.set_postfix(loss=f"{_median(losses[:, -1]):.4g}", refresh=False)
        state, loss, accuracy = trainer.evaluate(state, *inputs.eval_arrays, *inputs.test_slices)
        arrays["test_loss"][run + (e,)] = np.asarray(loss)[:v]
        arrays["test_accuracy"][run + (e,)] = np.asarray(accuracy)[:v]
    arrays["diverged"][run] = np.asarray(state.diverged)[:v]
    first = np.asarray(state.first_below)[:v]
    arrays["steps_to_target"][run] = np.where(first >= 0, first, np.nan)


_OPTIMIZERS = {"sgd": "optax.sgd(learning_rate)", "momentum": "optax.sgd(learning_rate, momentum=0.9)",
               "adam": "optax.adam(learning_rate) (b1 0.9, b2 0.999, eps 1e-8)"}


def _attrs(spec: TrainSpec, data: datasets.Dataset, target: float) -> dict:
    """The dataset attributes that say how the networks were trained and measured."""
    attrs = dict(data.attrs)
    attrs.update(
        input_dim=data.n_features,
        target_loss=target,
        target_loss_source="spec" if spec.target_loss is not None else "half the best constant predictor's training loss",
        batch_schedule=(f"the same for every network: epochs in the order numpy.random.default_rng([{spec.rng_seed}, "
                        "epoch]).permutation(n_train), cut into consecutive batches (a batch may span two epochs)"),
        network_keys=("network_key(rng_seed, index), index over (activation, init, profile, depth, width, gain, "
                      "bias_std, seed) as in a stats sweep; every learning rate trains the same initial network"),
        architecture="widths (input_dim, hidden widths of profile, width, depth), then a trained linear readout "
                     "N(0, 1/n_L) with zero bias",
        optimizer=_OPTIMIZERS[spec.optimizer],
        loss="softmax cross-entropy (nats)" if data.task == datasets.CLASSIFICATION
             else "half the squared error, summed over outputs",
        divergence="a network with a non-finite loss is marked diverged and frozen; its later losses are NaN",
        init_statistics=("sweep.kernel on each initial network (same key, gain, bias_std, architecture) with "
                         f"{spec.batch} i.i.d. N(0, 1) inputs, mse probe loss against Gaussian targets of "
                         f"dimension {data.n_outputs}; not the training data"),
    )
    return attrs


def _empty_arrays(spec: TrainSpec) -> dict[str, np.ndarray]:
    """Result arrays of the dataset's full shapes, NaN (False for ``diverged``)."""
    g = spec.grid
    run = g.shape + (spec.seeds,)
    init = g.stats.shape + (spec.seeds,)
    return {
        "train_loss": np.full(run + (len(spec.log_steps),), np.nan, np.float32),
        "test_loss": np.full(run + (len(spec.eval_steps),), np.nan, np.float32),
        "test_accuracy": np.full(run + (len(spec.eval_steps),), np.nan, np.float32),
        "diverged": np.zeros(run, bool),
        "steps_to_target": np.full(run, np.nan),
        "loss_at_init": np.full(init, np.nan, np.float32),
        **{f"init_{k}": np.full(init + (max(g.depth),), np.nan) for k in init_stats.NAMES if k != "overflow"},
        "init_overflow": np.zeros(init + (max(g.depth),), bool),
    }


def _median(values: np.ndarray) -> float:
    """The median of the finite values (NaN if none): the progress bar's loss."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _check_disk(out: str | Path, need: int) -> None:
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > free:
        raise SpecError("out", f"the result needs up to {need / 1e9:.2f} GB but {parent} has {free / 1e9:.2f} GB free")
