"""A training job's kernel call: a chunk of networks drawn, trained and evaluated, on its devices.

One call trains its networks for all their steps: they are drawn (``Trainer.init``),
evaluated on the training split (``loss_at_init``), then trained in blocks of steps between
evaluations on the test split, the training state staying on the devices throughout. The
call returns every network's curves and outcomes as host arrays, named as stored
(``sweep.io.schema``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from sweep.config import TrainSpec
from sweep.kernel import devices
from sweep.plan import Job
from sweep.train import data as datasets
from sweep.train import loop, schedule

_FIRST_STEP = {"grad_sqnorm": "first_step_grad_sqnorm", "curvature": "first_step_curvature",
               "sharpness": "init_sharpness", "loss_change": "first_step_loss_change"}
"""``Trainer.first_step``'s outputs by the names they are stored under."""

_OPTIMIZERS = {"sgd": "optax.sgd(learning_rate)", "momentum": "optax.sgd(learning_rate, momentum=0.9)",
               "adam": "optax.adam(learning_rate) (b1 0.9, b2 0.999, eps 1e-8)"}


def target_loss(spec: TrainSpec, data: datasets.Dataset) -> float:
    """The loss ``steps_to_target`` looks for: the spec's, or half the best constant predictor's."""
    return float(spec.target_loss if spec.target_loss is not None else 0.5 * data.constant_loss)


def check(spec: TrainSpec) -> datasets.Dataset:
    """The spec's dataset, once it is known to fit it.

    Raises:
      SpecError: for ``dataset`` when it cannot be made, ``batch`` when larger than its
        training split.
    """
    from sweep.errors import SpecError

    data = datasets.load(spec.dataset)
    if spec.batch > len(data.x_train):
        raise SpecError("batch", f"must be at most the {len(data.x_train)} training examples of {spec.dataset!r}")
    return data


def attributes(spec: TrainSpec) -> dict:
    """The dataset attributes that say how the networks were trained and measured."""
    data = datasets.load(spec.dataset)
    attrs = dict(data.attrs)
    attrs.update(
        input_dim=data.n_features,
        target_loss=target_loss(spec, data),
        target_loss_source="spec" if spec.target_loss is not None else "half the best constant predictor's training loss",
        batch_schedule=(f"the same for every network: epochs in the order numpy.random.default_rng([{spec.rng_seed}, "
                        "epoch]).permutation(n_train), cut into consecutive batches (a batch may span two epochs)"),
        network_keys=(f"network_key(rng_seed, index), index over "
                      f"({', '.join(a for a in spec.grid.stats.axes if a != 'parametrization')}, seed) as in a "
                      "stats sweep; every learning rate" + (" and parametrisation" if spec.grid.parametrization else "")
                      + " trains the same initial network"),
        architecture=_architecture(spec),
        optimizer=_OPTIMIZERS[spec.optimizer],
        loss="softmax cross-entropy (nats)" if data.task == datasets.CLASSIFICATION
             else "half the squared error, summed over outputs",
        divergence="a network with a non-finite loss is marked diverged and frozen; its later losses are NaN",
        init_statistics=("the statistics kernel on each initial network (same key, gain, bias_std, architecture) "
                         f"with {spec.batch} i.i.d. N(0, 1) inputs, mse probe loss against Gaussian targets of "
                         f"dimension {data.n_outputs}; not the training data"),
        coordinate_check=(f"coord_* after {', '.join(map(str, spec.coord_check_steps))} updates, on step 0's mini-batch "
                          f"of {spec.batch} training examples"),
    )
    return attrs


def _architecture(spec: TrainSpec) -> str:
    """The trained networks' architecture, in words."""
    readout = (f"then a trained linear readout N(0, 1/{'n' if spec.residual else 'n_L'})" if spec.readout_init == "normal"
               else "then a trained linear readout starting at zero") + " with zero bias"
    if spec.conv:
        readout = "global average pooling, " + readout
    if spec.residual:
        exponent = "" if spec.branch_depth_exponent == 0 else f" · depth^{spec.branch_depth_exponent:g}"
        stream = (f"conv of kernel_size taps from the features as a one-channel {' x '.join(map(str, spec.spatial))} image"
                  if spec.conv else "dense map from the input_dim features")
        return (f"stream x_0 = a trained input map (a {stream} to the stream of width units, N(0, 1/fan_in), no bias); residual "
                f"blocks x_l = x_(l-1) + α{exponent} · (W_2 φ(W_1 φ(x_(l-1)) + b_1) + b_2) of inner widths of profile, "
                f"width, depth, drawn as in a stats sweep; {readout}")
    if spec.conv:
        image = " x ".join(map(str, spec.spatial))
        return (f"circular convolutions of stride 1 over the features as a one-channel {image} image, channels"
                f" (1, hidden widths of profile, width, depth), kernel_size taps per dim; {readout}")
    return f"widths (input_dim, hidden widths of profile, width, depth), {readout}"


