"""Theory against the engine: predictions within the measurement's standard errors.

Each engine run is small (a few dozen networks per grid point at width 512, or 2000 tiny
networks) so that the file runs in about two minutes on two cores.

How a pass is judged. The deviation of statistic s at layer l is
d = (mean over S seeds − theory) / (std / √S), Student-t with S − 1 degrees of freedom when
the theory is the expectation. Two criteria, both derived from the sample sizes alone:

* Per statistic and grid point: each seed's layer-average of (value − theory)/scale gives one
  number per network, whose t-statistic over the seeds is compared. Averaging within a
  network first makes the standard error valid whatever the correlation between the layers
  of one network (strong: the layers share their inputs).
* Per layer: every |d| of every statistic, layer and grid point.

Each criterion makes many comparisons (N: tens pooled, hundreds per layer), so a plain
"within 3 SE" is exceeded by chance (P(|t₃₁| > 3) = 0.5% per comparison; preact_mean, whose
theory 0 is exact at every width by symmetry, came out at 3.03 pooled SE on a first run).
The limit is therefore the Student-t quantile at family-wise level 1% (Bonferroni,
1 − 0.01/(2N)): about 4.0 pooled and 5 per layer for S = 32. The tests print the largest
deviations and how many exceed 3.

Finite-width corrections. The infinite-width values are off by O(Σ_l 1/n_l) relative (the
exact relu law: E[log R] ≈ −5/(2n) per layer; pooled variances lose E[mean²] ≤ q/n). Here
width 512 and depth ≤ 20 put them at ≲ 2% for forward statistics, and the seeds'
standard errors are 1–10%, so no extra tolerance is added; the tests print the deviations.
For relu with Gaussian weights and no bias, E[x_l²] and E[z_l²] are exact at every width.
"""

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import sweep
from sweep import Grid, Spec, theory
from sweep.theory.predict import LAYER_STATS

pytestmark = pytest.mark.slow

FAMILY_LEVEL = 0.01
MIN_EXPECTED_EVENTS = 5  # dead_fraction layers with fewer expected dead units are not compared


def scale(theory_ds: xr.Dataset, stat: str) -> xr.DataArray:
    """The natural size of a statistic (its theory, or √ of the second moment for means)."""
    if stat == "preact_mean":
        return np.sqrt(theory_ds.theory_preact_meansq)
    if stat == "act_mean":
        return np.sqrt(theory_ds.theory_act_meansq)
    return abs(theory_ds[f"theory_{stat}"])


def comparable(ds: xr.Dataset, theory_ds: xr.Dataset, stat: str, units: xr.DataArray) -> xr.DataArray:
    """Where a statistic can be compared: finite theory, and enough expected dead units."""
    ok = np.isfinite(theory_ds[f"theory_{stat}"])
    if stat == "dead_fraction":
        ok = ok & (theory_ds.theory_dead_fraction * units * ds.sizes["seed"] >= MIN_EXPECTED_EVENTS)
    return ok


def limit(comparisons: int, seeds: int) -> float:
    """Bonferroni Student-t limit for ``comparisons`` deviations at family-wise level 1%."""
    return float(stats.t.isf(FAMILY_LEVEL / (2 * comparisons), seeds - 1))


def judge(ds: xr.Dataset, theory_ds: xr.Dataset, stats_to_check=LAYER_STATS) -> None:
    """Applies both criteria (module doc) and prints the deviations."""
    seeds = ds.sizes["seed"]
    dev = theory.deviation(ds, theory_ds)
    masks = {s: comparable(ds, theory_ds, s, ds.layer_width) for s in stats_to_check}
    stats_to_check = [s for s in stats_to_check if bool(masks[s].any())]
    per_layer = {s: dev[s].where(masks[s]) for s in stats_to_check}
    pooled = {}
    for s in stats_to_check:
        relative = ((ds[s] - theory_ds[f"theory_{s}"]) / scale(theory_ds, s)).where(masks[s])
        per_seed = relative.mean("layer")
        pooled[s] = per_seed.mean("seed") / (per_seed.std("seed", ddof=1) / math.sqrt(seeds))
    pooled["loss"] = dev.loss
    layer_limit = limit(sum(int(np.isfinite(d).sum()) for d in per_layer.values()), seeds)
    pooled_limit = limit(sum(int(np.isfinite(t).sum()) for t in pooled.values()), seeds)
    print(f"\n  limits: per layer {layer_limit:.2f} SE, pooled {pooled_limit:.2f} SE")
    for s in stats_to_check:
        worst, beyond = float(abs(per_layer[s]).max()), int((abs(per_layer[s]) > 3).sum())
        print(f"  {s:<20} max |per layer| {worst:5.2f} (>3: {beyond:2d} of {int(np.isfinite(per_layer[s]).sum()):3d})"
              f"  pooled {np.round(pooled[s].values.ravel(), 2)}")
    print(f"  {'loss':<20} {np.round(pooled['loss'].values.ravel(), 2)}")
    for s, d in per_layer.items():
        assert float(abs(d).max()) <= layer_limit, f"{s}: per-layer deviation {float(abs(d).max()):.2f} SE"
    for s, t in pooled.items():
        assert float(abs(t).max()) <= pooled_limit, f"{s}: pooled deviation {float(abs(t).max()):.2f} SE"


@pytest.fixture(scope="module")
def tanh_run():
    bias_std = math.sqrt(0.05)
    critical = theory.critical_gain("tanh", bias_std)
    gains = tuple(round(critical * f, 6) for f in (0.85, 1.0, 1.2))
    spec = Spec(name="theory-tanh", rng_seed=1, seeds=32, batch=16, loss="mse", outputs=10,
                grid=Grid(activation=("tanh",), init=("fan_in",), profile=("constant",), depth=(20,),
                          width=(512,), gain=gains, bias_std=(bias_std,)))
    return sweep.run(spec, progress=False), theory.predict(spec)


