"""The statistics kernel: many networks drawn, run forward and backward, and reduced per layer.

Modules: ``stats`` (the kernel itself: ``Probe``, ``make_kernel``), ``passes`` (one network's
forward and backward passes), ``scaled_copies`` (the gains of one draw as rescaled copies),
``scale`` (exact power-of-two scale tracking), ``results`` (what the kernel returns and its
float64 finish on the host), ``batching`` (fixed micro-batches run with ``lax.map``),
``devices`` (several local devices), ``reference`` (the same statistics by plain autodiff, for
checks).
"""

from sweep.kernel.results import BACKWARD_STATS, FORWARD_STATS, LAYER_STATS, NetworkStats, finish
from sweep.kernel.stats import Probe, architecture_kernel, make_kernel

__all__ = ["BACKWARD_STATS", "FORWARD_STATS", "LAYER_STATS", "NetworkStats", "Probe", "architecture_kernel", "finish",
           "make_kernel"]
