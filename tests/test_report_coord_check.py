"""Point 10 and the coordinate-check section read their exponents from the store: nothing is typed in."""

import re

import numpy as np
import pytest
from report_check import mismatches

import sweep
from sweep.config import TrainSpec
from sweep.report import coord_check, sections
from sweep.report.survey import survey


@pytest.fixture(scope="module")
def store():
    spec = TrainSpec.from_dict({
        "kind": "train", "name": "coord_check", "dataset": "digits", "steps": 2, "batch": 16, "eval_every": 2,
        "seeds": 3, "readout_init": "zero", "base_width": 16,
        "grid": {"activation": ["relu"], "depth": [2], "width": [16, 32, 64], "parametrization": ["standard", "mup"],
                 "learning_rate": [0.1]}})
    return sweep.run(spec, progress=False)


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


def test_any_training_store_with_three_widths_gets_the_section_and_its_table_recomputes(store):
    section = sections.coord_check(survey(store))
    assert isinstance(section, sections.Section)
    assert mismatches(section.text, store) == []
    wrong = re.sub(r"\| mup \| 2 \| 1 \| [^|]+\|", "| mup | 2 | 1 | 0.500 ± 0.010 |", section.text, count=1)
    assert wrong != section.text and len(mismatches(wrong, store)) == 1
    narrow = sections.coord_check(survey(store.sel(width=[16, 32])))
    assert isinstance(narrow, sections.Skipped) and "≥ 3 widths" in narrow.reason