@pytest.fixture(scope="module")
def relu_run():
    # Odd depth: with an even depth the last layer (n -> 2n) is a lone scan segment whose
    # carry changes shape, which the engine currently rejects.
    spec = Spec(name="theory-relu", rng_seed=2, seeds=32, batch=16, loss="mse", outputs=10,
                grid=Grid(activation=("relu",), init=("fan_in", "fan_out", "fan_avg"), profile=("alternating",),
                          depth=(5,), width=(512,), gain=(math.sqrt(2),), bias_std=(0.0,)))
    return sweep.run(spec, progress=False), theory.predict(spec)


def test_tanh_across_the_critical_gain_matches_mean_field(tanh_run):
    ds, theory_ds = tanh_run
    judge(ds, theory_ds)


def test_tanh_gradients_shrink_in_the_ordered_phase_and_grow_in_the_chaotic_one(tanh_run):
    """Backward growth from the last to the first layer rises with the gain, as predicted.

    At the critical gain it is not 1: the first layers sit at q₁ = σ_w² + σ_b² > q*, where
    tanh's slope is smaller, before q reaches its fixed point.
    """
    ds, theory_ds = tanh_run
    grad = ds.grad_preact_meansq.mean("seed").squeeze()
    measured = (grad.isel(layer=0) / grad.isel(layer=-1)).values
    predicted = theory_ds.theory_grad_preact_meansq.squeeze()
    predicted = (predicted.isel(layer=0) / predicted.isel(layer=-1)).values
    print(f"\n  first/last layer gradient ratio: measured {np.round(measured, 3)}, theory {np.round(predicted, 3)}")
    assert measured[0] < 1 < measured[2] and measured[0] < measured[1] < measured[2]
    assert predicted[0] < 1 < predicted[2] and predicted[0] < predicted[1] < predicted[2]


def test_relu_under_each_fan_on_unequal_widths_matches_mean_field(relu_run):
    ds, theory_ds = relu_run
    judge(ds, theory_ds)


def test_relu_forward_product_is_a_width_ratio_under_fan_out(relu_run):
    """He et al.'s c₂/d_L: fan_out leaves E[x_l²] = n_0/n_l, alternating 1 and 1/2."""
    ds, theory_ds = relu_run
    measured = ds.act_meansq.sel(init="fan_out").mean("seed").squeeze().values
    expected = theory_ds.theory_act_meansq.sel(init="fan_out").squeeze().values
    np.testing.assert_allclose(expected, [1.0, 0.5, 1.0, 0.5, 1.0])
    se = ds.act_meansq.sel(init="fan_out").std("seed", ddof=1).squeeze().values / math.sqrt(ds.sizes["seed"])
    assert np.all(abs(measured - expected) <= limit(len(expected), ds.sizes["seed"]) * se)


@pytest.fixture(scope="module", params=(16, 64))
def law_run(request):
    width = request.param
    spec = Spec(name=f"theory-law-{width}", rng_seed=3, seeds=2000, batch=1, loss="projection",
                grid=Grid(activation=("relu",), init=("fan_in",), profile=("constant",), depth=(8,),
                          width=(width,), gain=(math.sqrt(2),), bias_std=(0.0,)))
    return width, sweep.run(spec, progress=False), theory.predict(spec)


def test_exact_finite_width_law_matches_the_engine_log_moments(law_run):
    """Mean and variance of log act_meansq over 2000 networks: every layer within the limit for
    16 comparisons, and the layer-pooled mean within the limit for 2 (one per width)."""
    width, ds, theory_ds = law_run
    dev = theory.deviation(ds, theory_ds)
    seeds = ds.sizes["seed"]
    for stat in ("log_act_norm_mean", "log_act_norm_var"):
        d = dev[stat].squeeze().values
        print(f"\n  n = {width}: {stat} deviations (SE) per layer {np.round(d, 2)}")
        assert np.all(abs(d) <= limit(16, seeds))
    y = np.log(ds.act_meansq.squeeze().values)
    alive = np.all(np.isfinite(y), axis=1)
    per_network = (y[alive] - theory_ds.theory_log_act_norm_mean.squeeze().values).mean(axis=1)
    t = per_network.mean() / (per_network.std(ddof=1) / math.sqrt(per_network.size))
    print(f"  pooled over layers: {t:.2f} SE; {int((~alive).sum())} dead networks left out")
    assert abs(t) <= limit(2, seeds)


def test_exact_law_samples_match_the_engine_distribution(law_run):
    """Two-sample Kolmogorov–Smirnov at the last layer against 100000 exact samples."""
    width, ds, _ = law_run
    measured = ds.act_meansq.squeeze().values[:, -1]
    exact = theory.sample_relu_norms(np.random.default_rng(4), (width,) * 9, 100_000)[:, -1]
    p = stats.ks_2samp(measured, exact).pvalue
    print(f"\n  n = {width}: KS p-value {p:.3f}")
    assert p > 1e-3


def test_large_width_form_is_close_to_the_exact_law_at_64_but_not_16(law_run):
    width, _, theory_ds = law_run
    exact = theory_ds.theory_log_act_norm_var.squeeze().values
    approx = theory_ds.theory_log_act_norm_var_large_width.squeeze().values
    gap = float(abs(approx[-1] / exact[-1] - 1))
    assert gap < (0.1 if width == 64 else 1.0)
