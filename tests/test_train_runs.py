"""Training runs: chunk-size independence, divergence isolation, curves, the stored dataset."""

import numpy as np
import pytest
import xarray as xr

import sweep
from sweep import plan
from sweep.config import GRID_AXES, TrainSpec
from sweep.train import schedule

DIVERGING_RATE = 1e3
SPEC = TrainSpec.from_dict({
    "kind": "train", "name": "runs", "dataset": "teacher", "rng_seed": 3, "seeds": 17, "batch": 16,
    "steps": 12, "eval_every": 5, "optimizer": "momentum", "target_loss": 0.45, "sharpness_iterations": 4,
    "grid": {"activation": ["relu"], "depth": [2], "width": [8], "gain": [1.0, 3.0], "bias_std": [0.1],
             "learning_rate": [0.05, 0.5, DIVERGING_RATE]},
})


def _train_job(spec: TrainSpec, memory="1GB") -> plan.Job:
    return plan.make_plan(spec, memory).groups[0].jobs[1]


def _memory_for(spec: TrainSpec, micro_batches: int) -> int:
    """A memory budget that fits exactly ``micro_batches`` micro-batches per training call
    (and, with 17 seeds, whole micro-batches of the initial networks' statistics)."""
    job = _train_job(spec)
    return micro_batches * job.micro_batch * job.bytes_per_network


@pytest.fixture(scope="module")
def runs():
    """The same spec (102 networks, 4 micro-batches) in one call, in calls of 2 and of 1 micro-batch."""
    out = {}
    job = _train_job(SPEC)
    assert SPEC.num_networks > 3 * job.micro_batch  # several micro-batches, the last one padded
    for micro_batches in (4, 2, 1):
        memory = _memory_for(SPEC, micro_batches)
        assert plan.make_plan(SPEC, memory).call_size(job) == micro_batches
        out[micro_batches] = sweep.run(SPEC, memory=memory, progress=False)
    return out


def test_results_are_bit_identical_whatever_the_chunk_size(runs):
    for micro_batches in (2, 1):
        xr.testing.assert_identical(runs[micro_batches].drop_attrs(), runs[4].drop_attrs())
    assert runs[4]["diverged"].any()  # a diverging network shared the calls
    assert np.isfinite(runs[4]["init_sharpness"]).all()  # and so did the first step's Hessian-vector products


def test_a_budget_below_one_micro_batch_is_refused():
    with pytest.raises(sweep.SpecError, match="memory"):
        sweep.run(SPEC, memory=_memory_for(SPEC, 1) - 1, progress=False)


def test_a_diverging_network_is_recorded_and_frozen(runs):
    ds = runs[4]
    bad = ds.sel(learning_rate=DIVERGING_RATE)
    assert bad["diverged"].all()
    assert np.isfinite(bad["loss_at_init"]).all()
    for point in bad["train_loss"].stack(net=[d for d in bad["train_loss"].dims if d != "step"]).transpose("net", "step").values:
        first = np.flatnonzero(~np.isfinite(point))[0]
        assert first > 0 and np.isnan(point[first + 1:]).all()  # recorded as it was, then NaN
    assert bad["test_loss"].isel(eval_step=-1).isnull().all()
    good = ds.sel(learning_rate=[0.05, 0.5])
    assert not good["diverged"].any() and np.isfinite(good["train_loss"]).all()


def test_a_diverging_network_never_poisons_the_others_in_its_call(runs):
    healthy = SPEC.replace(grid={"learning_rate": [0.05, 0.5]})
    alone = sweep.run(healthy, memory=_memory_for(healthy, 2), progress=False)
    together = runs[4].sel(learning_rate=[0.05, 0.5])  # shared calls with the diverging ones
    for name in ("train_loss", "test_loss", "test_accuracy", "diverged", "steps_to_target"):
        xr.testing.assert_identical(together[name].drop_attrs(), alone[name].drop_attrs())


def test_curves_and_steps_to_target(runs):
    ds = runs[4]
    assert list(ds["step"].values) == list(range(12))
    assert list(ds["eval_step"].values) == [0, 5, 10, 12]
    assert ds.attrs["target_loss"] == 0.45
    below = (ds["train_loss"] < 0.45).values
    first = np.where(below.any(-1), below.argmax(-1), np.nan)
    np.testing.assert_array_equal(ds["steps_to_target"].values, first)
    assert ds["steps_to_target"].notnull().any() and ds["steps_to_target"].isnull().any()
    assert ds["test_accuracy"].isnull().all()  # regression: no accuracy
    assert (ds["loss_at_init"] > 0).all()


def test_log_every_records_every_kth_step_and_the_bar_shows_the_loss(runs, capsys):
    spec = SPEC.replace(log_every=5)
    ds = sweep.run(spec, memory=_memory_for(spec, 2), progress=True)
    assert list(ds["step"].values) == [0, 5, 10]
    xr.testing.assert_identical(ds["train_loss"].drop_attrs(), runs[2]["train_loss"].isel(step=[0, 5, 10]).drop_attrs())
    assert "loss=" in capsys.readouterr().err


def test_the_dataset_contract(runs, tmp_path):
    ds = runs[4]
    run_dims = GRID_AXES + ("learning_rate", "seed")
    assert ds["train_loss"].dims == run_dims + ("step",)
    assert ds["test_loss"].dims == ds["test_accuracy"].dims == run_dims + ("eval_step",)
    assert ds["diverged"].dims == ds["steps_to_target"].dims == run_dims
    assert ds["loss_at_init"].dims == GRID_AXES + ("seed",)
    for name in sweep.kernel.LAYER_STATS + ("overflow",):
        assert ds[f"init_{name}"].dims == GRID_AXES + ("seed", "layer")
    for name in ds.variables:
        assert ds[name].attrs.get("long_name") and "units" in ds[name].attrs, name
    for key in ("spec", "versions", "git_commit", "dataset", "dataset_split", "target_loss", "batch_schedule",
                "init_statistics", "network_keys", "input_dim"):
        assert key in ds.attrs, key
    assert TrainSpec.from_json(ds.attrs["spec"]) == SPEC and ds.attrs["input_dim"] == 32

    out = tmp_path / "runs.zarr"
    sweep.run(SPEC.replace(steps=2, eval_every=1), out=out, memory=_memory_for(SPEC, 18), progress=False)
    back = sweep.load(out).load()
    assert back.attrs["dataset"] == "teacher" and back["diverged"].dtype == bool
    with pytest.raises(sweep.SpecError) as info:
        sweep.run(SPEC, out=out, progress=False)
    assert info.value.field == "out"


def test_the_batch_schedule_is_fixed_and_walks_through_epochs():
    rows = schedule.batch_rows(3, 50, 16, 0, 10)
    assert rows.shape == (10, 16)
    halves = [schedule.batch_rows(3, 50, 16, 0, 4), schedule.batch_rows(3, 50, 16, 4, 10)]
    np.testing.assert_array_equal(np.concatenate(halves), rows)
    flat = rows.ravel()
    for e in range(3):  # each epoch visits every example once
        assert sorted(flat[50 * e: 50 * (e + 1)]) == list(range(50))
    assert not np.array_equal(schedule.batch_rows(4, 50, 16, 0, 10), rows)


def test_a_batch_larger_than_the_training_split_is_refused():
    with pytest.raises(sweep.SpecError) as info:
        sweep.run(SPEC.replace(batch=5000), progress=False)  # 4096 training examples
    assert info.value.field == "batch"
