"""Peak resident memory of a sweep, for several numbers of networks.

Each sweep runs in a fresh child process (``sweep.run`` writing a zarr store, with the given
memory budget), which reports its own peak RSS (``getrusage``). If memory is set by the budget
alone, the peak does not grow with the number of networks beyond the result the engine holds.

usage:
  python scripts/peak_rss.py [--networks 10000,100000] [--width 64] [--depth 20] [--memory 1GB]
                             [--sampler conditional]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import sweep
from sweep.kernel.devices import use_cpu_cores
from sweep.plan import bytes_of_result
use_cpu_cores()  # as sweep run does: the budget is then shared by one CPU device per core
spec = sweep.Spec.from_dict(json.loads({spec!r}))
start = time.perf_counter()
sweep.run(spec, out={out!r}, memory={memory!r}, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "result_bytes": bytes_of_result(spec)}}))
"""


def measure(networks: int, args) -> dict:
    gains = 8
    spec = {"name": "rss", "seeds": max(1, networks // gains), "batch": args.batch,
            "common_random_numbers": args.common_random_numbers, "sampler": args.sampler,
            "grid": {"activation": ["relu"], "init": ["fan_in"], "depth": [args.depth], "width": [args.width],
                     "gain": {"start": 0.5, "stop": 2.5, "num": gains}, "bias_std": [0.0]}}
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(root=str(ROOT), spec=json.dumps(spec), out=str(Path(tmp) / "rss.zarr"), memory=args.memory)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["networks"] = spec["seeds"] * gains
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default="10000,100000", help="comma-separated network counts")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--memory", default="1GB", help="the engine's memory budget")
    p.add_argument("--common-random-numbers", action="store_true")
    p.add_argument("--sampler", default="direct", choices=("direct", "conditional"))
    p.add_argument("--out", help="also write the measurements as JSON")
    args = p.parse_args(argv)
    rows = []
    print(f"{'networks':>9} {'seconds':>8} {'peak RSS MB':>12} {'result MB':>10}")
    for n in (int(x) for x in args.networks.split(",")):
        row = measure(n, args)
        rows.append(row)
        print(f"{row['networks']:>9} {row['seconds']:>8.1f} {row['peak_rss_bytes'] / 1e6:>12.0f} "
              f"{row['result_bytes'] / 1e6:>10.0f}",
              flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"settings": vars(args), "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
