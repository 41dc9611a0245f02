"""What a grid costs to compile: one program per family against one per grid point, and the cache.

usage: python scripts/bench_compile.py [--repeats 3] [--baseline DIR] [--only depths,cache,grid]

Every measurement is a first run in a fresh process (nothing compiled before), timed around
``sweep.run`` inside it (interpreter start and imports excluded, stated separately), with
alternating repeats and medians:

* ``depths``: relu, fan_in, width 32, batch 32, 16 seeds x 9 gains at depths 4, 8, 12, 16
  against the same sweep at its deepest depth alone (the 4-depth sweep now runs in one
  program);
* ``cache``: a second run of the 4-depth sweep with the persistent compilation cache against
  its first run (fresh cache);
* ``grid``: relu and tanh x fan_in, fan_out, fan_avg, orthogonal x constant and alternating x
  depths 4, 8, 12 x widths 32, 64, Jacobian on (96 grid points, 27,648 networks), run once
  with a fresh persistent cache and once more with it; with ``--baseline DIR`` (a checkout of
  an earlier version of sweep) also with that version, side by side.

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
from sweep.config import Spec
imported = time.perf_counter() - start
spec = Spec.from_dict(json.loads(sys.argv[1]))
kwargs = {"out": sys.argv[2], "progress": False, "with_theory": False}
if "cache" in inspect.signature(sweep.run).parameters:
    kwargs["cache"] = sys.argv[3] == "cache"
start = time.perf_counter()
sweep.run(spec, **kwargs)
print(json.dumps({"run_s": time.perf_counter() - start, "import_s": imported, "package": sweep.__file__}))
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


def median(runs: list[dict], key: str = "run_s") -> float:
    return statistics.median(r[key] for r in runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier sweep, run side by side on the grid")
    parser.add_argument("--only", default="depths,cache,grid")
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
            now = one_run(GRID, ROOT, where, where / "grid-cache")
            again = one_run(GRID, ROOT, where, where / "grid-cache")
            results["grid"] = {"now": now, "again": again, "cache_ratio": again["run_s"] / now["run_s"]}
            rows.append(("96-point grid, second run / first run, persistent cache", again["run_s"], now["run_s"],
                         again["run_s"] / now["run_s"], "<= 0.2"))
            if args.baseline is not None:
                before = one_run(GRID, args.baseline, where, None)
                results["grid"]["baseline"] = before
                speedup = before["run_s"] / now["run_s"]
                results["grid"]["speedup"] = speedup
                rows.append(("96-point grid, baseline / now, first runs", before["run_s"], now["run_s"], speedup,
                             ">= 4"))
            else:
                rows.append(("96-point grid, first run", now["run_s"], float("nan"), float("nan"), ""))
    imports = [r["import_s"] for part in results.values() for runs in part.values() if isinstance(runs, list)
               for r in runs] + [r["import_s"] for part in results.values() for r in part.values() if isinstance(r, dict)]
    results["import_s"] = statistics.median(imports) if imports else 0.0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print("| measurement | a (s) | b (s) | a / b | target |\n|---|---:|---:|---:|---|")
    for what, a, b, ratio, target in rows:
        print(f"| {what} | {a:.1f} | {b:.1f} | {ratio:.2f} | {target} |")
    print(f"\n(times of sweep.run in a fresh process; imports took {results['import_s']:.1f} s more; depths and "
          f"cache: medians of {args.repeats} alternating repeats; grid: one run each; written {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
