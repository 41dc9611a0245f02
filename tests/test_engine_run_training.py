"""Training sweeps on the one engine: tiled, killed and resumed, on 4 devices and 2 processes,
always the same store bit for bit (with a parametrisation axis: two programs per architecture).

Each sweep runs in a subprocess (device counts and ``jax.distributed`` are fixed when JAX
starts), with a timeout and a shared compilation cache.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_identical

import sweep
from sweep import plan
from sweep.engine import checkpoint
from sweep.io import zarr_store

ROOT = Path(__file__).resolve().parents[1]
SPEC = """kind = "train"
name = "scale-train"
dataset = "teacher"
optimizer = "momentum"
seeds = 6
batch = 16
steps = 6
eval_every = 3
rng_seed = 2
base_width = 128
[grid]
activation = ["tanh"]
init = ["fan_in"]
depth = [2]
width = [256]
parametrization = ["standard", "mup"]
gain = [1.0, 2.0]
bias_std = [0.1]
learning_rate = [0.05, 0.2]
"""
CHUNK = "4"  # tiles of 2 seeds × 2 learning rates: 6 tiles per parametrisation

# Killed with SIGKILL right after the k-th tile of this run is stored and logged.
KILLED = r"""
import os, signal, sys
from sweep import cli
from sweep.engine import checkpoint

spec_file, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
write, count = checkpoint.RunLog.write, [0]

def logged_then_die(self, entry):
    write(self, entry)
    if entry.get("event") == "stored":
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

checkpoint.RunLog.write = logged_then_die
sys.exit(cli.main(["run", spec_file, "--out", out, "--chunk-networks", "4", "--no-progress", "--resume"]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    where = tmp_path_factory.mktemp("train-scale")
    spec_file = where / "train.toml"
    spec_file.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(where / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return {"dir": where, "spec": spec_file, "env": env}


def run_cli(setup, *args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--chunk-networks", CHUNK, "--no-progress",
         *map(str, args)], env={**setup["env"], **(env or {})}, cwd=setup["dir"], capture_output=True, text=True,
        timeout=timeout)


@pytest.fixture(scope="module")
def reference(setup):
    out = setup["dir"] / "reference.zarr"
    result = run_cli(setup, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_the_plan_spreads_the_networks_over_several_micro_batches_and_tiles(setup):
    the_plan = plan.make_plan(sweep.load_spec(setup["spec"]), chunk_networks=int(CHUNK))
    init, train = the_plan.groups[0].jobs
    assert train.micro_batches >= 3 and len(the_plan.tiles) == 12  # real networks on 3 of 4 devices


def same_store(a: Path, b: Path):
    ds_a, ds_b = sweep.load(a).load(), sweep.load(b).load()
    assert_identical(ds_a, ds_b)
    assert ds_a["train_loss"].notnull().all() and ds_a["init_preact_meansq"].notnull().all()


@pytest.mark.slow
@pytest.mark.serial
def test_a_training_sweep_killed_three_times_and_resumed_is_the_uninterrupted_store(setup, reference):
    out = setup["dir"] / "killed.zarr"
    partial = zarr_store.partial_path(out)
    stored = []
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", KILLED, str(setup["spec"]), str(out), "1"], env=setup["env"],
                                cwd=setup["dir"], capture_output=True, text=True, timeout=300)
        assert result.returncode == -signal.SIGKILL, result.stderr
        stored.append(checkpoint.done(partial, 12))
    assert [len(s) for s in stored] == [1, 2, 3]  # each run stored one more tile, then was killed
    result = run_cli(setup, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    same_store(out, reference)
    logs = checkpoint.read_logs(out)
    tiles = [e["tile"] for log in logs for e in log if e["event"] == "stored"]
    assert sorted(tiles) == list(range(12))  # no stored tile computed again


@pytest.mark.slow
def test_a_training_sweep_on_four_devices_is_the_one_device_store(setup, reference):
    out = setup["dir"] / "four.zarr"
    result = run_cli(setup, "--out", out, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stderr
    same_store(out, reference)
    assert sweep.load(out).attrs["device_kind"].endswith("x4")


@pytest.mark.slow
def test_a_training_sweep_of_two_processes_is_the_one_process_store(setup, reference):
    out = setup["dir"] / "two.zarr"
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--out", str(out), "--chunk-networks", CHUNK,
             "--no-progress", "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
            env=setup["env"], cwd=setup["dir"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    same_store(out, reference)
    writers = {json.loads(m.read_text())["process"] for m in (out / checkpoint.FOLDER / "done").iterdir()}
    assert writers == {0, 1}


def test_a_training_sweep_refuses_what_it_cannot_honour(setup, tmp_path, capsys):
    from sweep import cli

    assert cli.main(["run", str(setup["spec"]), "--out", str(tmp_path / "t.zarr"), "--theory"]) == 2
    assert "theory: training sweeps store no theory predictions" in capsys.readouterr().err
    assert not (tmp_path / "t.zarr").exists()


def test_a_training_store_is_laid_out_tile_by_tile_with_every_learning_rate_in_a_tile(reference):
    ds = sweep.load(reference)
    assert ds["train_loss"].encoding["chunks"][5:10] == (1, 1, 1, 2, 2)  # parametrization, gain, bias_std, lr, seed
    assert ds["init_preact_meansq"].encoding["chunks"][5:9] == (1, 1, 1, 2)
    np.testing.assert_array_equal(ds["loss_at_init"].isnull().values, False)
