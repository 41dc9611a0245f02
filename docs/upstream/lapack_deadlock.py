"""Minimal reproduction: jaxlib's CPU LAPACK kernels deadlock XLA's intra-op thread pool.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python lapack_deadlock.py cholesky
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python lapack_deadlock.py qr

On a 2-core machine both hang on the first call, at 0% CPU, for ever; with one device
(``--xla_force_host_platform_device_count=1``) both print five lines and exit. Adding
``--xla_cpu_multi_thread_eigen=false`` does not help.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

kind = sys.argv[1] if len(sys.argv) > 1 else "cholesky"
networks, batch, width = 1024, 128, 256


def one(x):
    if kind == "qr":
        return jnp.linalg.qr(x.T)[0]
    gram = x @ x.T + 1e-3 * jnp.eye(batch)
    return jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(gram), x, lower=True)


mesh = jax.make_mesh((jax.device_count(),), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
f = jax.jit(jax.shard_map(jax.vmap(one), mesh=mesh, in_specs=P("d"), out_specs=P("d")))
x = jax.device_put(np.random.default_rng(0).standard_normal((networks, batch, width), np.float32),
                   NamedSharding(mesh, P("d")))
for i in range(5):
    print(i, float(f(x).sum()), flush=True)
