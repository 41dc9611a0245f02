"""Vmapped training against training one network at a time: with the same code, and as users write it.

For each configuration, trains ``--networks`` networks for ``--steps`` SGD steps in one
process, three ways: all at once, by the trainer that ``sweep run`` uses (one call over every
network, ``vmap``-ed in the plan's micro-batches); one by one, by the same
``loop.make_trainer`` built for a micro-batch of one network and called once per network (all
steps in one ``lax.scan``); and as the flax/optax tutorials write it, a jitted ``train_step``
called from Python for every step of every network (``--loop-networks`` of them, the same
module, loss and optimizer). Compilation is excluded (each shape is warmed up first); the ways
are timed in alternation, ``--repeats`` times each, and the medians are compared per network.
Prints a table and writes it as JSON.

    python3 scripts/bench_train.py                       # the default configurations
    python3 scripts/bench_train.py --configs 20x128x128  # depth x width x batch

Vmapping pays where one network leaves the device idle: small networks on a CPU (each of
their operations costs about as much to launch as to compute), almost any network on a GPU.
A CPU that one network's GEMMs already keep busy gains little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sweep
from sweep import plan
from sweep.train import data as datasets
from sweep.train import loop, schedule

DEFAULT_CONFIGS = "2x8x8,4x16x16,4x32x32,20x128x128"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated DEPTHxWIDTHxBATCH")
    p.add_argument("--networks", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits", "teacher"])
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loop-networks", type=int, default=16, help="networks the per-step Python loop trains")
    p.add_argument("--out", default="results/bench_train.json")
    a = p.parse_args(argv)
    a.configs = [tuple(int(v) for v in c.split("x")) for c in a.configs.split(",")]
    return a


def measure(args, depth: int, width: int, batch: int, data: datasets.Dataset) -> dict:
    """Per-network seconds of both ways for one configuration (medians of ``args.repeats``)."""
    spec = sweep.load_spec({"kind": "train", "dataset": args.dataset, "optimizer": args.optimizer, "batch": batch,
                            "grid": {"activation": ["relu"], "depth": [depth], "width": [width]}})
    job = plan.make_plan(spec).groups[0].jobs[-1]  # the training job, as a sweep plans it
    arch, micro = job.arch, job.micro_batch
    config = loop.Config(arch, data.n_outputs, data.task, args.optimizer, "highest")
    n = args.networks
    together_trainer, single_trainer = loop.make_trainer(config, micro), loop.make_trainer(config, 1)
    size = micro * -(-n // micro)  # one call, padded to whole micro-batches as the runner does
    indices = jnp.minimum(jnp.arange(size, dtype=jnp.uint32), n - 1)
    state = together_trainer.init(jnp.uint32(0), indices, jnp.full(size, np.sqrt(2.0), jnp.float32),
                                  jnp.zeros(size, jnp.float32))
    rates = jnp.full(size, 0.01, jnp.float32)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    rows = jnp.asarray(schedule.batch_rows(0, len(data.x_train), batch, 0, args.steps))

    def copy(tree, i=None):
        pick = (lambda a: a) if i is None else (lambda a: a[i : i + 1])
        return jax.block_until_ready(jax.tree.map(lambda a: jnp.array(pick(a), copy=True), tree))

    def together() -> float:
        s = copy(state)  # train consumes (donates) its state
        start = time.perf_counter()
        together_trainer.train(s, rates, x, y, rows, 0, 0.0)[1].block_until_ready()
        return time.perf_counter() - start

    def one_by_one() -> float:
        singles = [copy(state, i) for i in range(n)]
        start = time.perf_counter()
        out = [single_trainer.train(s, rates[i : i + 1], x, y, rows, 0, 0.0)[1] for i, s in enumerate(singles)]
        jax.block_until_ready(out)
        return time.perf_counter() - start

    tx = loop.optimizer(args.optimizer, 0.01)

    @jax.jit
    def train_step(params, opt_state, x, y, rows):
        def objective(p):
            return jnp.mean(loop.loss_terms(config.module.apply({"params": p}, x[rows]), y[rows], config.task)[0])

        loss, grads = jax.value_and_grad(objective)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    looped = min(args.loop_networks, n)

    def python_loop() -> float:
        params = [jax.tree.map(lambda a: a[0], copy(state.params, i)) for i in range(looped)]
        start = time.perf_counter()
        losses = []
        for p in params:
            opt_state = tx.init(p)
            for t in range(args.steps):
                p, opt_state, loss = train_step(p, opt_state, x, y, rows[t])
            losses.append(loss)
        jax.block_until_ready(losses)
        return time.perf_counter() - start

    together(), one_by_one(), python_loop()  # compile every shape
    times = {"together": [], "one_by_one": [], "python_loop": []}
    for _ in range(args.repeats):
        times["together"].append(together())
        times["one_by_one"].append(one_by_one())
        times["python_loop"].append(python_loop())
    per_net = {k: statistics.median(v) / (looped if k == "python_loop" else n) for k, v in times.items()}
    return {
        "depth": depth, "width": width, "batch": batch, "micro_batch": micro, "networks": n, "loop_networks": looped,
        "seconds": times, "ms_per_network": {k: v * 1e3 for k, v in per_net.items()},
        "speedup": per_net["one_by_one"] / per_net["together"],
        "speedup_per_repeat": [s / t for s, t in zip(times["one_by_one"], times["together"])],
        "speedup_over_python_loop": per_net["python_loop"] / per_net["together"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    data = datasets.load(args.dataset)
    device = jax.devices()[0]
    result = {"device": f"{device.platform} ({device.device_kind})", "cpus": os.cpu_count(),
              "load_average_start": os.getloadavg()[0], "dataset": args.dataset, "optimizer": args.optimizer,
              "steps": args.steps, "repeats": args.repeats, "rows": []}
    print(f"{result['device']}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; {args.networks} relu networks "
          f"(fan_in, gain √2), {args.steps} {args.optimizer} steps on {args.dataset}; medians of {args.repeats}", flush=True)
    header = (f"{'depth':>5} {'width':>5} {'batch':>5} {'µ':>4} {'vmapped ms/net':>14} {'one by one ms/net':>17} "
              f"{'speed-up':>8} {'jitted step loop ms/net':>23} {'speed-up':>8}")
    print(header + "\n" + "-" * len(header), flush=True)
    for depth, width, batch in args.configs:
        row = measure(args, depth, width, batch, data)
        result["rows"].append(row)
        ms = row["ms_per_network"]
        print(f"{depth:>5} {width:>5} {batch:>5} {row['micro_batch']:>4} {ms['together']:>14.3f} "
              f"{ms['one_by_one']:>17.3f} {row['speedup']:>7.1f}× {ms['python_loop']:>23.3f} "
              f"{row['speedup_over_python_loop']:>7.1f}×", flush=True)
    result["load_average_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
