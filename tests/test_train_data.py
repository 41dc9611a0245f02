"""The training datasets: offline, standardised, with a fixed and recorded split."""

import random
import socket

import numpy as np
import pytest

from sweep.train import data


@pytest.fixture
def no_network(monkeypatch):
    """Makes any attempt to open a connection fail."""
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name, n_train, n_test, n_features, n_outputs, task", [
    ("mnist1d", 4000, 1000, 40, 10, "classification"),
    ("digits", 1437, 360, 64, 10, "classification"),
    ("teacher", 4096, 1024, 32, 1, "regression"),
])
def test_shapes_split_and_attributes(no_network, name, n_train, n_test, n_features, n_outputs, task):
    data.load.cache_clear()
    d = data.load(name)
    assert d.x_train.shape == (n_train, n_features) and d.x_test.shape == (n_test, n_features)
    assert len(d.y_train) == n_train and len(d.y_test) == n_test
    assert (d.n_features, d.n_outputs, d.task) == (n_features, n_outputs, task)
    assert d.x_train.dtype == np.float32
    assert d.attrs["dataset_n_train"] == n_train and d.attrs["dataset_n_test"] == n_test
    assert d.attrs["dataset_split"] and d.attrs["dataset_source"]
    if task == "classification":
        assert d.y_train.dtype == np.int32 and set(np.unique(d.y_train)) == set(range(10))
    else:
        assert d.y_train.shape == (n_train, 1)
        np.testing.assert_allclose(d.y_train.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(d.y_train.std(0), 1, rtol=1e-5)


@pytest.mark.parametrize("name", ["mnist1d", "digits", "teacher"])
def test_inputs_are_standardised_with_training_statistics(name):
    d = data.load(name)
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-5)
    std = d.x_train.std(0)
    np.testing.assert_allclose(std[std > 0], 1, rtol=1e-4)  # digits has always-blank pixels
    assert abs(float(d.x_test.mean())) < 0.2


def test_datasets_are_fixed():
    first = data.load("digits")
    data.load.cache_clear()
    again = data.load("digits")
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)


def test_mnist1d_leaves_the_global_generators_alone():
    data.load.cache_clear()
    random.seed(123)
    np.random.seed(123)
    data.load("mnist1d")
    assert random.random() == random.Random(123).random()
    assert np.random.random() == np.random.RandomState(123).random_sample()


def test_constant_predictor_loss():
    assert data.load("mnist1d").constant_loss == pytest.approx(np.log(10), abs=0.01)
    assert data.load("teacher").constant_loss == pytest.approx(0.5, rel=1e-5)
