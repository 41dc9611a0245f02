"""On stores named as the paper's experiments, `sweep report` also writes the paper's points."""

import math
import re
import time

import pytest

import sweep
from sweep import cli

pytestmark = pytest.mark.serial  # its reports are timed

SQRT2 = math.sqrt(2.0)
TINY = {
    "forward": dict(seeds=6, batch=8, grid=dict(init=["fan_in", "fan_avg"], depth=[4], width=[16], gain=[1.0, SQRT2])),
    "backward": dict(seeds=6, batch=8, loss="projection",
                     grid=dict(init=["fan_in", "fan_out"], profile=["alternating"], depth=[5], width=[8], gain=[SQRT2])),
    "finite_width": dict(seeds=64, batch=1, grid=dict(depth=[2, 4], width=[8], gain=[SQRT2])),
    "weight_gradients": dict(seeds=64, batch=1, grid=dict(depth=[4], width=[8, 16], gain=[SQRT2])),
    "weight_gradients_batch": dict(seeds=16, batch=4, common_random_numbers=True,
                                   grid=dict(depth=[4], width=[16], gain=[1.0, SQRT2, 1.6])),
    "phase": dict(seeds=4, batch=4, loss="projection",
                  grid=dict(activation=["relu", "tanh"], depth=[2, 4], width=[8], gain=[0.8, 1.4, 2.0], bias_std=[0.0])),
    "jacobian": dict(seeds=4, batch=2, jacobian=True,
                     grid=dict(activation=["relu", "tanh"], init=["fan_in"], depth=[3], width=[8], gain=[1.0, SQRT2])),
    "conv": dict(seeds=4, batch=2, loss="projection", layer="conv", spatial=[6, 6],
                 grid=dict(init=["fan_in", "fan_out"], profile=["constant", "alternating"], depth=[3], width=[4],
                           kernel_size=[3], gain=[SQRT2, 3 * SQRT2])),
    "residual": dict(seeds=4, batch=2, loss="projection", block="residual",
                     grid=dict(init=["fan_in", "fixup"], depth=[4], width=[8], branch_scale=[0.0, 0.5, 1.0],
                               gain=[SQRT2])),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    paths = []
    for name, raw in TINY.items():
        spec = sweep.Spec.from_dict({"name": name, **raw})
        sweep.run(spec, out=root / f"{name}.zarr", progress=False)
        paths.append(root / f"{name}.zarr")
    return paths


@pytest.mark.slow
def test_report_has_every_figure_and_answer_within_a_minute(stores, tmp_path):
    start = time.perf_counter()
    assert cli.main(["report", *map(str, stores), "--out", str(tmp_path / "report")]) == 0
    assert time.perf_counter() - start < 60
    text = (tmp_path / "report" / "report.md").read_text()
    for name in ("forward", "backward", "weight_gradients", "finite_width", "phase", "jacobian", "conv", "residual"):
        assert (tmp_path / "report" / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / "report" / "figures" / f"{name}.pdf").exists()
        assert f"figures/{name}.png" in text
    for number in ("1.", "2.", "3.", "4.", "5.", "7.", "8."):
        assert f"## {number}" in text
    assert "±" in text and "Provenance" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == text.count("](figures/") and "src=\"figures" not in html


@pytest.mark.slow
def test_report_numbers_follow_the_data(stores, tmp_path):
    """Doubling the stored gradients of point 3's batch sweep doubles the reported level and its ratio to the
    finite-width law; the predictions stay: nothing is typed in."""
    from sweep.report import load_results, paper

    results = load_results(stores)
    before = paper.weight_gradients(results).text
    store = results["weight_gradients_batch"]
    results["weight_gradients_batch"] = store.assign(grad_weight_meansq=store.grad_weight_meansq * 2)
    after = paper.weight_gradients(results).text
    assert before != after
    row = lambda t: re.search(r"\| √2 \| [^|]+\| [^|]+\| [^|]+\| ([0-9.e+-]+) ± [^|]+\| ([0-9.e+-]+) \| "
                              r"([0-9.e+-]+) ± [^|]+\| ([0-9.e+-]+) \|", t)
    assert float(row(after).group(1)) == pytest.approx(2 * float(row(before).group(1)), rel=1e-2)
    assert row(after).group(2) == row(before).group(2) and row(after).group(3) == row(before).group(3)
    assert float(row(after).group(4)) == pytest.approx(2 * float(row(before).group(4)), rel=1e-2)


@pytest.mark.slow
def test_the_families_point_follows_the_data(stores):
    """Doubling the residual stream's last block doubles the reported growth: nothing is typed in."""
    from sweep.report import families, load_results

    results = load_results(stores)
    before = families.families(results).text
    last = results["residual"].stream_meansq.layer.max()
    doubled = results["residual"].stream_meansq.where(results["residual"].layer != last,
                                                      2 * results["residual"].stream_meansq)
    results["residual"] = results["residual"].assign(stream_meansq=doubled)
    after = families.families(results).text
    assert before != after
    growth = lambda t: float(re.search(r"\| fan_in \| 1 \| ([0-9.e+-]+)", t).group(1))
    assert growth(after) == pytest.approx(2 * growth(before), rel=2e-2)


@pytest.mark.slow
def test_the_width_table_of_point_3_follows_the_data(stores):
    """Doubling the batch-1 weight gradients doubles the measured level and its ratios; the predictions stay."""
    from sweep.report import load_results, paper

    results = load_results(stores)
    row = lambda t: re.search(r"\| 8 \| 0\.5 \| ([0-9.e+-]+) ± [^|]+\| ([0-9.e+-]+) \| ([0-9.e+-]+) \| ([0-9.e+-]+) \|", t)
    before = row(paper.weight_gradients(results).text)
    results["weight_gradients"] = results["weight_gradients"].assign(
        grad_weight_meansq=results["weight_gradients"].grad_weight_meansq * 2)
    after = row(paper.weight_gradients(results).text)
    assert float(after.group(1)) == pytest.approx(2 * float(before.group(1)), rel=1e-2)
    assert after.group(2) == before.group(2) and after.group(3) == before.group(3)
    assert float(after.group(4)) == pytest.approx(2 * float(before.group(4)), rel=1e-2)
