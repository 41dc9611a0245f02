"""What a grid costs to compile: one program per family against one per grid point, and the cache.

usage: python scripts/bench_compile.py [--repeats 3] [--grid-repeats 1] [--baseline DIR] [--only depths,cache,grid,theory]

Every measurement is a first run in a fresh process (nothing compiled before), timed around
``sweep.run`` inside it (interpreter start and imports excluded, stated separately), with
alternating repeats and medians:

* ``depths``: relu, fan_in, width 32, batch 32, 16 seeds x 9 gains at depths 4, 8, 12, 16
  against the same sweep at its deepest depth alone (the 4-depth sweep now runs in one
  program);
* ``cache``: a second run of the 4-depth sweep with the persistent compilation cache against
  its first run (fresh cache);
* ``grid``: relu and tanh x fan_in, fan_out, fan_avg, orthogonal x constant and alternating x
  depths 4, 8, 12 x widths 32, 64, Jacobian on (96 grid points, 27,648 networks), run with a
  fresh persistent cache and once more with it, ``--grid-repeats`` times; with ``--baseline
  DIR`` (a checkout of an earlier version of sweep) also with that version, alternating. Each
  run's compile (or load) and compute seconds are read from its store's run log, the rest
  (store writing, planning, Python) is what remains of its time;
* ``theory``: ``theory.predict`` of ``analysis/specs/quick.toml`` and ``phase.toml`` (with
  ``--baseline``, alternating with that version's).

Writes ``results/bench_compile.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEPTHS = {"name": "depths", "seeds": 16, "batch": 32,
          "grid": {"activation": ["relu"], "init": ["fan_in"], "depth": [4, 8, 12, 16], "width": [32],
                   "gain": {"start": 0.5, "stop": 2.5, "num": 9}}}
DEEPEST = {**DEPTHS, "name": "deepest", "grid": {**DEPTHS["grid"], "depth": [16]}}
GRID = {"name": "grid", "seeds": 16, "batch": 32, "jacobian": True,
        "grid": {"activation": ["relu", "tanh"], "init": ["fan_in", "fan_out", "fan_avg", "orthogonal"],
                 "profile": ["constant", "alternating"], "depth": [4, 8, 12], "width": [32, 64],
                 "gain": {"start": 0.5, "stop": 2.5, "num": 9}, "bias_std": [0.0, 0.1]}}

# Runs one sweep in this fresh process and prints its timings as JSON.
DRIVER = r"""
import inspect, json, sys, time
sys.path.insert(0, sys.argv[4])  # ahead of an installed sweep (an editable install would win over PYTHONPATH)
start = time.perf_counter()
import sweep
assert sweep.__file__.startswith(sys.argv[4]), sweep.__file__
import sweep.engine.run  # the engine's imports (JAX, xarray, zarr) are not the sweep's time
try:  # as sweep run does; earlier versions ran on one CPU device
    from sweep.kernel.devices import use_cpu_cores
    use_cpu_cores()
except ImportError:
    pass
from sweep.config import Spec
imported = time.perf_counter() - start
spec = Spec.from_dict(json.loads(sys.argv[1]))
kwargs = {"out": sys.argv[2], "progress": False, "with_theory": False}
if "cache" in inspect.signature(sweep.run).parameters:
    kwargs["cache"] = sys.argv[3] == "cache"
start = time.perf_counter()
sweep.run(spec, **kwargs)
run_s = time.perf_counter() - start
# Where the time went, from the store's run log: compile (or load) and compute per program.
from pathlib import Path
timing = [json.loads(line) for log in sorted((Path(sys.argv[2]) / ".sweep" / "runs").glob("*.jsonl"))
          for line in open(log) if '"timing"' in line]
programs = timing[-1]["programs"].values() if timing else []
compile_s, compute_s = sum(p["compile_s"] for p in programs), sum(p["compute_s"] for p in programs)
print(json.dumps({"run_s": run_s, "import_s": imported, "package": sweep.__file__, "compile_s": compile_s,
                  "compute_s": compute_s, "other_s": run_s - compile_s - compute_s}))
"""

# Times theory.predict of named analysis specs in this fresh process (imports excluded).
THEORY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import sweep
assert sweep.__file__.startswith(sys.argv[2]), sweep.__file__
from sweep import theory
from sweep.config import load_spec
spec = load_spec(sys.argv[3])
start = time.perf_counter()
theory.predict(spec)
print(json.dumps({"run_s": time.perf_counter() - start, "import_s": 0.0, "package": sweep.__file__}))
"""


