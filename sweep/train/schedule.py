"""What every trained network sees, in the same order: mini-batches and evaluation slices.

Mini-batches. Every network sees the same batches in the same order: the training examples
are taken in epochs, epoch e in the order ``numpy.random.default_rng([rng_seed, e])
.permutation(n_train)``, and step t takes the ``batch`` examples at positions
``t·batch .. (t+1)·batch - 1`` of the concatenated epochs (a batch may span two epochs).
"""

from __future__ import annotations

import math

import numpy as np

from sweep.plan.sizing import EVAL_SLICE


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
