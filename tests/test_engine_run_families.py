"""Every network family, and the conditional sampler, keeps the engine's guarantees: the same
store, bit for bit, whatever the memory budget, on 1 or 4 devices, and after kill -9 and ``--resume``.

Each run is a subprocess (the device count is fixed when JAX starts) sharing one persistent
compilation cache; stores are compared chunk by chunk (``helpers.assert_same_store``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_same_store

import sweep
from sweep import plan as planning
from sweep.engine import checkpoint
from sweep.io import zarr_store as store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

FAMILIES = {
    # Two depths and two fan modes of one program, 2-D images, biases: 4 groups, 8 tiles each.
    "conv": """name = "conv-family"
seeds = 8
batch = 3
layer = "conv"
spatial = [6, 6]
[grid]
activation = ["tanh"]
init = ["fan_in", "fan_out"]
depth = [2, 3]
width = [4]
kernel_size = [3]
gain = [0.9, 1.5]
bias_std = [0.0, 0.2]
""",
    # Two branch scales and two fan modes of one program, 1-D conv branches, the 1/sqrt(L) rule.
    "residual": """name = "residual-family"
seeds = 8
batch = 3
block = "residual"
branch_depth_exponent = -0.5
layer = "conv"
spatial = [6]
[grid]
activation = ["relu"]
init = ["fan_in", "fixup"]
depth = [3]
width = [4]
branch_scale = [0.5, 1.0]
gain = [0.9, 1.5]
bias_std = [0.0, 0.2]
""",
    # The conditional sampler: drawn and conditional layers (alternating widths at batch 6),
    # common random numbers across gains, tanh with biases and relu as scaled copies.
    "conditional": """name = "conditional-family"
seeds = 8
batch = 6
sampler = "conditional"
common_random_numbers = true
[grid]
activation = ["tanh", "relu"]
init = ["fan_in"]
profile = ["alternating"]
depth = [2, 3]
width = [5]
gain = [0.9, 1.5]
bias_std = [0.0]
""",
}

# Runs the CLI with --resume, killed by SIGKILL right after the k-th tile is stored and logged.
KILLED = r"""
import os, signal, sys
from sweep import cli
from sweep.engine import checkpoint

spec_file, out, memory, k = sys.argv[1:5]
count = [0]
write = checkpoint.RunLog.write
def logged(self, entry):
    write(self, entry)
    if entry.get("event") == "stored":
        count[0] += 1
        if count[0] == int(k):
            os.kill(os.getpid(), signal.SIGKILL)
checkpoint.RunLog.write = logged
sys.exit(cli.main(["run", spec_file, "--out", out, "--memory", memory, "--chunk-networks", "4", "--no-progress",
                   "--resume"]))
"""


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    where = tmp_path_factory.mktemp(request.param)
    spec_file = where / "spec.toml"
    spec_file.write_text(FAMILIES[request.param])
    the_plan = planning.make_plan(sweep.Spec.from_toml(spec_file), chunk_networks=4)
    largest = the_plan.micro_batch_bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=1",  # the budget is then one micro-batch a call
               PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(where / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    setup = {"dir": where, "spec": spec_file, "env": env, "tiles": len(the_plan.tiles),
             "one_micro_batch": str(largest)}
    setup["reference"] = where / "reference.zarr"
    result = run(setup, "--out", setup["reference"], "--memory", setup["one_micro_batch"])
    assert result.returncode == 0, result.stderr
    return setup


def run(setup, *args, env=None):
    return subprocess.run([sys.executable, "-m", "sweep", "run", str(setup["spec"]), "--chunk-networks", "4",
                           "--no-progress", *map(str, args)], env={**setup["env"], **(env or {})},
                          cwd=setup["dir"], capture_output=True, text=True, timeout=600)


def test_any_memory_budget_and_four_devices_give_the_same_store(family):
    out = family["dir"] / "four.zarr"
    result = run(family, "--out", out, "--memory", "1GB",
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stderr
    assert_same_store(out, family["reference"])
    assert sweep.load(out).attrs["device_kind"].endswith("x4")
    assert sweep.load(out)["theory_preact_meansq"].notnull().any()


@pytest.mark.serial
def test_killed_and_resumed_runs_give_the_same_store(family):
    out = family["dir"] / "killed.zarr"
    partial = store.partial_path(out)
    for k in (3, 2):
        result = subprocess.run([sys.executable, "-c", KILLED, str(family["spec"]), str(out),
                                 family["one_micro_batch"], str(k)], env=family["env"], cwd=family["dir"],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == -9, result.stderr
        assert 0 < len(checkpoint.done(partial, family["tiles"])) < family["tiles"]
    result = run(family, "--out", out, "--memory", family["one_micro_batch"], "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_store(out, family["reference"])
