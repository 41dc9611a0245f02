"""deviation(ds): measurement minus theory in units of the measurement's standard error."""

import math

import numpy as np
import pytest

from sweep import Grid, Spec
from sweep.io import schema as store
from sweep.theory import deviation, predict


def synthetic(spec, offset=0.0, seed=0):
    """A dataset in the engine's layout: theory × (1 + offset + N(0, 0.1²) noise) per seed."""
    rng = np.random.default_rng(seed)
    theory = predict(spec)
    arrays = store.empty_arrays(spec)
    for name in arrays:
        if f"theory_{name}" in theory and arrays[name].dtype == float:
            t = theory[f"theory_{name}"].values[..., None, :] if arrays[name].ndim == 9 else None
            if t is not None:
                arrays[name][:] = t * (1 + offset + 0.1 * rng.standard_normal(arrays[name].shape))
    return store.to_dataset(spec, arrays), theory


def test_deviation_is_mean_minus_theory_over_standard_error():
    spec = Spec(seeds=5, batch=4, grid=Grid(activation=("relu",), depth=(2, 3), width=(16,), gain=(1.0, 1.4)))
    ds, theory = synthetic(spec, offset=0.05)
    dev = deviation(ds, theory)
    x = ds.preact_meansq.values
    expected = (x.mean(-2) - theory.theory_preact_meansq.values) / (x.std(-2, ddof=1) / math.sqrt(5))
    np.testing.assert_allclose(dev.preact_meansq.values, expected, rtol=1e-12)
    assert dev.preact_meansq.dims == theory.theory_preact_meansq.dims
    assert np.isnan(dev.preact_meansq.sel(depth=2, layer=3)).all()
    assert np.isnan(dev.loss).all()  # the synthetic loss was never filled


def test_deviation_computes_the_theory_from_the_stored_spec():
    spec = Spec(seeds=4, batch=2, grid=Grid(activation=("tanh",), depth=(2,), width=(8,), bias_std=(0.1,)))
    ds, theory = synthetic(spec)
    np.testing.assert_array_equal(deviation(ds).act_meansq.values, deviation(ds, theory).act_meansq.values)


def test_overflowed_seeds_are_left_out():
    spec = Spec(seeds=6, batch=2, grid=Grid(activation=("relu",), depth=(2,), width=(8,)))
    ds, theory = synthetic(spec)
    clean = deviation(ds.isel(seed=slice(1, None)), theory)
    ds["act_meansq"][..., 0, :] = np.inf
    np.testing.assert_allclose(deviation(ds, theory).act_meansq.values, clean.act_meansq.values, rtol=1e-12)


def test_log_norm_deviation_at_batch_one_uses_log_act_meansq():
    spec = Spec(seeds=50, batch=1, grid=Grid(activation=("relu",), depth=(3,), width=(16,)))
    ds, theory = synthetic(spec)
    ds["act_meansq"][..., 3, 0] = 0.0  # a dead network is left out, as the law is conditioned
    dev = deviation(ds, theory)
    with np.errstate(divide="ignore"):
        y = np.log(ds.act_meansq.values.squeeze())
    alive = np.isfinite(y)
    mean_theory = theory.theory_log_act_norm_mean.values.squeeze()
    for layer in range(3):
        v = y[alive[:, layer], layer]
        expected = (v.mean() - mean_theory[layer]) / (v.std(ddof=1) / math.sqrt(v.size))
        assert float(dev.log_act_norm_mean.squeeze()[layer]) == pytest.approx(expected, rel=1e-10)
    assert np.isfinite(dev.log_act_norm_var).all()
