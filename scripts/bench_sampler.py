"""Benchmark: the conditional sampler against drawn weights and the per-network PyTorch loop.

For each width (depth 20, batch 128, relu, fan_in normal weights, no bias, an MSE readout of
10 outputs, independent draws: the baseline's workload), in one run, the networks per second
of ``sweep.run`` with ``sampler = "direct"`` and ``sampler = "conditional"``, timed after
compilation, and of the baseline loop (``torch_loop.py``, outside this project, the faster
of all cores and one). Direct draws and the baseline run up to ``--direct-max`` (their cost
grows like n² per layer); the conditional sampler runs every width. The repeats interleave
the three so that a change in the machine's load hits all alike; each ratio is formed
within its repeat, and every figure is the median of its repeats. A least-squares line of
log(seconds per network) against log(width) from 1024 up gives the conditional sampler's
exponent (1 is linear in the width).

usage:
  python scripts/bench_sampler.py [--widths 32,256,1024,4096,16384] [--out results/bench_sampler.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import run_torch, time_engine  # noqa: E402

import sweep  # noqa: E402
from sweep import plan  # noqa: E402
from sweep.kernel.devices import use_cpu_cores  # noqa: E402
from sweep.plan.memory import device_share  # noqa: E402

use_cpu_cores()  # as sweep run does, before JAX starts its backends

TARGETS = {1024: 3.0, 4096: 10.0}  # conditional ÷ direct, at these widths
TORCH_TARGET = {4096: 10.0}  # conditional ÷ the baseline
EXPONENT_TARGET = 1.3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="32,256,1024,4096,16384", help="comma-separated widths")
    p.add_argument("--direct-max", type=int, default=4096, help="the widest direct and baseline runs")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=10.0, help="target duration of one timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory", default="8GB",
                   help="the engine's memory budget, shared by a CPU's devices (direct draws at width 4096 need 3 GB each)")
    p.add_argument("--threads", default=f"{os.cpu_count()},1", help="torch thread counts to try")
    p.add_argument("--torch-loop", default=os.environ.get("SWEEP_TORCH_LOOP", str(ROOT.parent / "shared/bench/torch_loop.py")))
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=str(ROOT / "results/bench_sampler.json"))
    args = p.parse_args(argv)
    args.widths = [int(w) for w in args.widths.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    args.gains = 1  # for run_torch: independent networks
    return args


def spec(args, width: int, networks: int, sampler: str) -> sweep.Spec:
    return sweep.Spec.from_dict({
        "name": "bench_sampler", "seeds": networks, "batch": args.batch, "loss": "mse", "outputs": 10,
        "sampler": sampler,
        "grid": {"activation": ["relu"], "init": ["fan_in"], "profile": ["constant"], "depth": [args.depth],
                 "width": [width], "gain": [1.0], "bias_std": [0.0]}})


def computed(args, width: int, networks: int, sampler: str, devices: int) -> int:
    """The networks a run of ``networks`` computes on ``devices`` CPU devices, padding included
    (whole micro-batches, and calls of a multiple of the devices' micro-batches)."""
    the_plan = plan.make_plan(spec(args, width, networks, sampler), device_share(args.memory, devices))
    job = the_plan.groups[0].jobs[0]
    calls = the_plan.calls(job, np.arange(job.micro_batches), devices)
    return sum(len(ids) for ids in calls) * job.micro_batch


def calibrated(args, width: int, sampler: str) -> sweep.Spec:
    """A spec of about ``args.seconds`` of work, compiled, whose networks fill its kernel calls:
    the time per network is then the sampler's, not that of padding that a device computes while
    the others work (a sweep of many networks pads its last call only)."""
    devices = jax.local_device_count()
    one = spec(args, width, devices, sampler)
    time_engine(one, args.memory)  # compile
    seconds = time_engine(one, args.memory)
    target = devices * max(1, math.floor(args.seconds / seconds))
    nearest = sorted(range(devices, 2 * target + devices, devices), key=lambda n: abs(n - target))
    networks = next((n for n in nearest if computed(args, width, n, sampler, devices) == n), target)
    out = spec(args, width, networks, sampler)
    time_engine(out, args.memory)  # compile the timed shape
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch_ok = not args.no_torch and Path(args.torch_loop).is_file()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                          "device": str(jax.devices()[0])},
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "widths": []}
    for width in args.widths:
        with_direct = width <= args.direct_max
        specs = {"conditional": calibrated(args, width, "conditional")}
        if with_direct:
            specs["direct"] = calibrated(args, width, "direct")
        torch_nets = {}
        if torch_ok and with_direct:
            for t in args.threads:
                rate, _ = run_torch(args, width, 1, t)
                torch_nets[t] = max(1, math.ceil(rate * args.seconds))
        runs = []
        for _ in range(args.repeats):
            run = {name: s.num_networks / time_engine(s, args.memory) for name, s in specs.items()}
            if torch_nets:
                run["torch"] = max(run_torch(args, width, n, t)[0] for t, n in torch_nets.items())
            runs.append(run)
        row = {"width": width, "runs": runs,
               "nets_per_s": {k: float(np.median([r[k] for r in runs])) for k in runs[0]},
               "networks": {k: s.num_networks for k, s in specs.items()}}
        for other in ("direct", "torch"):
            if other in runs[0]:
                row[f"conditional_over_{other}"] = float(np.median([r["conditional"] / r[other] for r in runs]))
        result["widths"].append(row)
        print(f"width {width}: " + ", ".join(f"{k} {v:.3g} nets/s" for k, v in row["nets_per_s"].items()), flush=True)

    wide = [r for r in result["widths"] if r["width"] >= 1024]
    if len(wide) >= 2:
        slope = np.polyfit(np.log([r["width"] for r in wide]),
                           np.log([1 / r["nets_per_s"]["conditional"] for r in wide]), 1)[0]
        result["exponent"] = {"from": wide[0]["width"], "to": wide[-1]["width"], "value": float(slope),
                              "target": EXPONENT_TARGET, "met": bool(slope <= EXPONENT_TARGET)}
    header = (f"{'width':>6} {'conditional s/net':>17} {'direct s/net':>13} {'torch s/net':>12} "
              f"{'cond/direct':>12} {'cond/torch':>11} {'met':>4}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in result["widths"]:
        rate = r["nets_per_s"]
        cell = lambda k: f"{1 / rate[k]:.4g}" if k in rate else "-"
        ratio = lambda k: f"{r[k]:.2f}" if k in r else "-"
        checks = []
        if r["width"] in TARGETS and "conditional_over_direct" in r:
            checks.append(r["conditional_over_direct"] >= TARGETS[r["width"]])
        if r["width"] in TORCH_TARGET and "conditional_over_torch" in r:
            checks.append(r["conditional_over_torch"] >= TORCH_TARGET[r["width"]])
        r["targets_met"] = all(checks) if checks else None
        met = "-" if r["targets_met"] is None else ("yes" if r["targets_met"] else "no")
        print(f"{r['width']:>6} {cell('conditional'):>17} {cell('direct'):>13} {cell('torch'):>12} "
              f"{ratio('conditional_over_direct'):>12} {ratio('conditional_over_torch'):>11} {met:>4}")
    if "exponent" in result:
        e = result["exponent"]
        print(f"time per network ~ width^{e['value']:.2f} from {e['from']} to {e['to']} (target <= {e['target']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
