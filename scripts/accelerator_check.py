"""One command for a new device: is the engine correct there, and how fast is it?

usage: python scripts/accelerator_check.py [--quick] [--out results/accelerator]

On whatever JAX's default backend is (GPU, TPU, or the CPU), in one run:

(a) correctness:
  * the statistics kernel against plain float32 ``jax.grad`` of the same network
    (``sweep.kernel.reference``) for relu/fan_in/constant, tanh/fan_out/alternating,
    gelu/orthogonal/taper and relu/fan_avg/alternating in a deeper program, at precision
    ``highest``: every per-layer statistic within 2e-5 relative (1e-4 for means, which are
    sums of both signs), the loss likewise;
  * bit-identity of a small sweep's store across two memory budgets (different calls);
  * precision ``default`` recorded in the store's attributes, and how far it moves the
    numbers from ``highest`` (TF32 on recent GPUs, bfloat16 passes on TPUs);
(b) throughput: ``scripts/bench.py`` (widths 32, 256, 1024, 4096; independent and common
    draws; against the device's float32 GEMM peak; no PyTorch baseline off the CPU),
    ``scripts/bench_sampler.py`` (the conditional sampler against drawn weights, widths 1024
    to 16384) and ``scripts/bench_train.py``;
(c) writes ``check.json`` and ``check.md`` (a Markdown table) under ``--out``.

``--quick`` runs the same on a CPU in a few minutes (width 32 and short benchmarks), so that
the script is known to work before it meets an accelerator; CI runs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import sweep  # noqa: E402
from sweep import kernel  # noqa: E402
from sweep.kernel.reference import plain_statistics  # noqa: E402
from sweep.model import network, streams  # noqa: E402

FAMILIES = [("relu", "fan_in", "constant", 6), ("tanh", "fan_out", "alternating", 5),
            ("gelu", "orthogonal", "taper", 6), ("relu", "fan_avg", "alternating", 3)]
TOLERANCE = {"mean": 1e-4, "other": 2e-5}


def check_kernel(width: int) -> list[dict]:
    """The kernel against plain autodiff, per family; the last family runs inside a deeper program."""
    probe = kernel.Probe(batch=8, loss="mse", outputs=3, precision="highest", jacobian=False)
    rows = []
    for activation, init, profile, depth in FAMILIES:
        arch = network.Architecture.from_grid(activation, init, profile, depth, width)
        deeper = network.Architecture.from_grid(activation, init, profile, depth + 4, width)
        program = network.programs([arch, deeper])[arch]
        indices = np.arange(4, dtype=np.uint32)
        gains, biases = np.full(4, 1.3, np.float32), np.full(4, 0.1, np.float32)
        raw = kernel.make_kernel(program, probe, 2)(0, arch.prefix(program), indices, gains, biases)
        stats = kernel.finish(raw, arch.depth)
        worst = 0.0
        for i in range(4):
            expected, loss = plain_statistics(arch, probe, streams.network_key(0, int(indices[i])), 1.3, 0.1)
            for name, values in expected.items():
                scale = np.max(np.abs(values)) if name.endswith("_mean") else np.abs(values)
                error = np.max(np.abs(stats[name][i] - values) / np.maximum(scale, 1e-30))
                limit = TOLERANCE["mean" if name.endswith("_mean") else "other"]
                worst = max(worst, error / limit)
            worst = max(worst, abs(stats["loss"][i] - loss) / abs(loss) / TOLERANCE["other"])
        rows.append({"family": f"{activation}/{init}/{profile}/depth {depth} in a program of depth {program.depth}",
                     "worst_error_over_tolerance": float(worst), "ok": bool(worst <= 1.0)})
    return rows


def small_spec(width: int, precision: str = "highest") -> sweep.Spec:
    return sweep.Spec.from_dict({"name": "check", "seeds": 24, "batch": 8, "precision": precision,
                                 "grid": {"activation": ["relu", "tanh"], "init": ["fan_in", "fan_out"],
                                          "depth": [3, 5], "width": [width], "gain": [1.0, 1.5]}})


def check_store(width: int, where: Path) -> dict:
    """Bit-identity across memory budgets; precision ``default`` recorded and its effect."""
    spec = small_spec(width)
    a = sweep.run(spec, out=where / "a.zarr", memory="64MB", progress=False, with_theory=False, chunk_networks=16)
    b = sweep.run(spec, out=where / "b.zarr", memory="2GB", progress=False, with_theory=False, chunk_networks=96)
    identical = all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in a.data_vars)
    default = sweep.run(small_spec(width, "default"), out=where / "d.zarr", progress=False, with_theory=False)
    moved = float(np.nanmax(np.abs(default["act_meansq"].values / a["act_meansq"].values - 1)))
    return {"bit_identical_across_budgets": bool(identical),
            "default_precision_recorded": json.loads(default.attrs["spec"])["precision"] == "default",
            "default_vs_highest_largest_relative_difference_act_meansq": moved}


def run_script(name: str, *args: str) -> dict:
    """Runs one of the benchmark scripts and returns its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args, "--out", out.name],
                                capture_output=True, text=True, timeout=3600)
        if result.returncode:
            raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
        return {"table": result.stdout, "json": json.loads(Path(out.name).read_text())}