def make_call(job: Job, spec: TrainSpec, mesh) -> Callable[..., dict[str, np.ndarray]]:
    """The training job's kernel call on the devices of ``mesh``.

    Args:
      job: a ``train`` job of the plan.
      spec: the training sweep.
      mesh: the local devices (``sweep.engine.devices.local_mesh``).

    Returns:
      ``call(rng_seed, key_indices, gains, bias_stds, learning_rates) -> dict``: inputs
      ``(C,)`` host arrays, C a multiple of the job's micro-batch times the device count;
      outputs ``train_loss`` ``(C, len(log_steps))``, ``test_loss`` and ``test_accuracy``
      ``(C, len(eval_steps))``, ``diverged``, ``steps_to_target`` and ``loss_at_init`` ``(C,)``;
      with ``sharpness_iterations``, ``first_step_*`` and ``init_sharpness`` ``(C,)`` too; the
      coordinate check's ``coord_*`` ``(C, len(coord_check_steps)[, L_max])``.
    """
    data = datasets.load(spec.dataset)
    config = loop.Config(job.arch, data.n_outputs, data.task, spec.optimizer, spec.precision, data.n_features,
                         spec.sharpness_iterations, job.parametrization, job.base, spec.readout_init)
    trainer = loop.make_trainer(config, job.micro_batch)
    init = devices.on_devices(trainer.init, mesh, (False, True, True, True))
    train = devices.on_devices(trainer.train, mesh, (True, True, False, False, False, False, False), donate=(0,))
    evaluate = devices.on_devices(trainer.evaluate, mesh, (True, False, False, False, False, False), donate=(0,))
    first_step = devices.on_devices(trainer.first_step, mesh, (True, True, False, False, False))
    coordinates = devices.on_devices(trainer.coordinates, mesh, (True, False))
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    *eval_arrays, train_slices, test_slices = schedule.eval_set(data.x_train, data.y_train, data.x_test, data.y_test)
    eval_arrays = tuple(jnp.asarray(a) for a in eval_arrays)
    target = target_loss(spec, data)
    n_train = len(data.x_train)
    logged = np.asarray(spec.log_steps)
    step0_rows = schedule.batch_rows(spec.rng_seed, n_train, spec.batch, 0, 1)[0]
    coord_batch = jnp.asarray(data.x_train[step0_rows])
    layers = max(spec.grid.depth)

    def coordinate_check(state) -> dict[str, np.ndarray]:
        sizes = {k: np.asarray(v) for k, v in coordinates(state, coord_batch).items()}
        pad = lambda v: np.pad(v, ((0, 0), (0, layers - v.shape[1])), constant_values=np.nan) if v.ndim == 2 else v
        return {f"coord_{k}": pad(v) for k, v in sizes.items()}

    def call(rng_seed, key_indices, gains, bias_stds, learning_rates) -> dict[str, np.ndarray]:
        state = init(jnp.uint32(rng_seed), jnp.asarray(key_indices, jnp.uint32), jnp.asarray(gains, jnp.float32),
                     jnp.asarray(bias_stds, jnp.float32))
        state, loss_at_init, _ = evaluate(state, *eval_arrays, *train_slices)
        rates = jnp.asarray(learning_rates, jnp.float32)
        first = {}
        if spec.sharpness_iterations:
            rows = jnp.asarray(step0_rows)
            first = {_FIRST_STEP[k]: np.asarray(v) for k, v in first_step(state, rates, x_train, y_train, rows).items()}
        losses, test_loss, test_accuracy, coords = [], [], [], []
        eval_steps, coord_steps = spec.eval_steps, spec.coord_check_steps
        stops = sorted(set(eval_steps) | set(coord_steps))
        for start, stop in zip([0] + stops, stops):
            if stop > start:
                rows = jnp.asarray(schedule.batch_rows(spec.rng_seed, n_train, spec.batch, start, stop))
                state, block = train(state, rates, x_train, y_train, rows, start, target)
                losses.append(np.asarray(block))
            if stop in coord_steps:
                coords.append(coordinate_check(state))
            if stop in eval_steps:
                state, loss, accuracy = evaluate(state, *eval_arrays, *test_slices)
                test_loss.append(np.asarray(loss))
                test_accuracy.append(np.asarray(accuracy))
        first_below = np.asarray(state.first_below)
        every_step = np.concatenate(losses, axis=1)
        return {
            **first,
            **{k: np.stack([c[k] for c in coords], axis=1) for k in coords[0]},
            "train_loss": every_step[:, logged],
            "test_loss": np.stack(test_loss, axis=1),
            "test_accuracy": np.stack(test_accuracy, axis=1),
            "diverged": np.asarray(state.diverged),
            "steps_to_target": np.where(first_below >= 0, first_below, np.nan),
            "loss_at_init": np.asarray(loss_at_init),
        }

    return call
