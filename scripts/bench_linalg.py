"""What the deadlock-free factorisations cost against jaxlib's LAPACK, side by side in one run.

usage: python scripts/bench_linalg.py [--repeats 7]

Times (medians over alternating repeats, milliseconds, one CPU device) of:
* one orthogonal draw ``(n, n)``: ``jax.nn.initializers.orthogonal`` (LAPACK QR) against
  ``sweep.model.linalg`` (Householder QR in plain XLA, what ``sweep.model.streams`` draws on a
  CPU), for a batch of 8 draws vmapped;
* singular values of 32 Jacobians ``(n, n)``: ``jnp.linalg.svd`` on the device (LAPACK in
  XLA) against numpy on the host, as the engine does on CPUs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from sweep.kernel.results import jacobian_singular_values
from sweep.model import streams


def _median_ms(fns, repeats):
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            start = time.perf_counter()
            fn()
            t.append(1e3 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    keys = jax.random.split(jax.random.key(0), 8)
    print("| n | orthogonal, LAPACK (ms / draw) | orthogonal, sweep.model.linalg | ratio |"
          " SVD on device (ms / matrix) | SVD on host | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in (64, 256, 1024):
        lapack = jax.jit(jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (n, n))))
        plain = jax.jit(jax.vmap(lambda k: streams.raw_weights(k, (n, n), "orthogonal")))
        matrices = jax.random.normal(jax.random.key(1), (32 if n < 1024 else 4, n, n))
        device_svd = jax.jit(jax.vmap(lambda a: jnp.linalg.svd(a, compute_uv=False)))
        host = np.asarray(matrices)
        for f in (lapack, plain):
            jax.block_until_ready(f(keys))
        jax.block_until_ready(device_svd(matrices))
        o_lapack, o_plain, s_device, s_host = _median_ms([
            lambda: jax.block_until_ready(lapack(keys)), lambda: jax.block_until_ready(plain(keys)),
            lambda: jax.block_until_ready(device_svd(matrices)), lambda: jacobian_singular_values(host),
        ], args.repeats)
        k = len(host)
        print(f"| {n} | {o_lapack / 8:.3f} | {o_plain / 8:.3f} | {o_plain / o_lapack:.2f} | "
              f"{s_device / k:.3f} | {s_host / k:.3f} | {s_host / s_device:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
