"""Helpers shared by the tests: small specs, dataset comparison, and the plain-autodiff reference."""

import numpy as np

import sweep
from sweep.kernel.reference import plain_statistics  # noqa: F401  (the tests' reference)


def small_spec(**changes) -> sweep.Spec:
    """A tiny stats spec; keyword arguments override top-level keys, ``grid`` overrides axes."""
    grid = {"activation": ["relu"], "init": ["fan_in"], "profile": ["constant"], "depth": [3],
            "width": [8], "gain": [1.0, 1.5], "bias_std": [0.0]}
    grid.update(changes.pop("grid", {}))
    raw = {"name": "tiny", "seeds": 3, "batch": 4, "grid": grid}
    raw.update(changes)
    return sweep.Spec.from_dict(raw)


def assert_identical(a, b):
    """Every variable of two datasets equal bit for bit, NaN where NaN."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
