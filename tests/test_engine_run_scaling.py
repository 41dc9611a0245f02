"""The same store from 1 or 8 devices, one or two processes, and runs killed and resumed.

Each sweep runs in a subprocess (device counts and jax.distributed are fixed when JAX starts),
all sharing one persistent compilation cache, so that each kernel is compiled once. Stores
are compared file by file: every zarr chunk and array metadata byte for byte, and the
dataset's attributes except when and on what it was made.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_store

import sweep
from sweep import cli
from sweep import plan as planning
from sweep.engine import checkpoint
from sweep.io import schema
from sweep.io import zarr_store as store

ROOT = Path(__file__).resolve().parents[1]
# Two depths and two fan modes: four groups that share one compiled program.
SPEC = """name = "scale"
seeds = 100
batch = 4
[grid]
activation = ["relu"]
init = ["fan_in", "fan_out"]
depth = [2, 3]
width = [8]
gain = [0.8, 1.4, 2.0]
bias_std = [0.0, 0.3]
"""
CHUNK = "40"  # 18 tiles of 34 networks per group; 18 of its 19 micro-batches of 32 networks end inside one
TILES = 72

# The engine before tiles: contiguous calls of a call's networks, the last padded with the
# group's final network; run after a CLI sweep in the same process, from the same cache.
REFERENCE = r"""
import sys
import jax.numpy as jnp
import numpy as np
import sweep
from sweep import cli, kernel, plan as planning
from sweep.io import schema

spec_file, out, memory, legacy = sys.argv[1:5]
assert cli.main(["run", spec_file, "--out", out, "--memory", memory, "--chunk-networks", "40", "--no-progress"]) == 0
spec = sweep.Spec.from_toml(spec_file)
the_plan = planning.make_plan(spec, int(memory))
arrays = schema.empty_arrays(spec)
local_shape = the_plan.local_shape
gains, biases = np.asarray(spec.grid.gain, np.float32), np.asarray(spec.grid.bias_std, np.float32)
for group in the_plan.groups:
    (job,) = group.jobs
    kern = kernel.make_kernel(job.program, job.probe, job.micro_batch)
    n = job.networks
    chunk = the_plan.call_size(job) * job.micro_batch
    offset = int(np.ravel_multi_index(group.position, spec.grid.shape[:5])) * n
    for start in range(0, n, chunk):
        local = np.arange(start, min(start + chunk, n))
        padded = np.concatenate([local, np.repeat(local[-1:], chunk - local.size)])
        g, b, _ = np.unravel_index(padded, local_shape)
        raw = kern(jnp.uint32(spec.rng_seed), job.prefix, jnp.asarray(offset + padded, jnp.uint32),
                   jnp.asarray(gains[g]), jnp.asarray(biases[b]))
        where = np.unravel_index(local, local_shape)
        for name, values in kernel.finish(raw, job.arch.depth).items():
            values = values[: local.size]
            target = arrays[name][group.position]
            if values.ndim == 1:
                target[where] = values
            else:
                target[where + (slice(0, values.shape[1]),)] = values
np.savez(legacy, **arrays)
in_memory = sweep.run(spec, memory=int(memory), chunk_networks=7, progress=False)
np.savez(legacy.replace(".npz", "-memory.npz"), **{name: in_memory[name].values for name in arrays})

# The Jacobian's singular values, stored tile by tile, as computed in memory in other tiles.
spec = spec.replace(jacobian=True, seeds=20)
(job,) = planning.make_plan(spec).groups[0].jobs
memory = job.micro_batch * job.bytes_per_network  # one micro-batch per call
stored = sweep.run(spec, out=out + "-jacobian", memory=memory, chunk_networks=7, progress=False).load()
in_memory = sweep.run(spec, memory=memory, chunk_networks=25, progress=False)
assert stored["jacobian_singular_values"].notnull().all()
for name in schema.measured(spec):
    np.testing.assert_array_equal(stored[name].values, in_memory[name].values, err_msg=name)
"""

# One run with --resume, killed or interrupted at a chosen point: MODE at the K-th time.
CRASH = r"""
import os, signal, sys
from sweep import cli
from sweep.engine import checkpoint
from sweep.io import zarr_store as store

spec_file, out, memory, mode, k = sys.argv[1:6]
k, count = int(k), [0]

