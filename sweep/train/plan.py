"""The training plan: compile groups, memory-sized chunks, network keys and the batch schedule.

As in ``sweep.plan``, a compile group is one architecture (activation, init, profile, depth,
width); within it the networks differ in gain, bias std, learning rate and seed, in that
C order. They are ``vmap``-ed in micro-batches whose size depends on the configuration alone
(``micro_batch``), and cut into equal chunks of whole micro-batches sized from a memory
budget, the last one padded by repeating its final network (``chunk_size``).

Keys. A network's key is ``network_key(rng_seed, index)`` with ``index`` its position in the
statistics grid ``(activation, init, profile, depth, width, gain, bias_std, seed)``, in C
order, exactly as in a statistics sweep: ``learning_rate`` is not part of it, so the same
initial network is trained at every learning rate.

Mini-batches. Every network sees the same batches in the same order: the training examples
are taken in epochs, epoch e in the order ``numpy.random.default_rng([rng_seed, e])
.permutation(n_train)``, and step t takes the ``batch`` examples at positions
``t·batch .. (t+1)·batch - 1`` of the concatenated epochs (a batch may span two epochs).
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np

from sweep.errors import SpecError
from sweep.network import Architecture
from sweep.plan import fitting_power_of_two, parse_memory
from sweep.spec import GRID_AXES
from sweep.train.model import architecture
from sweep.train.spec import TrainSpec

STATIC_AXES = GRID_AXES[:5]
_WORKSPACE_FACTOR = 2.0  # XLA's temporaries beside the arrays counted below
_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
EVAL_SLICE = 512
"""The most examples evaluated at once per network (the evaluation loops over slices)."""
_MAX_MICRO_BATCH = {"cpu": 32}  # more gains nothing on a CPU (measured); accelerators: 256


class Group(NamedTuple):
    """One compile group.

    Attributes:
      position: index along each of ``STATIC_AXES``.
      arch: the trained architecture (n_0 = the dataset's features).
      micro_batch: networks ``vmap``-ed together; fixed by the configuration alone.
      chunk_size: networks per training call, a multiple of ``micro_batch``.
    """

    position: tuple[int, ...]
    arch: Architecture
    micro_batch: int
    chunk_size: int


class Chunk(NamedTuple):
    """Networks trained in one call.

    Attributes:
      keys: ``(size,)`` the network indices of their keys (statistics-grid positions).
      gain, bias_std, learning_rate, seed: ``(size,)`` each network's axis indices.
      valid: how many networks at the front are real; the rest repeat the last one.
    """

    keys: np.ndarray
    gain: np.ndarray
    bias_std: np.ndarray
    learning_rate: np.ndarray
    seed: np.ndarray
    valid: int


def key_indices(spec: TrainSpec, position: tuple[int, ...], gain, bias_std, seed) -> np.ndarray:
    """The statistics-grid indices of networks, as used in ``network_key``.

    Args:
      spec: the training spec.
      position: the group's indices along ``STATIC_AXES``.
      gain, bias_std, seed: arrays of indices along those axes, of one shape.

    Returns:
      int64 indices of that shape.
    """
    dims = spec.grid.stats.shape + (spec.seeds,)
    head = tuple(np.full(np.shape(gain), p) for p in position)
    return np.ravel_multi_index(head + (gain, bias_std, seed), dims)


def chunks(spec: TrainSpec, group: Group) -> Iterator[Chunk]:
    """The chunks of one group, each of exactly ``group.chunk_size`` networks."""
    g = spec.grid
    local_shape = (len(g.gain), len(g.bias_std), len(g.learning_rate), spec.seeds)
    n = math.prod(local_shape)
    for start in range(0, n, group.chunk_size):
        local = np.arange(start, min(start + group.chunk_size, n))
        local = np.concatenate([local, np.repeat(local[-1:], group.chunk_size - local.size)])
        gi, bi, ri, si = np.unravel_index(local, local_shape)
        keys = key_indices(spec, group.position, gi, bi, si)
        yield Chunk(keys, gi, bi, ri, si, min(group.chunk_size, n - start))


def bytes_per_network(arch: Architecture, outputs: int, batch: int, optimizer: str, eval_slice: int) -> int:
    """An upper estimate of the device memory one network needs while it trains.

    Counts the parameters, their gradients, updates and the optimizer's slots (twice for the
    scan's carry in and out), the forward residuals and cotangents of a mini-batch, or a
    slice of the evaluation if larger, all float32, times a workspace factor.
    """
    shapes = arch.shapes
    params = sum(i * o + o for i, o in shapes) + arch.widths[-1] * outputs + outputs
    state = params * (2 * (1 + _OPTIMIZER_SLOTS[optimizer]) + 2)
    step = 2 * batch * sum(i + o for i, o in shapes) + 3 * batch * outputs
    evaluation = eval_slice * (3 * max(arch.widths) + 2 * outputs)
    return int(4 * _WORKSPACE_FACTOR * (state + max(step, evaluation)))


def make_groups(spec: TrainSpec, n_features: int, outputs: int, memory: str | int | None,
                eval_slice: int = EVAL_SLICE) -> tuple[Group, ...]:
    """Splits a training spec into compile groups with chunk sizes from a memory budget.

    Args:
      spec: the training spec.
      n_features: the dataset's input dimension.
      outputs: the readout's dimension.
      memory: the device memory budget (see ``sweep.plan.parse_memory``).
      eval_slice: examples evaluated at once.

    Returns:
      The groups, in grid order.

    Raises:
      SpecError: for ``memory`` when one micro-batch of some group does not fit the budget.
    """
    budget = parse_memory(memory)
    g = spec.grid
    per_group = len(g.gain) * len(g.bias_std) * len(g.learning_rate) * spec.seeds
    groups = []
    for position in np.ndindex(*g.shape[:5]):
        values = [getattr(g, axis)[i] for axis, i in zip(STATIC_AXES, position)]
        arch = architecture(*values, n_features)
        need = bytes_per_network(arch, outputs, spec.batch, spec.optimizer, eval_slice)
        micro = micro_batch(need)
        if micro * need > budget:
            raise SpecError(
                "memory",
                f"training the smallest chunk of {dict(zip(STATIC_AXES, values))} ({micro} networks) needs about "
                f"{micro * need / 1e6:.1f} MB; the budget is {budget / 1e6:.1f} MB (raise --memory or lower batch/width/depth)",
            )
        groups.append(Group(tuple(position), arch, micro, chunk_size(per_group, micro, budget // need)))
    return tuple(groups)


def micro_batch(bytes_per_net: int, platform: str | None = None) -> int:
    """Networks ``vmap``-ed together: a power of two set by the network's memory alone.

    It must not depend on the budget or the number of networks, since a network's numbers
    are bit-identical only within the same compiled shape (see ``sweep.batching``).

    Args:
      bytes_per_net: ``bytes_per_network`` of the configuration.
      platform: the JAX backend (default: the current one).
    """
    if platform is None:
        import jax

        platform = jax.default_backend()
    return fitting_power_of_two(bytes_per_net, _MAX_MICRO_BATCH.get(platform, 256), platform)


def chunk_size(networks: int, micro: int, fits: int) -> int:
    """Networks per call: whole micro-batches, balanced so that the last call is padded least.

    Args:
      networks: networks of the group.
      micro: the micro-batch.
      fits: networks that fit the memory budget at once (at least ``micro``).
    """
    micro_batches = math.ceil(networks / micro)
    per_call = max(1, min(micro_batches, fits // micro))
    return micro * math.ceil(micro_batches / math.ceil(micro_batches / per_call))


def batch_rows(rng_seed: int, n_train: int, batch: int, start: int, stop: int) -> np.ndarray:
    """The training examples of steps ``start .. stop - 1``.

    Args:
      rng_seed: the spec's base seed.
      n_train: training examples.
      batch: examples per step.
      start, stop: the steps.

    Returns:
      ``(stop - start, batch)`` int32 row numbers of the training split.
    """
    first, last = start * batch, stop * batch
    epochs = range(first // n_train, (last - 1) // n_train + 1) if last > first else range(0)
    order = np.concatenate([np.random.default_rng([rng_seed, e]).permutation(n_train) for e in epochs] or [[]])
    offset = first - (first // n_train) * n_train
    return order[offset : offset + last - first].reshape(stop - start, batch).astype(np.int32)


def eval_set(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             size: int = EVAL_SLICE) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
    """Both splits cut into slices of one size for the evaluation, and stacked.

    One array for both splits lets one compiled evaluation serve both.

    Args:
      x_train, x_test: ``(n, n_0)`` inputs.
      y_train, y_test: ``(n,)`` labels or ``(n, k)`` targets.
      size: the most examples per slice.

    Returns:
      ``(x, y, mask, train, test)``: ``x`` ``(P, m, n_0)``, ``y`` ``(P, m[, k])`` and
      ``mask`` ``(P, m)``, 1.0 on real examples (each split's last slice is padded); the
      training split's slices then the test split's, at ``train`` and ``test`` =
      ``(first slice, number of slices)``.
    """
    m = min(size, max(len(x_train), len(x_test)))
    xs, ys, masks, ranges = [], [], [], []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        n = len(x)
        parts = math.ceil(n / m)
        pad = parts * m - n
        xs.append(np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).reshape(parts, m, *x.shape[1:]))
        ys.append(np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)]).reshape(parts, m, *y.shape[1:]))
        masks.append(np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]).reshape(parts, m))
        ranges.append((sum(len(a) for a in xs[:-1]), parts))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(masks), ranges[0], ranges[1]
