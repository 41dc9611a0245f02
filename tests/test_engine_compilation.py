"""A grid compiles once per program, and a repeated sweep loads its programs from the cache.

Programs are counted with ``jax.monitoring``'s events for the statistics kernel (its jitted
function is named ``statistics_kernel``): JAX's backend compiles, and the loads of
``sweep.kernel.executables``' store, which stand in for them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from helpers import assert_identical, small_spec

import sweep
from sweep import plan as planning
from sweep.engine import checkpoint
from sweep.kernel import devices, executables

ROOT = Path(__file__).resolve().parents[1]
_compiled: list[str] = []


def _count(event, duration, **kwargs):
    built = event in ("/jax/core/compile/backend_compile_duration", executables.LOAD_EVENT)
    if built and kwargs.get("fun_name") == "jit(statistics_kernel)":
        _compiled.append(kwargs["fun_name"])


jax.monitoring.register_event_duration_secs_listener(_count)


def test_four_depths_and_three_fan_modes_compile_one_program_per_distribution_profile_and_width():
    grid = {"activation": ["relu"], "init": ["fan_in", "fan_out", "fan_avg"], "profile": ["constant", "alternating"],
            "depth": [2, 4, 6, 8], "width": [4], "gain": [1.0, 1.5]}
    spec = small_spec(seeds=2, grid=grid)
    plan = planning.make_plan(spec)
    # relu x normal x (constant, alternating) x width 4: two programs for 24 grid points.
    assert len(plan.groups) == 24 and len(plan.programs) == 2
    _compiled.clear()
    sweep.run(spec, progress=False, with_theory=False)  # counted whether compiled, loaded from JAX's cache or the store
    assert len(_compiled) == 2


def test_the_groups_of_a_program_share_one_kernel_on_any_mesh():
    plan = planning.make_plan(small_spec(grid={"init": ["fan_in", "fan_out"], "depth": [2, 3]}))
    jobs = [job for group in plan.groups for job in group.jobs]
    assert len(jobs) == 4 and len(plan.programs) == 1
    mesh = devices.local_mesh()
    kernels = {id(devices.make_kernel(job.program, job.probe, job.micro_batch, mesh)) for job in jobs}
    assert len(kernels) == 1


def run_cli(spec_file, out, cache_dir, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "SWEEP_"))}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", SWEEP_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, "-m", "sweep", "run", str(spec_file), "--out", str(out), "--no-progress",
                           "--no-theory", *extra], env=env, capture_output=True, text=True, timeout=600)


def compiled_entries(store):
    return [e for log in checkpoint.read_logs(store) for e in log if e["event"] == "compiled"]


@pytest.mark.slow
def test_a_repeated_sweep_loads_every_program_from_the_cache_and_stores_the_same_numbers(tmp_path):
    spec_file = tmp_path / "cached.toml"
    spec_file.write_text('name = "cached"\nseeds = 3\nbatch = 4\n[grid]\ninit = ["fan_in", "fan_out"]\n'
                         'depth = [2, 3]\nwidth = [8]\ngain = [1.0, 1.4]\n')
    cache = tmp_path / "cache"
    first, second, without = (run_cli(spec_file, tmp_path / f"{n}.zarr", cache, *extra)
                              for n, extra in (("first", ()), ("second", ()), ("without", ("--no-cache",))))
    for result in (first, second, without):
        assert result.returncode == 0, result.stderr
    assert any(cache.iterdir())
    (compiled,) = compiled_entries(tmp_path / "first.zarr")  # one program, compiled once
    assert compiled["cache_hits"] == 0 and compiled["executables"] >= 1
    (loaded,) = compiled_entries(tmp_path / "second.zarr")
    assert loaded["cache_hits"] == loaded["executables"] == compiled["executables"]  # nothing compiled again
    timing = [e for log in checkpoint.read_logs(tmp_path / "second.zarr") for e in log if e["event"] == "timing"]
    assert json.dumps(timing) and set(timing[0]["programs"]) == {compiled["program"]}
    stores = [sweep.load(tmp_path / f"{n}.zarr") for n in ("first", "second", "without")]
    assert_identical(stores[0], stores[1])
    assert_identical(stores[0], stores[2])