def at_kth(function, before, sig=signal.SIGKILL):
    def wrapped(*args, **kwargs):
        count[0] += 1
        if before and count[0] == k:
            os.kill(os.getpid(), sig)
        result = function(*args, **kwargs)
        if not before and count[0] == k:
            os.kill(os.getpid(), sig)
        return result
    return wrapped

if mode == "template":        # the template is written, its manifest not yet
    store.create = at_kth(store.create, before=False)
elif mode == "stored":        # right after the k-th tile is stored and logged
    write = checkpoint.RunLog.write
    def logged(self, entry):
        write(self, entry)
        if entry.get("event") == "stored":
            count[0] += 1
            if count[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.RunLog.write = logged
elif mode == "unrecorded":    # the k-th tile is written but not recorded
    checkpoint.record = at_kth(checkpoint.record, before=True)
elif mode == "torn":          # half the variables of the k-th tile are written
    write = store.TileWriter.write
    def torn(self, region, values):
        count[0] += 1
        if count[0] == k:
            write(self, region, {n: values[n] for n in sorted(values)[: len(values) // 2]})
            os.kill(os.getpid(), signal.SIGKILL)
        write(self, region, values)
    store.TileWriter.write = torn
elif mode == "ctrl-c":        # Ctrl-C right after the k-th tile is recorded
    checkpoint.record = at_kth(checkpoint.record, before=False, sig=signal.SIGINT)
elif mode == "finalise":      # every tile stored, the store not yet moved into place
    store.finalise = at_kth(store.finalise, before=True)
sys.exit(cli.main(["run", spec_file, "--out", out, "--memory", memory, "--chunk-networks", "40",
                   "--no-progress", "--resume"]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The spec file, a memory budget of one micro-batch per call, and the subprocess environment."""
    where = tmp_path_factory.mktemp("scale")
    spec_file = where / "scale.toml"
    spec_file.write_text(SPEC)
    the_plan = planning.make_plan(sweep.Spec.from_toml(spec_file))
    (job,) = the_plan.groups[0].jobs
    memory = str(job.micro_batch * job.bytes_per_network)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=1",  # the budget is then one micro-batch a call
        PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(where / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return {"dir": where, "spec": spec_file, "memory": memory, "env": env}


def python(setup, code, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env={**setup["env"], **(env or {})},
                          cwd=setup["dir"], capture_output=True, text=True, timeout=timeout)


def sweep_cli(setup, *args, env=None, memory=None):
    return subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--memory", str(memory or setup["memory"]),
         "--chunk-networks", CHUNK, "--no-progress", *map(str, args)],
        env={**setup["env"], **(env or {})}, cwd=setup["dir"], capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def reference(setup):
    """One uninterrupted single-process, single-device run, and the same networks computed as
    the engine did before tiles."""
    out, legacy = setup["dir"] / "reference.zarr", setup["dir"] / "legacy.npz"
    result = python(setup, REFERENCE, setup["spec"], out, setup["memory"], legacy)
    assert result.returncode == 0, result.stderr
    return out, legacy


def test_tiled_results_equal_the_engine_before_tiles(reference):
    out, legacy = reference
    ds = sweep.load(out).load()
    names = schema.measured(sweep.Spec.from_json(ds.attrs["spec"]))
    for other in (legacy, str(legacy).replace(".npz", "-memory.npz")):  # and in memory, in other tiles
        before = np.load(other)
        for name in names:
            np.testing.assert_array_equal(ds[name].values, before[name], err_msg=name)
    assert ds["preact_meansq"].sel(depth=3).notnull().all() and ds["preact_meansq"].sel(depth=2, layer=3).isnull().all()
    marks = checkpoint.read_manifest(out)
    assert marks["state"] == "complete" and marks["tiles"] == TILES
    assert checkpoint.done(out, TILES) == set(range(TILES))


@pytest.mark.slow
def test_eight_devices_give_the_same_store_as_one(setup, reference):
    out = setup["dir"] / "eight.zarr"
    # On a CPU the budget is shared by its devices: one micro-batch a call on each of the eight.
    result = sweep_cli(setup, "--out", out, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
                       memory=8 * int(setup["memory"]))
    assert result.returncode == 0, result.stderr
    assert_same_store(out, reference[0])
    assert sweep.load(out).attrs["device_kind"].endswith("x8")
    (log,) = checkpoint.read_logs(out)
    assert (log[0]["devices"], log[0]["memory_bytes"]) == (8, int(setup["memory"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_one_store_together(setup, reference):
    out = setup["dir"] / "two.zarr"
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--out", str(out), "--memory", setup["memory"],
             "--chunk-networks", CHUNK, "--no-progress", "--coordinator", f"localhost:{port}",
             "--num-processes", "2", "--process-id", str(i)],
            env=setup["env"], cwd=setup["dir"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert_same_store(out, reference[0])
    writers = {json.loads(m.read_text())["process"] for m in (out / checkpoint.FOLDER / "done").iterdir()}
    assert writers == {0, 1}  # each process wrote its own tiles
    logs = checkpoint.read_logs(out)
    stored = [[e["tile"] for e in log if e["event"] == "stored"] for log in logs]
    assert sorted(sum(stored, [])) == list(range(TILES)) and all(stored)


@pytest.mark.slow
@pytest.mark.serial
def test_killed_and_resumed_runs_give_the_same_store_and_compute_nothing_twice(setup, reference):
    out = setup["dir"] / "crashed.zarr"
    partial = store.partial_path(out)

    def crash(mode, k, expect=-signal.SIGKILL):
        before = checkpoint.done(partial, TILES) if partial.exists() else set()
        result = python(setup, CRASH, setup["spec"], out, setup["memory"], mode, k)
        assert result.returncode == expect, result.stderr
        return before, (checkpoint.done(partial, TILES) if partial.exists() else set()), result

    _, after, _ = crash("template", 1)
    assert not partial.exists() and not out.exists()  # an unfinished template is never taken for a store
    _, after, _ = crash("stored", 3)
    assert after == {0, 1, 2}
    before, after, _ = crash("unrecorded", 2)
    assert len(after) == len(before) + 1  # the second tile was written, not recorded: not done
    before, after, _ = crash("torn", 2)
    assert len(after) == len(before) + 1
    before, after, result = crash("ctrl-c", 2, expect=130)
    # Tiles 0-4 were stored. Ctrl-C came as tile 6 was recorded (micro-batch 7 of 32 networks
    # completed it), with micro-batch 8's call in flight: that call was finished, completing
    # tile 7, then micro-batch 9's, to complete tile 8 that 8 began; tile 9, which 9 began, and
    # the rest are left.
    assert before == set(range(5)) and after == set(range(9))
    assert result.stderr.count("\n") == 1 and "continue with: sweep run" in result.stderr
    assert result.stderr.rstrip().endswith(f"--out {out} --resume")
    before, after, _ = crash("finalise", 1)
    assert after == set(range(TILES)) and not out.exists()
    result = sweep_cli(setup, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert not partial.exists() and not partial.with_name(partial.name + ".new").exists()

    assert_same_store(out, reference[0])
    stored = [[e for e in log if e["event"] == "stored"] for log in checkpoint.read_logs(out)]
    tiles = [e["tile"] for run in stored for e in run]
    assert sorted(tiles) == list(range(TILES))  # nothing lost, no stored tile computed again
    assert all(e["new"] for run in stored for e in run)
    starts = [log[0] for log in checkpoint.read_logs(out)]
    assert [s["stored_before"] for s in starts] == sorted(s["stored_before"] for s in starts)
    assert starts[-1]["assigned"] == []  # the last run only moved the store into place


@pytest.fixture(scope="module")
def interrupted(setup):
    """An unfinished store with 3 of 72 tiles, left by a run killed with SIGKILL."""
    out = setup["dir"] / "interrupted.zarr"
    result = python(setup, CRASH, setup["spec"], out, setup["memory"], "stored", 3)
    assert result.returncode == -signal.SIGKILL, result.stderr
    return store.partial_path(out)


def snapshot(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def damage_manifest(p):
    (p / ".sweep/manifest.json").unlink()


def corrupt_manifest(p):
    (p / ".sweep/manifest.json").write_text("{")


def remove_array(p):
    shutil.rmtree(p / "preact_mean")


def break_array(p):
    (p / "loss/.zarray").write_text("not json")


def stray_marker(p):
    (p / ".sweep/done/99").write_text("{}")


def rechunk(p):
    meta = json.loads((p / "act_var/.zarray").read_text())
    meta["chunks"][-2] = 50
    (p / "act_var/.zarray").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [damage_manifest, corrupt_manifest, remove_array, break_array, stray_marker, rechunk])
def test_a_damaged_store_is_refused_and_left_as_it_was(damage, interrupted, setup, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    partial = store.partial_path(out)
    shutil.copytree(interrupted, partial)
    damage(partial)
    before = snapshot(partial)
    args = ["run", str(setup["spec"]), "--out", str(out), "--memory", setup["memory"], "--no-progress", "--resume"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sweep: error: out: ") and "is damaged (" in err
    assert snapshot(partial) == before and not out.exists()


def test_a_store_of_another_spec_is_refused_and_left_as_it_was(interrupted, reference, setup, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("seeds = 100", "seeds = 50").replace("width = [8]", "width = [16]"))
    out = tmp_path / "s.zarr"
    partial = store.partial_path(out)
    shutil.copytree(interrupted, partial)
    shutil.copytree(reference[0], tmp_path / "done.zarr")
    for target, path in ((out, partial), (tmp_path / "done.zarr", tmp_path / "done.zarr")):
        before = snapshot(path)
        assert cli.main(["run", str(other), "--out", str(target), "--no-progress", "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "was made from a different spec (differs in grid.width, seeds)" in err
        assert snapshot(path) == before


def test_an_unfinished_store_needs_resume_or_overwrite(interrupted, setup, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    partial = store.partial_path(out)
    shutil.copytree(interrupted, partial)
    before = snapshot(partial)
    assert cli.main(["run", str(setup["spec"]), "--out", str(out), "--no-progress"]) == 2
    assert "pass --resume to continue it, or --overwrite to start again" in capsys.readouterr().err
    assert snapshot(partial) == before


def test_resume_of_a_complete_store_computes_nothing(reference, setup, tmp_path):
    out = tmp_path / "done.zarr"
    shutil.copytree(reference[0], out)
    before = snapshot(out)
    ds = sweep.run(sweep.Spec.from_toml(setup["spec"]), out=out, resume=True, progress=False)
    assert snapshot(out) == before and ds.sizes["seed"] == 100


def test_devices_must_exist(setup, tmp_path, capsys):
    for bad in ("0", "2"):
        assert cli.main(["run", str(setup["spec"]), "--out", str(tmp_path / "s.zarr"), "--devices", bad]) == 2
        assert "devices: must be between 1 and 1 (this process's devices)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_resume_keeps_the_layout_and_platform_it_was_started_with(interrupted, setup, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    partial = store.partial_path(out)
    shutil.copytree(interrupted, partial)
    before = snapshot(partial)
    args = ["run", str(setup["spec"]), "--out", str(out), "--memory", setup["memory"], "--no-progress", "--resume"]
    assert cli.main(args + ["--chunk-networks", "10"]) == 2
    assert "chunk_networks: " in capsys.readouterr().err
    manifest = json.loads((partial / ".sweep/manifest.json").read_text())
    manifest["platform"] = "tpu"
    (partial / ".sweep/manifest.json").write_text(json.dumps(manifest))
    before = snapshot(partial)
    assert cli.main(args) == 2
    assert "was started on tpu, and this process runs on cpu" in capsys.readouterr().err
    assert snapshot(partial) == before


def test_writes_a_killed_process_left_half_done_are_not_in_the_finished_store(interrupted, reference, setup,
                                                                               tmp_path):
    out = tmp_path / "s.zarr"
    partial = store.partial_path(out)
    shutil.copytree(interrupted, partial)
    # what SIGKILL leaves mid-write: zarr's temporary chunk and a work-record file not yet renamed
    chunk = next(p for p in sorted((partial / "preact_mean").iterdir()) if not p.name.startswith("."))
    (chunk.parent / f"{chunk.stem}.{'0' * 31}1.partial").write_bytes(b"torn")
    (partial / ".sweep" / f".manifest.json.{'a' * 32}").write_text("{")
    ds = sweep.run(sweep.Spec.from_toml(setup["spec"]), out=out, memory=setup["memory"], resume=True, progress=False)
    assert ds.sizes["seed"] == 100
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".manifest.json.")]
    assert_same_store(out, reference[0])


def test_an_error_in_one_process_stops_every_process(setup, tmp_path):
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--out", str(tmp_path / "s.zarr"), "--no-progress",
             "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i), "--devices", str(1 + 4 * i)],
            env=setup["env"], cwd=setup["dir"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2
        assert "sweep: error: devices: must be between 1 and 1 (this process's devices), got 5" in err
    assert not list(tmp_path.iterdir())
