"""The training datasets: made offline, standardised, with a fixed train/test split.

Nothing is downloaded: MNIST-1D is generated procedurally by the ``mnist1d`` package,
scikit-learn's digits ship with scikit-learn, and the teacher-student task is drawn here.
Every dataset is fixed (it does not depend on the spec's ``rng_seed``), so that all sweeps
on one dataset train on the same examples. Inputs are standardised per feature with the
training split's mean and standard deviation (features constant on the training split are
only centred). The split and its provenance are in ``Dataset.attrs``.

* ``mnist1d``: the canonical MNIST-1D (``mnist1d.data.get_dataset_args()`` defaults: 5000
  examples, seed 42), 40 features, 10 classes; its own split, the first 4000 examples for
  training and the last 1000 for testing.
* ``digits``: ``sklearn.datasets.load_digits``, 1797 images of 8x8 pixels, 64 features,
  10 classes; the first 1437 of a permutation by ``numpy.random.default_rng(0)`` train, the
  other 360 test.
* ``teacher``: regression on the output of a fixed random teacher network: inputs
  x ~ N(0, I_32); the teacher is a tanh MLP 32 -> 64 -> 64 -> 1 with weights
  N(0, 1.5² / fan_in), biases N(0, 0.1²) and a linear readout N(0, 1/64), drawn in float64
  by ``numpy.random.default_rng(0)``; the targets are its outputs, standardised with the
  training split's mean and standard deviation, without noise. 4096 training and 1024 test
  examples.
"""

from __future__ import annotations

import functools
import random
from typing import NamedTuple

import numpy as np

from sweep.errors import SpecError

CLASSIFICATION = "classification"
REGRESSION = "regression"

_TEACHER_INPUTS, _TEACHER_HIDDEN, _TEACHER_GAIN, _TEACHER_BIAS = 32, (64, 64), 1.5, 0.1
_TEACHER_TRAIN, _TEACHER_TEST = 4096, 1024
_DIGITS_TEST = 360


class Dataset(NamedTuple):
    """A dataset split into training and test examples.

    Attributes:
      name: the spec's ``dataset``.
      task: ``"classification"`` (softmax cross-entropy, integer labels) or ``"regression"``
        (squared error, real targets).
      x_train: ``(n_train, n_features)`` float32, standardised.
      y_train: ``(n_train,)`` int32 labels, or ``(n_train, n_outputs)`` float32 targets.
      x_test: ``(n_test, n_features)`` float32, standardised with the training statistics.
      y_test: like ``y_train``, ``n_test`` rows.
      n_outputs: classes, or target dimensions.
      attrs: how the data were made and split, for the stored dataset's attributes.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_outputs: int
    attrs: dict

    @property
    def n_features(self) -> int:
        """The input dimension n_0."""
        return self.x_train.shape[1]

    @property
    def constant_loss(self) -> float:
        """The training loss of the best constant predictor.

        Returns:
          The entropy (nats) of the training class frequencies, or 0.5 · n_outputs for the
          standardised regression targets (the loss is 0.5 · squared error summed over outputs).
        """
        if self.task == CLASSIFICATION:
            p = np.bincount(self.y_train, minlength=self.n_outputs) / self.y_train.size
            p = p[p > 0]
            return float(-(p * np.log(p)).sum())
        return 0.5 * float(self.y_train.var(axis=0).sum())


@functools.cache
def load(name: str) -> Dataset:
    """Makes one of the datasets (cached for the process).

    Args:
      name: ``"mnist1d"``, ``"digits"`` or ``"teacher"``.

    Returns:
      The dataset.

    Raises:
      SpecError: for ``dataset`` when the name is unknown or its package is missing.
    """
    makers = {"mnist1d": _mnist1d, "digits": _digits, "teacher": _teacher}
    if name not in makers:
        raise SpecError("dataset", f"must be one of {', '.join(map(repr, makers))}, got {name!r}")
    x_train, y_train, x_test, y_test, task, n_outputs, attrs = makers[name]()
    x_train, x_test = _standardise(x_train, x_test)
    attrs = {
        "dataset": name, "dataset_task": task, "dataset_n_train": int(len(x_train)),
        "dataset_n_test": int(len(x_test)), "dataset_n_features": int(x_train.shape[1]),
        "dataset_n_outputs": int(n_outputs),
        "dataset_standardisation": "per feature, with the training split's mean and standard deviation",
        **attrs,
    }
    return Dataset(name, task, x_train, y_train, x_test, y_test, n_outputs, attrs)


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _mnist1d():
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise SpecError("dataset", "'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    # make_dataset seeds Python's and NumPy's global generators; leave them as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    attrs = {
        "dataset_source": f"mnist1d.data.make_dataset with get_dataset_args() defaults (seed {args.seed}, "
                          f"{args.num_samples} examples), generated procedurally",
        "dataset_split": f"mnist1d's own: the first {len(d['y'])} examples train, the last {len(d['y_test'])} test",
    }
    y_train, y_test = d["y"].astype(np.int32), d["y_test"].astype(np.int32)
    return d["x"].astype(np.float64), y_train, d["x_test"].astype(np.float64), y_test, CLASSIFICATION, 10, attrs


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SpecError("dataset", "'digits' needs scikit-learn: pip install scikit-learn") from None
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    n_train = len(y) - _DIGITS_TEST
    train, test = order[:n_train], order[n_train:]
    attrs = {
        "dataset_source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
        "dataset_split": f"numpy.random.default_rng(0).permutation({len(y)}): the first {n_train} train, "
                         f"the other {_DIGITS_TEST} test",
    }
    x = x.astype(np.float64)
    return x[train], y[train].astype(np.int32), x[test], y[test].astype(np.int32), CLASSIFICATION, 10, attrs


def _teacher():
    rng = np.random.default_rng(0)
    n = _TEACHER_TRAIN + _TEACHER_TEST
    x = rng.standard_normal((n, _TEACHER_INPUTS))
    h, fan = x, _TEACHER_INPUTS
    for width in _TEACHER_HIDDEN:
        w = rng.standard_normal((fan, width)) * _TEACHER_GAIN / np.sqrt(fan)
        b = rng.standard_normal(width) * _TEACHER_BIAS
        h, fan = np.tanh(h @ w + b), width
    y = h @ (rng.standard_normal((fan, 1)) / np.sqrt(fan))
    y_train, y_test = y[:_TEACHER_TRAIN], y[_TEACHER_TRAIN:]
    mean, std = y_train.mean(axis=0), y_train.std(axis=0)
    y_train, y_test = ((y_train - mean) / std).astype(np.float32), ((y_test - mean) / std).astype(np.float32)
    attrs = {
        "dataset_source": (
            f"teacher-student regression: x ~ N(0, I_{_TEACHER_INPUTS}); teacher tanh MLP "
            f"{_TEACHER_INPUTS} -> {' -> '.join(map(str, _TEACHER_HIDDEN))} -> 1, weights "
            f"N(0, {_TEACHER_GAIN}^2/fan_in), biases N(0, {_TEACHER_BIAS}^2), readout N(0, 1/fan_in), "
            "drawn by numpy.random.default_rng(0); targets standardised, noise-free"
        ),
        "dataset_split": f"the first {_TEACHER_TRAIN} draws train, the next {_TEACHER_TEST} test",
    }
    return x[:_TEACHER_TRAIN], y_train, x[_TEACHER_TRAIN:], y_test, REGRESSION, 1, attrs
