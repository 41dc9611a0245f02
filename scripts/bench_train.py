"""Vmapped training against training one network at a time, with the same compiled code.

Trains ``--networks`` networks for ``--steps`` SGD steps twice in one process: all at once,
one call of ``sweep.train.loop``'s vmapped ``train`` over every network, and one by one, a
call of the same function per network (a chunk of one). Compilation is excluded (each
shape is warmed up first); each way is timed ``--repeats`` times and the medians are
compared per network.

    PYTHONPATH=. python3 scripts/bench_train.py
    PYTHONPATH=. python3 scripts/bench_train.py --depth 20 --width 128 --batch 128

Vmapping pays where one network leaves the device idle: small networks on CPU, almost any
network on a GPU. A CPU already saturated by one network's matmuls gains little; the
defaults are a small network, for which a CPU shows the effect.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from sweep.train import data as datasets
from sweep.train import loop, plan
from sweep.train.model import architecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits", "teacher"])
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = datasets.load(args.dataset)
    arch = architecture("relu", "fan_in", "constant", args.depth, args.width, data.n_features)
    trainer = loop.make_trainer(loop.Config(arch, data.n_outputs, data.task, args.optimizer, "highest"))
    n = args.networks
    state = trainer.init(jnp.uint32(0), jnp.arange(n, dtype=jnp.uint32),
                         jnp.full(n, np.sqrt(2.0), jnp.float32), jnp.zeros(n, jnp.float32))
    rates = jnp.full(n, 0.01, jnp.float32)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    rows = jnp.asarray(plan.batch_rows(0, len(data.x_train), args.batch, 0, args.steps))
    target = 0.0

    def fresh(i=None):
        """A copy of the initial state (``train`` consumes its input), of all or of network i."""
        pick = (lambda a: a) if i is None else (lambda a: a[i : i + 1])
        return jax.block_until_ready(jax.tree.map(lambda a: jnp.array(pick(a), copy=True), state))

    def together() -> float:
        s = fresh()
        start = time.perf_counter()
        _, losses = trainer.train(s, rates, x, y, rows, 0, target)
        losses.block_until_ready()
        return time.perf_counter() - start

    def one_by_one() -> float:
        singles = [fresh(i) for i in range(n)]
        start = time.perf_counter()
        out = [trainer.train(s, rates[i : i + 1], x, y, rows, 0, target)[1] for i, s in enumerate(singles)]
        jax.block_until_ready(out)
        return time.perf_counter() - start

    together(), one_by_one()  # compile both shapes
    times_together = [together() for _ in range(args.repeats)]
    times_single = [one_by_one() for _ in range(args.repeats)]
    per_net_together = statistics.median(times_together) / n
    per_net_single = statistics.median(times_single) / n
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}); {n} networks, relu, depth {args.depth}, "
          f"width {args.width}, input {data.n_features}, batch {args.batch}, {args.steps} {args.optimizer} steps, "
          f"dataset {args.dataset}; medians of {args.repeats} repeats")
    print(f"vmapped, one call    : {per_net_together * 1e3:9.3f} ms per network "
          f"({statistics.median(times_together):.3f} s for all)")
    print(f"one by one, n calls  : {per_net_single * 1e3:9.3f} ms per network "
          f"({statistics.median(times_single):.3f} s for all)")
    print(f"speed-up per network : {per_net_single / per_net_together:.1f}x")


if __name__ == "__main__":
    main()
