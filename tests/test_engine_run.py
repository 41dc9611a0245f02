"""Running, storing and loading sweeps; the command line and its errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import assert_identical, assert_same_store, small_spec

import sweep
from sweep import cli, plan
from sweep.engine import checkpoint
from sweep.io import schema
from sweep.kernel import LAYER_STATS


@pytest.fixture(scope="module")
def two_groups():
    """Two architectures, two depths (so layers beyond a depth exist), gains and seeds."""
    spec = small_spec(seeds=5, grid={"profile": ["constant", "alternating"], "depth": [2, 3], "gain": [0.8, 1.4, 2.0]})
    return spec, sweep.run(spec, progress=False)


def test_dataset_follows_the_contract(two_groups):
    spec, ds = two_groups
    assert tuple(ds["preact_meansq"].dims) == schema.NETWORK_DIMS + ("layer",)
    assert tuple(ds["loss"].dims) == schema.NETWORK_DIMS
    for axis in schema.NETWORK_DIMS + ("layer",):
        assert axis in ds.coords
    assert list(ds.layer.values) == [1, 2, 3]
    for name in list(LAYER_STATS) + ["overflow", "loss", "layer_width"]:
        assert {"long_name", "units", "definition"} <= set(ds[name].attrs), name
    assert sweep.Spec.from_json(ds.attrs["spec"]) == spec
    assert json.loads(ds.attrs["versions"])["jax"]
    for key in ("device_kind", "matmul_precision", "git_commit", "created"):
        assert ds.attrs[key]


def test_layers_beyond_a_networks_depth_are_nan(two_groups):
    _, ds = two_groups
    shallow = ds["preact_meansq"].sel(depth=2)
    assert shallow.sel(layer=3).isnull().all()
    assert shallow.sel(layer=[1, 2]).notnull().all()
    assert ds["preact_meansq"].sel(depth=3).notnull().all()
    assert ds["layer_width"].sel(profile="alternating", depth=3, width=8).values.tolist() == [8, 16, 8]


@pytest.mark.slow
def test_memory_budget_changes_the_chunks_but_not_one_bit():
    spec = small_spec(seeds=6, batch=64, grid={"profile": ["alternating"], "width": [256], "gain": [0.8, 1.4, 2.0]})
    roomy = plan.make_plan(spec, "auto")
    (job,) = roomy.groups[0].jobs
    smallest = job.micro_batch * job.bytes_per_network
    tight = plan.make_plan(spec, smallest)
    assert tight.call_size(job) == 1 < roomy.call_size(job)
    assert_identical(sweep.run(spec, memory=smallest, progress=False), sweep.run(spec, progress=False))


def test_store_round_trips_and_exports(two_groups, tmp_path):
    spec, ds = two_groups
    out = sweep.run(spec, out=tmp_path / "s.zarr", progress=False)
    loaded = sweep.load(tmp_path / "s.zarr").load()
    assert_identical(loaded, out)
    assert_identical(xr.open_zarr(tmp_path / "s.zarr").load(), out)
    assert loaded.attrs["spec"] == out.attrs["spec"]
    assert cli.main(["export", str(tmp_path / "s.zarr"), "--netcdf", str(tmp_path / "s.nc")]) == 0
    nc = xr.open_dataset(tmp_path / "s.nc").load()
    np.testing.assert_array_equal(nc["grad_weight_meansq"].values, out["grad_weight_meansq"].values)
    np.testing.assert_array_equal(nc["overflow"].values.astype(bool), out["overflow"].values)


def test_show_is_readable(two_groups, tmp_path, capsys):
    spec, _ = two_groups
    sweep.run(spec, out=tmp_path / "s.zarr", progress=False)
    assert cli.main(["show", str(tmp_path / "s.zarr")]) == 0
    text = capsys.readouterr().out
    assert "networks : 60 (12 grid points x 5 seeds)" in text
    assert "alternating" in text and "grad_w_ms" in text


def snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_an_existing_store_is_kept_unless_overwrite(tiny_spec, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    sweep.run(tiny_spec, out=out, progress=False)
    before = snapshot(out)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('name = "tiny"\nseeds = 2\nbatch = 4\n[grid]\nwidth = [8]\ndepth = [2]\n')
    assert cli.main(["run", str(spec_file), "--out", str(out), "--no-progress"]) == 2
    assert "out:" in capsys.readouterr().err
    assert snapshot(out) == before
    assert cli.main(["run", str(spec_file), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert sweep.load(out).sizes["seed"] == 2
    assert not list(tmp_path.glob(".*partial"))


def test_a_folder_that_is_not_a_store_is_never_replaced(tiny_spec, tmp_path):
    keep = tmp_path / "data"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    with pytest.raises(sweep.SpecError, match="not a sweep store"):
        sweep.run(tiny_spec, out=keep, overwrite=True, progress=False)
    assert (keep / "precious.txt").read_text() == "x"


BAD_SPECS = [
    ("seeds = 2\ncolour = 'red'\n", "colour: unknown key"),
    ("[grid]\nactivation = ['swish']\n", "grid.activation: unknown activation 'swish'"),
    ("[grid]\ninit = ['he']\n", "grid.init: unknown init 'he'"),
    ("[grid]\nprofile = ['pyramid']\n", "grid.profile: unknown profile 'pyramid'"),
    ("[grid]\nwidth = [0]\n", "grid.width: must be positive integers"),
    ("[grid]\ndepth = [-1]\n", "grid.depth: must be positive integers"),
    ("seeds = 0\n", "seeds: must be an integer >= 1"),
    ("batch = 0\n", "batch: must be an integer >= 1"),
    ("[grid]\ngain = []\n", "grid.gain: must not be empty"),
    ("seeds = 'many'\n", "seeds: must be an integer"),
    ("[grid]\ngain = {start = 0.5, stop = 2.5, num = 0}\n", "grid.gain.num: must be an integer >= 1"),
    ("seeds = 10000000\n[grid]\ndepth = [100000]\nwidth = [4]\n", "out: the result needs up to"),
    ("not toml at all = = \n", "spec: "),
    ("layer = 'conv'\nspatial = [8]\n[grid]\nkernel_size = [2]\n", "grid.kernel_size: must be odd positive integers"),
    ("layer = 'conv'\nspatial = [8]\n[grid]\nkernel_size = [9]\n", "grid.kernel_size: must be at most the smallest"),
    ("spatial = [8]\n", 'spatial: is only for layer = "conv"'),
    ("sampler = 'exact'\n", "sampler: must be one of 'direct', 'conditional', got 'exact'"),
    ("sampler = 'conditional'\nlayer = 'conv'\nspatial = [8]\n", 'sampler: "conditional" is only for layer = "dense"'),
    ("[grid]\nkernel_size = [3]\n", 'grid.kernel_size: is only for layer = "conv"'),
    ("[grid]\nparametrization = ['standard', 'mup']\n", "base_width: missing; grid.parametrization ['mup'] scales"),
    ("base_width = 8\n", 'base_width: is only for a grid.parametrization with "ntk" or "mup"'),
    ("base_width = 0\n[grid]\nparametrization = ['ntk']\n", "base_width: must be an integer >= 1"),
    ("[grid]\nparametrization = ['yang']\n", "grid.parametrization: unknown parametrization 'yang'"),
    ("layer = 'conv'\nspatial = [8]\n[grid]\ninit = ['delta_orthogonal']\nprofile = ['alternating']\n",
     "grid.init: delta_orthogonal needs fan_in <= fan_out"),
]


@pytest.mark.parametrize("text, message", BAD_SPECS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(text, message, tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(text)
    out = tmp_path / "out.zarr"
    assert cli.main(["run", str(spec_file), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sweep: error: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_a_budget_below_the_smallest_chunk_is_refused(tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("[grid]\nwidth = [512]\ndepth = [50]\n")
    assert cli.main(["run", str(spec_file), "--out", str(tmp_path / "o.zarr"), "--memory", "1MB"]) == 2
    assert "memory: the smallest chunk" in capsys.readouterr().err
    assert cli.main(["run", str(spec_file), "--out", str(tmp_path / "o.zarr"), "--memory", "lots"]) == 2
    assert "memory: must be a size" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_the_installed_command_exits_2_on_bad_input(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("[grid]\nwidth = [0]\n")
    result = subprocess.run([sys.executable, "-m", "sweep", "run", str(spec_file)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "sweep: error: grid.width: must be positive integers, got [0]"


def test_sweep_run_on_a_cpu_makes_a_device_of_each_core_and_shares_the_budget_among_them(tmp_path):
    """``sweep run`` shards over one CPU device per core, with the same numbers as on one; its
    --memory is the host's, each device sizing its calls from its share, and a budget too small
    for a micro-batch on every core runs on fewer; a device count given in ``XLA_FLAGS`` is kept."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('seeds = 6\nbatch = 8\n[grid]\nwidth = [16]\ndepth = [3]\ngain = [1.0, 2.0]\n')
    (job,) = plan.make_plan(sweep.load_spec(spec_file)).groups[0].jobs
    one_micro_batch = job.micro_batch_bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), JAX_PLATFORMS="cpu")
    cores = len(os.sched_getaffinity(0))
    runs = {"cores": (cores * one_micro_batch, None), "fewer": (one_micro_batch, None),
            "one": (cores * one_micro_batch, "--xla_force_host_platform_device_count=1")}
    logs = {}
    for name, (memory, flags) in runs.items():
        out = tmp_path / f"{name}.zarr"
        done = subprocess.run([sys.executable, "-m", "sweep", "run", str(spec_file), "--out", str(out), "--memory",
                               str(memory), "--no-progress", "--no-theory"], cwd=tmp_path, capture_output=True,
                              text=True, env=env | ({"XLA_FLAGS": flags} if flags else {}), timeout=300)
        assert done.returncode == 0, done.stderr
        (log,) = checkpoint.read_logs(out)
        logs[name] = (log[0]["devices"], log[0]["memory_bytes"])
    assert logs == {"cores": (cores, one_micro_batch), "fewer": (1, one_micro_batch),
                    "one": (1, cores * one_micro_batch)}
    assert_same_store(tmp_path / "cores.zarr", tmp_path / "one.zarr")
    assert_same_store(tmp_path / "fewer.zarr", tmp_path / "one.zarr")


