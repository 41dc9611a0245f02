"""Benchmark: the engine against a per-network PyTorch loop and this machine's GEMM peak.

For each width (depth 20, batch 128, 8 gains, relu, fan_in normal weights, no bias, an MSE
readout of 10 outputs: the workload of the PyTorch baseline), in one run:

* the engine's networks per second through ``sweep.run``, timed after compilation, for
  independent draws (the default), for common random numbers across gains with every gain's
  passes run, and for common random numbers with the gains run as scaled copies of one
  network (``sweep.kernel.scaled_copies``, which applies to this workload: relu, no biases);
* its useful GFLOP/s, counting three GEMMs per layer (forward, backward to the activations,
  weight gradient): 3 · 2 · batch · n_in · n_out per layer, the baseline's work; and the
  fraction of the peak that the GEMMs it actually runs reach;
* the machine's float32 GEMM peak, a large ``jnp.dot`` at precision highest;
* the baseline loop (``torch_loop.py``, outside this project) in a subprocess, with torch
  on all cores and on one; the faster of the two is the baseline.

Engine and baseline repeats are interleaved so that a change in the machine's load hits
both alike; every figure is the median of its repeats. PyTorch is needed only here:
``python3 -m pip install torch`` (it runs on the CPU).

usage:
  python scripts/bench.py [--quick] [--out results/bench.json] [--torch-loop PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sweep  # noqa: E402
from sweep.kernel import devices, passes  # noqa: E402

devices.use_cpu_cores()  # as sweep run does, before JAX starts its backends

TARGET_RATIO = {32: 20.0, 256: 3.0, 1024: 1.5}  # engine ÷ baseline, on a 2-core CPU
TARGET_PEAK_FRACTION = 0.5  # useful FLOP/s ÷ GEMM peak, at width >= 256
# The spec's options of each mode: independent draws (the default); common random numbers
# with every gain's passes run; and, for this workload (relu, no biases), the gains of a draw
# run as scaled copies of one network.
MODES = {
    "independent": {"common_random_numbers": False},
    "common": {"common_random_numbers": True, "scaled_copies": False},
    "scaled": {"common_random_numbers": True, "scaled_copies": True},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="32,256,1024", help="comma-separated widths")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--gains", type=int, default=8, help="gains, evenly spaced in [0.5, 2.5]")
    p.add_argument("--seconds", type=float, default=10.0, help="target duration of one timed engine run")
    p.add_argument("--torch-seconds", type=float, default=10.0,
                   help="target duration of one baseline run (at least one network per gain)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each measurement")
    p.add_argument("--threads", default=f"{os.cpu_count()},1",
                   help="baseline's torch thread counts to try; the faster sets the baseline of each repeat")
    p.add_argument("--memory", default="1GB", help="the engine's memory budget")
    p.add_argument("--torch-loop", default=os.environ.get("SWEEP_TORCH_LOOP", str(ROOT.parent / "shared/bench/torch_loop.py")),
                   help="path of the baseline script (env SWEEP_TORCH_LOOP)")
    p.add_argument("--no-torch", action="store_true", help="skip the baseline")
    p.add_argument("--out", default=str(ROOT / "results/bench.json"), help="where to write the JSON")
    p.add_argument("--quick", action="store_true", help="smoke test: small widths, short runs, one repeat")
    a = p.parse_args(argv)
    if a.quick:
        a.widths, a.depth, a.seconds, a.torch_seconds, a.repeats = "16,64", 4, 0.3, 0.3, 1
    a.widths = [int(w) for w in a.widths.split(",")]
    a.threads = list(dict.fromkeys(int(t) for t in str(a.threads).split(",")))
    return a


def useful_flops(width: int, depth: int, batch: int) -> float:
    """FLOPs of the three GEMMs per layer of one network (constant width)."""
    return 3 * 2 * batch * width * width * depth


def executed_flops(width: int, depth: int, batch: int, mode: str, gains: int) -> float:
    """FLOPs of the GEMMs the engine runs per network (constant width, mse: two streams).

    The weight gradient's norm comes from Gram matrices where cheaper
    (``passes.gram_is_cheaper``); scaled copies run one forward pass and two backward
    streams per draw of ``gains`` networks.
    """
    n, b = width, batch
    streams, share = (2, gains) if mode == "scaled" else (1, 1)
    if passes.gram_is_cheaper(b, n, n):
        weight = 2 * b * b * n * (1 + streams * streams)
    else:
        weight = streams * 2 * b * n * n
    return depth * (2 * b * n * n * (1 + streams) + weight) / share


def gemm_peak(repeats: int, sizes=(1024, 2048, 4096)) -> dict:
    """The float32 GEMM rate of one large ``jnp.dot`` at precision highest, best size."""
    dot = jax.jit(lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))
    rates = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        dot(a, b).block_until_ready()
        times = []
        for _ in range(max(3, repeats)):
            start = time.perf_counter()
            dot(a, b).block_until_ready()
            times.append(time.perf_counter() - start)
        rates[n] = 2 * n**3 / float(np.median(times)) / 1e9
    best = max(rates, key=rates.get)
    return {"gflops": rates[best], "size": best, "by_size": rates}


def engine_spec(args, width: int, seeds: int, mode: str) -> sweep.Spec:
    raw = {
        "name": "bench", "seeds": seeds, "batch": args.batch, "loss": "mse", "outputs": 10,
        "precision": "highest",
        "grid": {"activation": ["relu"], "init": ["fan_in"], "profile": ["constant"], "depth": [args.depth],
                 "width": [width], "gain": {"start": 0.5, "stop": 2.5, "num": args.gains}, "bias_std": [0.0]},
    }
    raw.update(MODES[mode])
    return sweep.Spec.from_dict(raw)


def time_engine(spec: sweep.Spec, memory: str) -> float:
    """Seconds of one ``sweep.run`` in memory, compilation excluded by the caller's warm-up."""
    start = time.perf_counter()
    sweep.run(spec, memory=memory, progress=False, with_theory=False)
    return time.perf_counter() - start


