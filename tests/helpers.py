"""Helpers shared by the tests: small specs, dataset and store comparison, and the plain-autodiff reference."""

import json
from pathlib import Path

import numpy as np
import pytest

import sweep
from sweep.engine import checkpoint
from sweep.kernel.reference import plain_statistics  # noqa: F401  (the tests' reference)


def slow(*values):
    """One case of a parametrised test, run with the long tests: its siblings cover it by default."""
    return pytest.param(*values, marks=pytest.mark.slow)


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


def files(path: Path) -> dict:
    """Every file of a store but its work record, by relative path."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and checkpoint.FOLDER not in p.relative_to(path).parts}


def assert_same_store(a: Path, b: Path):
    """Every chunk and array's metadata byte for byte; the attributes but when and on what."""
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    own = {Path(".zattrs"), Path(".zmetadata")}
    assert [k for k in fa if k not in own and fa[k] != fb[k]] == []
    attrs_a, attrs_b = (json.loads(fa[Path(".zattrs")]), json.loads(fb[Path(".zattrs")]))
    for key in ("created", "device_kind"):
        attrs_a.pop(key), attrs_b.pop(key)
    assert attrs_a == attrs_b
    assert_identical(sweep.load(a).load(), sweep.load(b).load())


def z_threshold(tests: int, alpha: float = 1e-3) -> float:
    """The two-sided z beyond which one of ``tests`` comparisons fails, family-wise error ``alpha`` (Bonferroni)."""
    from sweep.report.numbers import bonferroni_z

    return bonferroni_z(tests, alpha)
