"""Init-time statistics of the trained networks, from the statistics kernel itself.

Each initial network (one per statistics-grid point and seed; the learning rates share it)
is measured by ``sweep.kernel`` with its own key, gain and bias std and the trained
architecture. The kernel draws its own inputs: ``batch`` i.i.d. N(0, 1) vectors of the
input dimension, not training examples, and uses its ``"mse"`` probe loss with random
Gaussian targets and a readout of the training task's dimension; the readout is the one the
trained network starts with.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from sweep import kernel
from sweep import plan as stats_plan
from sweep.kernel import LAYER_STATS, Probe
from sweep.train.plan import Group, key_indices
from sweep.train.spec import TrainSpec

NAMES = LAYER_STATS + ("overflow",)
"""The statistics kept, stored as ``init_<name>``."""


def probe(spec: TrainSpec, outputs: int) -> Probe:
    """The kernel's measurement settings for a training spec's networks."""
    return Probe(spec.batch, "mse", outputs, spec.precision, False)


def measure(spec: TrainSpec, groups: tuple[Group, ...], outputs: int, memory_bytes: int) -> dict[str, np.ndarray]:
    """Runs the statistics kernel on every initial network.

    Args:
      spec: the training spec.
      groups: the training plan's groups (their architectures).
      outputs: the readout's dimension.
      memory_bytes: the device memory budget for one kernel call.

    Returns:
      ``LAYER_STATS`` (float64) and ``overflow`` (bool), each of shape
      ``stats grid shape + (seeds, max depth)``, NaN (False) beyond a network's depth.
    """
    the_probe = probe(spec, outputs)
    g = spec.grid
    shape = g.stats.shape + (spec.seeds, max(g.depth))
    arrays = {k: np.full(shape, np.nan) for k in LAYER_STATS}
    arrays["overflow"] = np.zeros(shape, bool)
    local_shape = (len(g.gain), len(g.bias_std), spec.seeds)
    n = math.prod(local_shape)
    gains = np.asarray(g.gain, np.float32)
    bias_stds = np.asarray(g.bias_std, np.float32)
    for group in groups:
        # The same micro-batches as a stats sweep, so the numbers equal a stats sweep's bit for bit
        # whatever the training budget; one micro-batch (at most the kernel's reference size, a few
        # tens of MB) is the floor of a call even when the training budget is smaller.
        micro = stats_plan.micro_batch(group.arch, the_probe)
        need = micro * stats_plan.bytes_per_network(group.arch, the_probe)
        size = micro * max(1, min(math.ceil(n / micro), memory_bytes // need))
        kern = kernel.make_kernel(group.arch, the_probe, micro)
        for start in range(0, n, size):
            local = np.arange(start, min(start + size, n))
            valid = local.size
            local = np.concatenate([local, np.repeat(local[-1:], size - valid)])
            gi, bi, si = np.unravel_index(local, local_shape)
            raw = kern(
                jnp.uint32(spec.rng_seed),
                jnp.asarray(key_indices(spec, group.position, gi, bi, si), jnp.uint32),
                jnp.asarray(gains[gi]),
                jnp.asarray(bias_stds[bi]),
            )
            stats = kernel.finish(raw)
            depth = group.arch.depth
            for name in NAMES:
                arrays[name][group.position][gi[:valid], bi[:valid], si[:valid], :depth] = stats[name][:valid]
    return arrays