def one_run(spec: dict, source: Path, where: Path, cache_dir: Path | None) -> dict:
    """Times ``sweep.run(spec)`` in a fresh process, with the package at ``source``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "SWEEP_"))}
    env.update(PYTHONPATH=str(source), JAX_PLATFORMS="cpu")
    if cache_dir is not None:
        env["SWEEP_CACHE_DIR"] = str(cache_dir)
    out = where / f"{spec['name']}-{len(list(where.iterdir()))}.zarr"
    result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(spec), str(out),
                             "cache" if cache_dir is not None else "none", str(source.resolve())],
                            env=env, capture_output=True, text=True, timeout=3 * 3600)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def theory_run(name: str, source: Path) -> dict:
    """Times ``theory.predict`` of ``analysis/specs/<name>.toml`` in a fresh process, with the package at ``source``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "SWEEP_"))}
    env.update(PYTHONPATH=str(source), JAX_PLATFORMS="cpu", SWEEP_NO_CACHE="1")
    result = subprocess.run([sys.executable, "-c", THEORY, name, str(source.resolve()),
                             str(ROOT / "analysis" / "specs" / f"{name}.toml")],
                            env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(runs: list[dict], key: str = "run_s") -> float:
    return statistics.median(r[key] for r in runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier sweep, run side by side on the grid")
    parser.add_argument("--grid-repeats", type=int, default=1)
    parser.add_argument("--only", default="depths,cache,grid,theory")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "bench_compile.json")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        if "depths" in parts:
            runs = {"depths": [], "deepest": []}
            for _ in range(args.repeats):
                for name, spec in (("depths", DEPTHS), ("deepest", DEEPEST)):
                    runs[name].append(one_run(spec, ROOT, where, None))
            ratio = median(runs["depths"]) / median(runs["deepest"])
            results["depths"] = {**runs, "ratio": ratio}
            rows.append(("4 depths (4, 8, 12, 16) / depth 16 alone, first runs", median(runs["depths"]),
                         median(runs["deepest"]), ratio, "<= 1.5"))
        if "cache" in parts:
            runs = {"first": [], "second": []}
            for r in range(args.repeats):
                cache = where / f"cache-{r}"
                runs["first"].append(one_run(DEPTHS, ROOT, where, cache))
                runs["second"].append(one_run(DEPTHS, ROOT, where, cache))
            ratio = median(runs["second"]) / median(runs["first"])
            results["cache"] = {**runs, "ratio": ratio}
            rows.append(("4-depth sweep, second run / first run, persistent cache", median(runs["second"]),
                         median(runs["first"]), ratio, "<= 0.2"))
        if "grid" in parts:
            runs = {"first": [], "second": []} | ({"baseline": []} if args.baseline is not None else {})
            for r in range(args.grid_repeats):
                cache = where / f"grid-cache-{r}"
                runs["first"].append(one_run(GRID, ROOT, where, cache))
                runs["second"].append(one_run(GRID, ROOT, where, cache))
                if args.baseline is not None:
                    runs["baseline"].append(one_run(GRID, args.baseline, where, None))
            first, second = median(runs["first"]), median(runs["second"])
            results["grid"] = {**runs, "cache_ratio": second / first}
            rows.append(("96-point grid, second run / first run, persistent cache", second, first, second / first,
                         "<= 0.2"))
            for key in ("compile_s", "compute_s", "other_s"):
                rows.append((f"  of which {key[:-2]} (second run / first run)", median(runs["second"], key),
                             median(runs["first"], key), median(runs["second"], key) / median(runs["first"], key), ""))
            if args.baseline is not None:
                before = median(runs["baseline"])
                results["grid"]["speedup"] = before / first
                rows.append(("96-point grid, baseline / now, first runs", before, first, before / first, ">= 4"))
        if "theory" in parts:
            names = ("quick", "phase")
            runs = {f"{name} {which}": [] for name in names for which in ("now", "baseline")}
            for _ in range(args.repeats):
                for name in names:
                    runs[f"{name} now"].append(theory_run(name, ROOT))
                    if args.baseline is not None:
                        runs[f"{name} baseline"].append(theory_run(name, args.baseline))
            results["theory"] = runs
            for name in names:
                now = median(runs[f"{name} now"])
                before = median(runs[f"{name} baseline"]) if args.baseline is not None else float("nan")
                rows.append((f"theory.predict({name}), baseline / now", before, now, before / now, ""))
    imports = [r["import_s"] for part in results.values() for runs in part.values() if isinstance(runs, list)
               for r in runs if r["import_s"]]
    results["import_s"] = statistics.median(imports) if imports else 0.0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print("| measurement | a (s) | b (s) | a / b | target |\n|---|---:|---:|---:|---|")
    for what, a, b, ratio, target in rows:
        print(f"| {what} | {a:.1f} | {b:.1f} | {ratio:.2f} | {target} |")
    print(f"\n(times of sweep.run in a fresh process; imports took {results['import_s']:.1f} s more; depths and "
          f"cache, theory: medians of {args.repeats} alternating repeats; grid: medians of {args.grid_repeats}; "
          f"theory: predict without sweep.run; written {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
