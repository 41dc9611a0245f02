"""Point 10 and the coordinate-check section read their exponents from the store: nothing is typed in."""

import re

import numpy as np
import pytest
import xarray as xr
from report_check import mismatches

from sweep.config import TrainSpec
from sweep.io import schema
from sweep.report import coord_check, coordinates, sections
from sweep.report.survey import survey

EXPONENT = {"standard": 1.0, "mup": 0.0}
"""The readout's width exponent the synthetic store is made with; every hidden layer's is 0."""


@pytest.fixture(scope="module")
def store():
    """A coord_check store's layout with sizes drawn from a known law: c · n^b · (1 + 3/n) · e^ε, ε ~ N(0, 0.05²)."""
    spec = TrainSpec.from_dict({
        "kind": "train", "name": "coord_check", "dataset": "digits", "steps": 2, "batch": 16, "eval_every": 2,
        "seeds": 6, "readout_init": "zero", "base_width": 16,
        "grid": {"activation": ["relu"], "depth": [2], "width": [16, 32, 64, 128], "parametrization": ["standard", "mup"],
                 "learning_rate": [0.1]}})
    ds = schema.template(spec).load()
    rng = np.random.default_rng(0)
    n = ds.width
    for name in ds.data_vars:
        if str(name).startswith("coord_"):
            b = xr.DataArray([EXPONENT[p] if "output" in str(name) else 0.0 for p in ds.parametrization.values],
                             coords={"parametrization": ds.parametrization})
            noise = xr.ones_like(ds[name]) * np.exp(rng.normal(0.0, 0.05, ds[name].shape))
            ds[name] = (noise * 0.5 * n**b * (1 + 3 / n)).transpose(*ds[name].dims).astype(np.float32)
    ds["coord_output_abs_mean"] = ds.coord_output_abs_mean.where(ds.coord_step > 0, 0.0)  # a zero readout at init
    return ds


def _exponents(text):
    """The table's cells ``b ± se`` by (parametrisation, steps), in column order."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] in ("standard", "mup"):
            out[cells[0], int(cells[1])] = [float(re.split(" ± ", c)[0]) for c in cells[2:]]
    return out


def test_the_exponents_move_with_the_store(store):
    before = _exponents(coord_check.coord_check({"coord_check": store}).text)
    assert set(before) == {(p, s) for p in ("standard", "mup") for s in (1, 2)}
    # size · width raises every exponent of a log-linear fit by exactly 1
    scaled = store.assign(coord_output_abs_mean=store.coord_output_abs_mean * store.width,
                          coord_act_abs_mean=store.coord_act_abs_mean * store.width)
    after = _exponents(coord_check.coord_check({"coord_check": scaled}).text)
    for key, values in before.items():
        np.testing.assert_allclose(after[key], np.asarray(values) + 1, atol=2e-3)  # printed to three digits
    assert coord_check.coord_check({}) is None


def test_the_exponents_are_those_the_sizes_were_drawn_with(store):
    fitted = coordinates.slopes(store)
    assert (("mup", 0, coordinates.READOUT) not in fitted) and (("standard", 1, coordinates.READOUT) in fitted)
    assert len(fitted) == 16  # 2 parametrisations × 3 steps × 2 layers, and the readout after 1 and 2 steps
    for (name, step, layer), e in fitted.items():
        truth = EXPONENT[name] if layer == coordinates.READOUT else 0.0
        assert abs(e.value - truth) < 4 * e.se, (name, step, layer, e)  # Bonferroni: 16 × P(|z| > 4) = 1.0e-3
    # without the 1/n term, the (1 + 3/n) correction reads as a negative exponent
    plain = coordinates.slopes(store, finite_width=False)
    assert all(e.value < -4 * e.se for (_, _, layer), e in plain.items() if layer != coordinates.READOUT)


def test_any_training_store_with_three_widths_gets_the_section_and_its_table_recomputes(store):
    section = sections.coord_check(survey(store))
    assert isinstance(section, sections.Section)
    assert mismatches(section.text, store) == []
    wrong = re.sub(r"\| mup \| 2 \| 1 \| [^|]+\|", "| mup | 2 | 1 | 0.500 ± 0.010 |", section.text, count=1)
    assert wrong != section.text and len(mismatches(wrong, store)) == 1
    narrow = sections.coord_check(survey(store.sel(width=[16, 32])))
    assert isinstance(narrow, sections.Skipped) and "≥ 3 widths" in narrow.reason
