"""Runs every experiment of the paper and builds the report.

usage:
  python analysis/run_all.py [--scale S] [--results DIR] [--report DIR] [--memory 4GB] [--overwrite]

At scale 1 (the default) the whole paper runs in about 5 minutes on a 2-core CPU.
``--scale S`` multiplies the number of networks per setting (seeds) by S, for a GPU/TPU run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import sweep  # noqa: E402
from sweep.report import build  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply seeds by this factor")
    parser.add_argument("--results", type=Path, default=Path("results/paper"), help="where the stores go")
    parser.add_argument("--report", type=Path, default=Path("results/paper/report"), help="where the report goes")
    parser.add_argument("--memory", default=None, help="memory budget per kernel call")
    parser.add_argument("--overwrite", action="store_true", help="recompute stores that exist")
    parser.add_argument("--only", nargs="*", help="names of the specs to run (default: all)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        print("run_all: error: --scale must be positive", file=sys.stderr)
        return 2
    stores = []
    for path in sorted((HERE / "specs").glob("*.toml")):
        if path.stem == "quick" or (args.only and path.stem not in args.only):
            continue
        spec = sweep.load_spec(path)
        if args.scale != 1.0:
            spec = spec.replace(seeds=max(2, round(spec.seeds * args.scale)))
        out = args.results / f"{spec.name}.zarr"
        stores.append(out)
        if out.exists() and not args.overwrite:
            print(f"{spec.name}: kept {out}")
            continue
        start = time.perf_counter()
        sweep.run(spec, out=out, memory=args.memory, overwrite=args.overwrite)
        print(f"{spec.name}: {spec.num_networks} networks in {time.perf_counter() - start:.0f} s -> {out}")
    report = build(stores, args.report)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