def test_a_cpu_budget_is_shared_by_its_devices_and_an_accelerator_s_is_each_device_s():
    from sweep.plan.memory import device_share

    assert device_share("4GB", 4, "cpu") == 10**9
    assert device_share("4GB", 4, "gpu") == 4 * 10**9
    assert device_share(3, 2, "cpu") == 1
    with pytest.raises(sweep.SpecError, match="memory"):
        device_share("lots", 2, "cpu")


def test_the_default_sweep_spec_is_valid():
    spec = sweep.Spec.from_toml("analysis/specs/quick.toml")
    assert spec.grid.init == ("fan_in", "fan_avg")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_networks():
    """Ten times the networks under the same budget: the peak RSS grows by at most what the
    engine keeps of the result on the host (a few times its float64 size), not per network."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).resolve().parents[1] / "scripts" / "peak_rss.py"
    module_spec = importlib.util.spec_from_file_location("peak_rss", path)
    peak_rss = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(peak_rss)
    args = SimpleNamespace(width=16, depth=4, batch=16, memory="256MB", common_random_numbers=False,
                           sampler="direct")
    small, large = peak_rss.measure(800, args), peak_rss.measure(8000, args)
    growth = large["peak_rss_bytes"] - small["peak_rss_bytes"]
    assert growth <= 4 * large["result_bytes"] + 32 * 2**20, (small, large)
