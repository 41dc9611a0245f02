"""What one network costs inside a job: device memory (which sizes micro-batches and calls)
and floating-point work (which sets the watchdog's deadlines and the share of each process).

Every estimate counts float32 arrays and multiplies them by a workspace factor for XLA's
temporaries; each kind of job has its own term for what it keeps beside the parameters.
"""

from __future__ import annotations

import math

from sweep.model import network
from sweep.model.network import Architecture

WORKSPACE_FACTOR = 2.0  # XLA's temporaries beside the arrays counted
_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
EVAL_SLICE = 512
"""The most examples a trained network evaluates at once (the evaluation loops over slices)."""


def conditional_layers(arch: Architecture, probe) -> list[bool]:
    """For each layer of ``arch`` (an architecture or program), whether ``probe`` runs it
    conditionally (``network.conditional_layer`` at the probe's ``conditional_batch``)."""
    batch = probe.conditional_batch
    return [batch is not None and network.conditional_layer(arch, shape, batch) for shape in arch.shapes]


def stats_bytes(arch: Architecture, probe) -> int:
    """An upper estimate of the device memory one network needs inside the statistics kernel.

    Counts the weights and biases (kept for the backward pass), the forward residuals
    ``x_{l-1}`` and ``z_l`` of every layer, the largest per-layer temporaries (one weight
    gradient, a few activations) and the Jacobian's tangents. With common random numbers the
    weights are shared by the ``probe.gains_per_draw`` networks of a draw; where these are
    scaled copies of one network (``Probe.runs_scaled_copies``), everything but the per-gain
    outputs is shared, and the backward pass carries two cotangents.
    """
    shapes, b = arch.shapes, probe.batch * arch.positions  # a conv net's rows: every position of the batch
    taps = math.prod(arch.weight_shapes[0][:-2])
    # A conditional layer keeps no weights but its basis and draw G (``sweep.model.conditional``).
    lazy = conditional_layers(arch, probe)
    weights = sum(o + (0 if c else taps * i * o) for (i, o), c in zip(shapes, lazy))
    residuals = b * sum((i + o) * (2 if c else 1) for (i, o), c in zip(shapes, lazy))
    drawn = [taps * i * o for (i, o), c in zip(shapes, lazy) if not c]
    temporaries = max(drawn, default=0) + 6 * b * max(arch.widths) + b * probe.outputs + (4 * b * b if any(lazy) else 0)
    jacobian = 0
    if probe.jacobian:
        n0, widest = arch.widths[0], max(arch.widths)
        jacobian = 4 * n0 * widest + n0 * arch.widths[-1]
    if probe.runs_scaled_copies(arch):
        shared = weights + residuals + 2 * temporaries + jacobian
        return int(4 * WORKSPACE_FACTOR * shared / probe.gains_per_draw)
    shared = weights / probe.gains_per_draw
    return int(4 * WORKSPACE_FACTOR * (shared + residuals + temporaries + jacobian))


def stats_flops(arch: Architecture, probe) -> float:
    """The GEMM FLOPs of one network: forward, backward and weight gradient, and the Jacobian's tangents
    (a conv layer's at every position); a conditional layer's B × B × n products instead of its GEMMs."""
    taps, b = math.prod(arch.weight_shapes[0][:-2]), probe.batch
    if probe.conditional_batch is not None:  # about ten B × B × n products per conditional layer
        shapes = list(zip(arch.shapes, conditional_layers(arch, probe)))
        lazy = sum(20 * b * b * (i + o) for (i, o), c in shapes if c)
        drawn = sum(2 * taps * i * o for (i, o), c in shapes if not c)
        return float(3 * b * arch.positions * drawn + lazy)
    layer = sum(2 * taps * i * o for i, o in arch.shapes)
    jacobian = arch.widths[0] * layer if probe.jacobian else 0
    return float(3 * b * arch.positions * layer + jacobian)


def _trained_layers(arch: Architecture, features: int) -> list[tuple[int, ...]]:
    """The weight shapes a trained network has: a residual one's input map first."""
    if not arch.is_residual:
        return list(arch.weight_shapes)
    return [arch.input_map_shape(features)] + list(arch.weight_shapes)


def train_bytes(arch: Architecture, outputs: int, batch: int, optimizer: str, eval_slice: int = EVAL_SLICE,
                features: int = 0, first_step: bool = False) -> int:
    """An upper estimate of the device memory one network needs while it trains.

    Counts the parameters, their gradients, updates and the optimizer's slots (twice for the
    scan's carry in and out), the forward residuals and cotangents of a mini-batch (a conv
    layer's at every position), or a slice of the evaluation if larger. With ``first_step``
    (Hessian-vector products): three more parameter-sized vectors, and a mini-batch's
    residuals and tangents twice over (forward-over-reverse).
    """
    shapes = _trained_layers(arch, features)
    params = sum(math.prod(s) + s[-1] for s in shapes) + arch.readout_width * outputs + outputs
    state = params * (2 * (1 + _OPTIMIZER_SLOTS[optimizer]) + 2 + (3 if first_step else 0))
    rows = arch.positions
    step = (2 * batch * rows * sum(s[-2] + s[-1] for s in shapes) + 3 * batch * outputs) * (2 if first_step else 1)
    evaluation = eval_slice * (3 * rows * max(arch.widths) + 2 * outputs)
    return int(4 * WORKSPACE_FACTOR * (state + max(step, evaluation)))


def train_flops(arch: Architecture, outputs: int, batch: int, steps: int, evaluations: int, examples: int,
                features: int = 0) -> float:
    """The GEMM FLOPs of training one network: its steps and its evaluations of both splits."""
    layer = sum(2 * math.prod(s) for s in _trained_layers(arch, features)) * arch.positions
    layer += 2 * arch.readout_width * outputs
    return float(3 * batch * layer * steps + evaluations * examples * layer)
