"""Vmapped training against what users write: per-network loops in JAX (flax/optax) and in PyTorch.

For each configuration (depth x width x batch), trains relu networks (fan_in, gain √2, zero
biases, a 10-way readout) for ``--steps`` SGD steps at learning rate 0.01 on MNIST-1D, with
the same mini-batches, five ways, in one process, in alternation, ``--repeats`` times each:

* vmapped: the trainer ``sweep run`` uses (``loop.make_trainer`` at the plan's micro-batch), one
  call over every network, all steps in it, sharded over the process's devices
  (``devices.on_devices``) as ``sweep run`` runs it: on a CPU one device per core
  (``devices.use_cpu_cores``, ``sweep run``'s default; an ``XLA_FLAGS`` device count wins);
* vmapped on one device: the same call on the first device alone;
* one by one: the same trainer built for a micro-batch of one network, called once per network;
* jitted step loop: the flax/optax tutorial pattern, a jitted ``train_step(params, opt_state, x,
  y, rows)`` (value_and_grad of the same module and loss, ``optax.sgd``, ``apply_updates``)
  called from Python for every step of every network;
* torch loop: the same loop in PyTorch (``scripts/bench_train_torch.py``, in a subprocess, on
  one thread and on all; the faster is the baseline), from the same initial parameters.

Like for like: every way does one forward and backward pass and one SGD update per step on the
same mini-batch and records the step's loss, nothing else: the trainer is timed in its
``train`` call alone, without the evaluations, coordinate checks, initial statistics and first
step of a sweep (it still tracks divergence and the first step below a target loss, work the
loops do not do). The jitted step loop gathers its mini-batch on the device from the full
training set, as the trainer does; both start from the same parameters, and the loops' final
losses are checked against the trainer's (the torch loop's within float32 rounding). Compiles
and warm-ups are excluded. Per-network times are medians over the repeats, and each speed-up is
formed within its repeat before the median is taken. Every way is timed in wall-clock time and
in CPU time (of all the process's threads; the torch loop's from its own process), whose ratio
is the cores it kept busy; a float32 GEMM peak measured before each repeat (``bench.gemm_peak``,
1024²) and the GEMM rate of each way (its GEMMs' FLOPs, forward, input and weight gradients,
over wall time) say how near a way is to the machine's limit. Prints a table and writes JSON.

    python3 scripts/bench_train.py                               # the default configurations
    python3 scripts/bench_train.py --configs 8x128x128:32 --repeats 3
    python3 scripts/bench_train.py --no-torch
    XLA_FLAGS=--xla_force_host_platform_device_count=1 python3 scripts/bench_train.py   # one device only

Vmapping pays where one network leaves the device idle: small networks on a CPU (each of their
operations costs about as much to launch as to compute), almost any network on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

import sweep
from sweep import plan
from sweep.kernel import devices
from sweep.model import network
from sweep.train import data as datasets
from sweep.train import loop, schedule

devices.use_cpu_cores()  # as sweep run does, before JAX starts its backends

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import gemm_peak  # noqa: E402

DEFAULT_CONFIGS = "4x32x32:256,8x128x128:32,20x256x128:4"
LEARNING_RATE = 0.01
TORCH = Path(__file__).resolve().parent / "bench_train_torch.py"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="comma-separated DEPTHxWIDTHxBATCH[:NETWORKS] (networks trained vmapped and one by one)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loop-networks", type=int, default=0,
                   help="networks each per-step loop trains (default: networks / 16, at least 2)")
    p.add_argument("--torch-threads", default=f"1,{os.cpu_count()}", help="comma-separated torch thread counts")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default="results/bench_train.json")
    a = p.parse_args(argv)
    configs = []
    for c in a.configs.split(","):
        shape, _, networks = c.partition(":")
        configs.append(tuple(int(v) for v in shape.split("x")) + (int(networks or 64),))
    a.configs = configs
    a.torch_threads = sorted({int(t) for t in a.torch_threads.split(",")})
    return a


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds since ``clocks()`` returned ``start``."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def gemm_flops(layers: list, batch: int) -> float:
    """FLOPs of one training step's GEMMs: forward, weight gradients, and input gradients but the first's."""
    products = [w.shape[0] * w.shape[1] for w, _ in layers]
    return 2 * batch * (3 * sum(products) - products[0])


def measure(args, depth: int, width: int, batch: int, networks: int, data: datasets.Dataset) -> dict:
    """Each way's wall and CPU seconds per repeat, per-network medians and speed-ups, for one configuration."""
    spec = sweep.load_spec({"kind": "train", "dataset": "mnist1d", "optimizer": "sgd", "batch": batch,
                            "grid": {"activation": ["relu"], "depth": [depth], "width": [width]}})
    job = plan.make_plan(spec).groups[0].jobs[-1]  # the training job, as a sweep plans it
    micro = job.micro_batch
    config = loop.Config(job.arch, data.n_outputs, data.task, "sgd", "highest")
    together, single = loop.make_trainer(config, micro), loop.make_trainer(config, 1)
    mesh = devices.local_mesh()
    sharded = devices.on_devices(together.train, mesh, (True, True, False, False, False, False, False), donate=(0,))
    whole = micro * mesh.size  # whole micro-batches on every device, as the runner calls them
    n = whole * -(-networks // whole)
    looped = args.loop_networks or max(2, n // 16)
    state = together.init(jnp.uint32(0), jnp.arange(n, dtype=jnp.uint32), jnp.full(n, np.sqrt(2.0), jnp.float32),
                          jnp.zeros(n, jnp.float32))
    rates = jnp.full(n, LEARNING_RATE, jnp.float32)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    rows = schedule.batch_rows(0, len(data.x_train), batch, 0, args.steps)
    device_rows = jnp.asarray(rows)

    def copy(tree, i=None):
        pick = (lambda a: a) if i is None else (lambda a: a[i : i + 1])
        return jax.block_until_ready(jax.tree.map(lambda a: jnp.array(pick(a), copy=True), tree))

    def vmapped(train, placement=None):
        def way():
            s, r = copy(state), rates  # train consumes (donates) its state
            if placement is not None:  # on the devices before the clock starts, as the runner's calls find them
                s, r = jax.block_until_ready(jax.device_put((s, r), placement))
            start = clocks()
            losses = train(s, r, x, y, device_rows, 0, 0.0)[1].block_until_ready()
            return *since(start), np.asarray(losses)[:looped, -1]
        return way

    def one_by_one():
        singles = [copy(state, i) for i in range(n)]
        start = clocks()
        out = [single.train(s, rates[i : i + 1], x, y, device_rows, 0, 0.0)[1] for i, s in enumerate(singles)]
        jax.block_until_ready(out)
        return *since(start), np.concatenate([np.asarray(o[:, -1]) for o in out[:looped]])

    tx = optax.sgd(LEARNING_RATE)

    @jax.jit
    def train_step(params, opt_state, x, y, rows):
        def objective(p):
            return jnp.mean(loop.loss_terms(config.module.apply({"params": p}, x[rows], unroll=True), y[rows],
                                            config.task)[0])

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    initial = [jax.tree.map(lambda a: a[0], copy(state.params, i)) for i in range(looped)]

    def jitted_step_loop():
        start = clocks()
        losses = []
        for p in initial:
            opt_state = tx.init(p)
            for t in range(args.steps):
                p, opt_state, loss = train_step(p, opt_state, x, y, device_rows[t])
            losses.append(loss)
        jax.block_until_ready(losses)
        return *since(start), np.asarray(losses)

    layers = network.layer_list(initial[0]["hidden"]) + [(initial[0]["readout"]["kernel"], initial[0]["readout"]["bias"])]
    ways = {"vmapped": vmapped(sharded, NamedSharding(mesh, PartitionSpec(devices.AXIS)) if mesh.size > 1 else None)}
    if mesh.size > 1:
        ways["vmapped_one_device"] = vmapped(together.train)
    ways |= {"one_by_one": one_by_one, "jitted_step_loop": jitted_step_loop}
    counts = {"vmapped": n, "vmapped_one_device": n, "one_by_one": n, "jitted_step_loop": looped, "torch_loop": looped}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_torch:
            ways["torch_loop"] = torch_loop(Path(tmp) / "torch.npz", initial, data, rows, args.torch_threads)
        for way in ways.values():  # compile every shape, warm every path
            way()
        wall, cpu, final, peaks, threads = {k: [] for k in ways}, {k: [] for k in ways}, {}, [], []
        for _ in range(args.repeats):
            peaks.append(gemm_peak(1, sizes=(1024,))["gflops"])
            for name, way in ways.items():
                w, c, final[name] = way()
                wall[name].append(w)
                cpu[name].append(c)
                if name == "torch_loop":
                    threads.append(way.threads)
    per_net = {k: [t / counts[k] for t in v] for k, v in wall.items()}
    ratio = lambda k: [a / b for a, b in zip(per_net[k], per_net["vmapped"])]
    cpu_ratio = lambda k: [a / counts[k] / (b / n) for a, b in zip(cpu[k], cpu["vmapped"])]
    flops = gemm_flops(layers, batch) * args.steps
    others = [k for k in ways if k != "vmapped"]
    row = {"depth": depth, "width": width, "batch": batch, "micro_batch": micro, "devices": mesh.size, "networks": n,
           "loop_networks": looped, "gemm_flops_per_network": flops, "wall_seconds": wall, "cpu_seconds": cpu,
           "ms_per_network": {k: statistics.median(v) * 1e3 for k, v in per_net.items()},
           "cpu_ms_per_network": {k: statistics.median(c / counts[k] for c in v) * 1e3 for k, v in cpu.items()},
           "cores_busy": {k: statistics.median(c / w for c, w in zip(cpu[k], wall[k])) for k in ways},
           "gemm_gflops": {k: flops / statistics.median(v) / 1e9 for k, v in per_net.items()},
           "gemm_peak_gflops_per_repeat": peaks, "gemm_peak_gflops": statistics.median(peaks),
           "speedup_per_repeat": {k: ratio(k) for k in others},
           "speedup": {k: statistics.median(ratio(k)) for k in others},
           "cpu_speedup": {k: statistics.median(cpu_ratio(k)) for k in others},
           "final_loss_max_abs_difference": {k: float(np.max(np.abs(final[k][:looped] - final["vmapped"][:looped])))
                                             for k in others}}
    if threads:
        row["torch_threads_per_repeat"] = threads
    return row


def torch_loop(path: Path, initial: list, data: datasets.Dataset, rows: np.ndarray, thread_counts: list[int]):
    """The torch loop as a way: a subprocess per thread count, the faster one's times (``threads`` says which)."""
    arrays = {"x": np.asarray(data.x_train, np.float32), "y": np.asarray(data.y_train), "rows": rows,
              "lr": LEARNING_RATE, "networks": len(initial)}
    for i, params in enumerate(initial):
        layers = network.layer_list(params["hidden"]) + [(params["readout"]["kernel"], params["readout"]["bias"])]
        arrays["layers"] = len(layers)
        for l, (w, b) in enumerate(layers):
            arrays[f"w{i}_{l}"], arrays[f"b{i}_{l}"] = np.asarray(w), np.asarray(b)
    np.savez(path, **arrays)

    def run():
        best = None
        for threads in thread_counts:
            out = subprocess.run([sys.executable, str(TORCH), str(path), "--threads", str(threads)], capture_output=True,
                                 text=True, timeout=3600)
            if out.returncode:
                raise SystemExit(f"the torch loop failed: {out.stderr.strip().splitlines()[-1:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if best is None or result["seconds"] < best["seconds"]:
                best = result
        run.threads, run.version = best["threads"], best["torch"]
        return best["seconds"], best["cpu_seconds"], np.asarray(best["final_losses"])

    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    data = datasets.load("mnist1d")
    device = jax.devices()[0]
    result = {"device": f"{device.platform} ({device.device_kind})", "devices": jax.local_device_count(),
              "cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "dataset": "mnist1d", "optimizer": "sgd",
              "learning_rate": LEARNING_RATE, "steps": args.steps, "repeats": args.repeats, "jax": jax.__version__,
              "rows": []}
    print(f"{result['device']} x{result['devices']}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; relu networks "
          f"(fan_in, gain √2), {args.steps} SGD steps on MNIST-1D; per-network medians of {args.repeats} alternating "
          f"repeats", flush=True)
    names = {"vmapped": "vmapped", "vmapped_one_device": "1 device", "one_by_one": "1 by 1",
             "jitted_step_loop": "jit loop", "torch_loop": "torch"}
    for depth, width, batch, networks in args.configs:
        row = measure(args, depth, width, batch, networks, data)
        result["rows"].append(row)
        print(f"\n{depth}x{width}x{batch}: micro-batch {row['micro_batch']}, {row['networks']} networks vmapped and one "
              f"by one, {row['loop_networks']} in each loop; GEMM peak {row['gemm_peak_gflops']:.0f} GFLOP/s"
              + (f"; torch on {row['torch_threads_per_repeat']} threads" if "torch_threads_per_repeat" in row else ""))
        print(f"{'':>10}{'ms/net':>10}{'CPU ms/net':>12}{'cores':>7}{'GFLOP/s':>9}{'speed-up':>10}{'CPU speed-up':>14}"
              f"{'final loss Δ':>14}")
        for k in row["ms_per_network"]:
            up = f"{row['speedup'][k]:>9.2f}×{row['cpu_speedup'][k]:>13.2f}×" if k in row["speedup"] else f"{'':>24}"
            diff = f"{row['final_loss_max_abs_difference'][k]:>14.1e}" if k in row["speedup"] else ""
            print(f"{names[k]:>10}{row['ms_per_network'][k]:>10.2f}{row['cpu_ms_per_network'][k]:>12.2f}"
                  f"{row['cores_busy'][k]:>7.2f}{row['gemm_gflops'][k]:>9.1f}{up}{diff}", flush=True)
    result["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nspeed-up: the way's time per network over the vmapped trainer's (on every device), per repeat, median; "
          f"load {os.getloadavg()[0]:.2f} at the end\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
