"""`sweep report` and `sweep plot` work on any store, and every number they print follows from it."""

import math
import re
import time

import matplotlib.image
import numpy as np
import pytest
import report_check

import sweep
from sweep import cli

pytestmark = pytest.mark.serial  # its reports are timed

SQRT2 = math.sqrt(2.0)

# Names that are not the paper's, grids of different shapes.
STORES = {
    "two_gains_one_depth": dict(
        seeds=6, batch=4, grid=dict(activation=["relu"], depth=[4], width=[8], gain=[1.0, SQRT2])),
    "orthogonal_alternating_bias": dict(
        seeds=6, batch=2, jacobian=True,
        grid=dict(activation=["tanh"], init=["orthogonal", "fan_in"], profile=["alternating"], depth=[2, 3],
                  width=[8], gain=[0.9, 1.0, 1.3], bias_std=[0.1])),
    "quick_at_test_size": dict(  # analysis/specs/quick.toml's axes, fewer and smaller networks
        seeds=6, batch=4,
        grid=dict(activation=["relu", "tanh"], init=["fan_in", "fan_avg"], depth=[3, 6], width=[8, 16],
                  gain=dict(start=0.5, stop=2.5, num=9))),
    "tiny_training": dict(
        kind="train", dataset="teacher", optimizer="sgd", steps=12, batch=8, eval_every=6, seeds=3,
        grid=dict(activation=["tanh"], depth=[2, 3], width=[8], gain=[0.8, 1.3, 2.0], bias_std=[0.1],
                  learning_rate=[0.05])),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    paths = {}
    for name, raw in STORES.items():
        spec = sweep.load_spec({"name": name, **raw})
        sweep.run(spec, out=root / f"{name}.zarr", progress=False)
        paths[name] = root / f"{name}.zarr"
    return paths


@pytest.fixture(scope="module")
def reports(stores, tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    out = {}
    for name, path in stores.items():
        start = time.perf_counter()
        assert cli.main(["report", str(path), "--out", str(root / name)]) == 0
        out[name] = (root / name, time.perf_counter() - start)
    return out


def _figures(markdown: str) -> list[str]:
    return re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)


def _pixel_std(path) -> float:
    return float(np.asarray(matplotlib.image.imread(path))[..., :3].std())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STORES))
def test_every_listed_figure_exists_and_is_not_blank(reports, name):
    folder, seconds = reports[name]
    text = (folder / "report.md").read_text()
    figures = _figures(text)
    assert figures
    for figure in figures:
        assert _pixel_std(folder / figure) > 0.05, figure
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures) and 'src="figures' not in html
    assert seconds < 60


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STORES))
def test_every_table_number_is_recomputed_from_the_store(reports, stores, name):
    text = (reports[name][0] / "report.md").read_text()
    found = report_check.tables(text)
    assert found, "no tables"
    assert report_check.mismatches(text, sweep.load(stores[name])) == []


@pytest.mark.slow
def test_the_recomputation_catches_a_changed_number(reports, stores):
    """The check above has power: one digit changed in one table cell is found."""
    text = (reports["quick_at_test_size"][0] / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| relu |") and "±" in line)
    cells = row.split("|")
    measured = next(i for i, c in enumerate(cells) if "±" in c)
    value = cells[measured].split("±")[0].strip()
    changed = value[:-1] + str((int(value[-1]) + 3) % 10)
    cells[measured] = cells[measured].replace(value, changed, 1)
    wrong = text.replace(row, "|".join(cells), 1)
    assert len(report_check.mismatches(wrong, sweep.load(stores["quick_at_test_size"]))) == 1


@pytest.mark.slow
def test_points_the_data_cannot_support_are_listed_with_reasons(reports):
    def skipped(name):
        text = (reports[name][0] / "report.md").read_text()
        return text[text.index("## Points the data cannot support"):text.index("## Provenance")]

    small = skipped("two_gains_one_depth")
    assert "phase: needs ≥ 3 gains and ≥ 2 depths (the store has 2 and 1)" in small
    assert "spread: needs ≥ 2 widths or ≥ 2 depths" in small
    assert "spectra: needs a statistics store with jacobian = true" in small
    assert "training: needs a training store" in small
    assert "phase" not in skipped("quick_at_test_size") and "spectra" not in skipped("orthogonal_alternating_bias")
    training = skipped("tiny_training")
    assert all(f"{k}: needs a statistics store" in training for k in ("forward", "backward", "gradients", "spectra"))


@pytest.mark.slow
@pytest.mark.parametrize("kind, store, sel", [
    ("forward", "quick_at_test_size", ["activation=relu", "gain=1.5"]),
    ("backward", "quick_at_test_size", []),
    ("gradients", "quick_at_test_size", ["init=fan_avg"]),
    ("phase", "quick_at_test_size", ["width=8"]),
    ("spread", "quick_at_test_size", []),
    ("spectra", "orthogonal_alternating_bias", ["depth=3"]),
    ("training", "tiny_training", []),
])
def test_sweep_plot_draws_each_kind(stores, tmp_path, kind, store, sel):
    out = tmp_path / f"{kind}.png"
    args = ["plot", str(stores[store]), "--kind", kind, "--out", str(out)]
    assert cli.main(args + [a for s in sel for a in ("--sel", s)]) == 0
    assert _pixel_std(out) > 0.05


@pytest.mark.slow
@pytest.mark.parametrize("sel, message", [
    ("colour=red", "--sel colour: not an axis of this store; it has activation, init, profile, depth, width, gain, "
                   "bias_std"),
    ("activation=gelu", "--sel activation: 'gelu' is not a label; the store holds relu, tanh"),
    ("gain=1.3", "--sel gain: '1.3' matches 0 labels; the store holds 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5"),
    ("depth", "--sel: 'depth' is not key=value"),
])
def test_a_bad_selection_is_one_line_naming_the_key(stores, tmp_path, capsys, sel, message):
    out = tmp_path / "x.png"
    assert cli.main(["plot", str(stores["quick_at_test_size"]), "--kind", "forward", "--sel", sel,
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sweep: error: {message}" and not out.exists()


def test_the_readme_brief_quotes_only_numbers_of_the_committed_report():
    """The README's summary is copied from analysis/report/report.md; every decimal in it must be there."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    brief = readme[readme.index("## The answer in brief"):readme.index("## Usage")]
    report = (root / "analysis" / "report" / "report.md").read_text()
    numbers = re.findall(r"\d+\.\d+", brief)
    assert len(numbers) > 10
    assert [n for n in numbers if n not in report] == []


@pytest.mark.slow
def test_a_store_named_as_a_paper_experiment_but_of_another_grid_gets_the_generic_points(tmp_path):
    spec = sweep.load_spec({"name": "forward", **STORES["two_gains_one_depth"]})
    sweep.run(spec, out=tmp_path / "forward.zarr", progress=False)
    assert cli.main(["report", str(tmp_path / "forward.zarr"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## 1." not in text and "## Store `forward`" in text
    assert "- `paper`, forward_signals: the paper's prose needs the labels of its spec in analysis/specs" in text