def markdown(report: dict) -> str:
    lines = [f"# accelerator check: {report['device']}", "", "| check | result |", "|---|---|"]
    for row in report["kernel"]:
        lines.append(f"| {row['family']} | {'ok' if row['ok'] else 'FAILED'} "
                     f"(worst error {row['worst_error_over_tolerance']:.2f} of tolerance) |")
    for key, value in report["store"].items():
        lines.append(f"| {key.replace('_', ' ')} | {value:.3g} |" if isinstance(value, float) else
                     f"| {key.replace('_', ' ')} | {value} |")
    lines += ["", "## statistics kernel throughput (scripts/bench.py)", "", report["bench"]["table"],
              "", "## conditional sampler (scripts/bench_sampler.py)", "", report["bench_sampler"]["table"],
              "", "## training throughput (scripts/bench_train.py)", "", report["bench_train"]["table"],
              "", f"total {report['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU-sized: width 32, short benchmarks")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "accelerator")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = jax.devices()[0]
    report = {"device": f"{device.platform}: {device.device_kind} x{jax.device_count()}", "quick": args.quick}
    width = 32 if args.quick else 256
    report["kernel"] = check_kernel(width)
    with tempfile.TemporaryDirectory() as tmp:
        report["store"] = check_store(width, Path(tmp))
    if args.quick:
        bench_args = ["--widths", "32", "--depth", "6", "--seconds", "1", "--repeats", "1", "--no-torch"]
        sampler_args = ["--widths", "256,512", "--depth", "4", "--seconds", "1", "--repeats", "1", "--no-torch"]
        train_args = ["--configs", "2x8x8:32", "--steps", "20", "--repeats", "1", "--no-torch"]
    else:
        bench_args = ["--widths", "32,256,1024,4096", "--seconds", "5", "--repeats", "3"]
        sampler_args = ["--widths", "1024,4096,16384", "--seconds", "5", "--repeats", "3", "--memory", "16GB"]
        if device.platform != "cpu":
            bench_args.append("--no-torch")
            sampler_args.append("--no-torch")
        train_args = ["--repeats", "3"] + (["--no-torch"] if device.platform != "cpu" else [])
    report["bench"] = run_script("bench.py", *bench_args)
    report["bench_sampler"] = run_script("bench_sampler.py", *sampler_args)
    report["bench_train"] = run_script("bench_train.py", *train_args)
    report["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "check.md").write_text(markdown(report))
    print(markdown(report))
    ok = all(r["ok"] for r in report["kernel"]) and report["store"]["bit_identical_across_budgets"] \
        and report["store"]["default_precision_recorded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