def calibrate_seeds(args, width: int, mode: str) -> int:
    """Seeds per gain for about ``args.seconds`` of work, from a small compiled run."""
    probe_seeds = 2
    spec = engine_spec(args, width, probe_seeds, mode)
    time_engine(spec, args.memory)  # compile
    rate = spec.num_networks / time_engine(spec, args.memory)
    return max(1, math.ceil(rate * args.seconds / args.gains))


def run_torch(args, width: int, nets_per_gain: int, threads: int) -> tuple[float, float]:
    """Runs the baseline once; returns ``(nets_per_s, wall seconds)``."""
    cmd = [sys.executable, args.torch_loop, "--width", str(width), "--depth", str(args.depth),
           "--batch", str(args.batch), "--gains", str(args.gains), "--nets-per-gain", str(nets_per_gain),
           "--out-dim", "10", "--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    match = re.findall(r"nets_per_s=([0-9.eE+-]+)", done.stdout)
    if not match:
        raise RuntimeError(f"no nets_per_s in the baseline's output:\n{done.stdout}\n{done.stderr}")
    return float(match[-1]), wall


def main(argv=None) -> int:
    args = parse_args(argv)
    torch_ok = not args.no_torch and Path(args.torch_loop).is_file()
    if not args.no_torch and not torch_ok:
        print(f"baseline not found at {args.torch_loop}; skipping it (--torch-loop PATH)", file=sys.stderr)

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0]),
                    "load_average_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "widths": [],
    }
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    peaks = [gemm_peak(args.repeats)]
    print(f"GEMM peak: {peaks[0]['gflops']:.1f} GFLOP/s (n = {peaks[0]['size']})", flush=True)

    for width in args.widths:
        flops = useful_flops(width, args.depth, args.batch)
        specs = {m: engine_spec(args, width, calibrate_seeds(args, width, m), m) for m in MODES}
        for spec in specs.values():
            time_engine(spec, args.memory)  # compile the timed shape
        torch_nets = {}
        if torch_ok:
            for t in args.threads:
                rate, _ = run_torch(args, width, 1, t)
                torch_nets[t] = max(1, math.ceil(rate * args.torch_seconds / args.gains))
        runs = []
        # On a shared machine the load changes from second to second: each repeat measures
        # the engine between two GEMM-peak measurements, then the baseline, and every ratio
        # is formed within its repeat before taking medians.
        for _ in range(args.repeats):
            run = {"load_average": os.getloadavg()[0], "engine": {}}
            for m, spec in specs.items():
                before = gemm_peak(1, sizes=(1024,))["gflops"]
                seconds = time_engine(spec, args.memory)
                after = gemm_peak(1, sizes=(1024,))["gflops"]
                rate = spec.num_networks / seconds
                executed = executed_flops(width, args.depth, args.batch, m, args.gains)
                run["engine"][m] = {"seconds": seconds, "nets_per_s": rate, "gflops": rate * flops / 1e9,
                                    "executed_gflops": rate * executed / 1e9, "peak_gflops": (before + after) / 2}
            if torch_ok:
                # Small ops on two threads of an oversubscribed machine can run far slower
                # than on one: the faster setting is the baseline, so as not to flatter the engine.
                run["torch_by_threads"] = {t: run_torch(args, width, torch_nets[t], t)[0] for t in args.threads}
                run["torch_nets_per_s"] = max(run["torch_by_threads"].values())
            runs.append(run)
        row = {"width": width, "useful_gflop_per_net": flops / 1e9, "runs": runs, "engine": {}}
        for m, spec in specs.items():
            r = [run["engine"][m] for run in runs]
            row["engine"][m] = {
                "networks": spec.num_networks,
                "nets_per_s": float(np.median([x["nets_per_s"] for x in r])),
                "gflops": float(np.median([x["gflops"] for x in r])),
                "peak_fraction": float(np.median([x["gflops"] / x["peak_gflops"] for x in r])),
                "executed_gflop_per_net": executed_flops(width, args.depth, args.batch, m, args.gains) / 1e9,
                "executed_peak_fraction": float(np.median([x["executed_gflops"] / x["peak_gflops"] for x in r])),
            }
            if torch_ok:
                row["engine"][m]["ratio_to_torch"] = float(np.median(
                    [x["nets_per_s"] / run["torch_nets_per_s"] for x, run in zip(r, runs)]))
        if torch_ok:
            row["torch"] = {"networks": {t: n * args.gains for t, n in torch_nets.items()},
                            "nets_per_s": float(np.median([run["torch_nets_per_s"] for run in runs])),
                            "nets_per_s_by_threads": {t: float(np.median([run["torch_by_threads"][t] for run in runs]))
                                                      for t in args.threads}}
        result["widths"].append(row)
        print(f"width {width}: " + ", ".join(f"{m} {r['nets_per_s']:.1f} nets/s" for m, r in row["engine"].items())
              + (f", torch {row['torch']['nets_per_s']:.2f} nets/s" if torch_ok else ""), flush=True)

    peaks.append(gemm_peak(args.repeats))
    best = max(p["gflops"] for p in peaks)
    result["gemm_peak"] = {"gflops": best, "start": peaks[0], "end": peaks[1]}
    result["machine"]["load_average_end"] = os.getloadavg()

    print()
    print(f"GEMM peak (float32 jnp.dot, precision highest): {peaks[0]['gflops']:.1f} GFLOP/s at the start, "
          f"{peaks[1]['gflops']:.1f} at the end; '% peak' pairs each engine run with a peak measured just "
          f"before and after it.\nGFLOP/s and '% peak' count the work of the baseline (three GEMMs per layer "
          f"and network); 'run % peak' counts the GEMMs the engine runs (fewer with Gram matrices and "
          f"scaled copies).")
    header = (f"{'width':>5} {'draws':>11} {'engine nets/s':>13} {'torch nets/s':>12} {'ratio':>8} {'target':>7} "
              f"{'GFLOP/s':>8} {'% peak':>7} {'target':>7} {'run % peak':>10} {'met':>4}")
    print(header)
    print("-" * len(header))
    for row in result["widths"]:
        w = row["width"]
        for m, r in row["engine"].items():
            target = TARGET_RATIO.get(w)
            checks = []
            if target is not None and torch_ok:
                checks.append(r["ratio_to_torch"] >= target)
            if w >= 256:
                checks.append(r["peak_fraction"] >= TARGET_PEAK_FRACTION)
            r["targets_met"] = all(checks) if checks else None
            torch_rate = row["torch"]["nets_per_s"] if torch_ok else float("nan")
            ratio = r.get("ratio_to_torch", float("nan"))
            peak_target = f"{100 * TARGET_PEAK_FRACTION:.0f}%" if w >= 256 else "-"
            print(f"{w:>5} {m:>11} {r['nets_per_s']:>13.1f} {torch_rate:>12.2f} {ratio:>7.1f}x "
                  f"{(f'{target:.1f}x' if target else '-'):>7} {r['gflops']:>8.1f} {100 * r['peak_fraction']:>6.0f}% "
                  f"{peak_target:>7} {100 * r['executed_peak_fraction']:>9.0f}% "
                  f"{({True: 'yes', False: 'no', None: '-'}[r['targets_met']]):>4}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
