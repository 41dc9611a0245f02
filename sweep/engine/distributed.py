"""Several processes (hosts) running one sweep together: joining, and agreeing.

``initialize`` joins the processes with ``jax.distributed.initialize``; it must run before
anything else touches JAX's backends. Each process then computes its own tiles on its own
devices and writes them into one store on a shared file system, so the processes only need
to agree at a few points: that the store is ready (``share`` of process 0's verdict), that
every process has read which tiles are done (``barrier``), and how the run ended. These use
JAX's collectives over all processes' devices (gloo on CPU, NCCL on GPU, ICI/DCN on TPU).
"""

from __future__ import annotations

import jax
import numpy as np

_MESSAGE_BYTES = 1024


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to a multi-process run.

    Arguments left as ``None`` come from the environment: ``JAX_COORDINATOR_ADDRESS`` and
    JAX's cluster detection (SLURM, Open MPI, Cloud TPU pods, Kubernetes).

    Args:
      coordinator: ``host:port`` of process 0's coordination service.
      num_processes: how many processes take part.
      process_id: this process's index, from 0.
    """
    jax.distributed.initialize(coordinator, num_processes, process_id)


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier of this name."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def share(code: int, message: str = "") -> tuple[int, str]:
    """Process 0's ``(code, message)``, returned on every process.

    Args:
      code: a small integer; only process 0's counts.
      message: text of at most 1 KiB (UTF-8); only process 0's counts.

    Returns:
      Process 0's ``(code, message)``.
    """
    if jax.process_count() == 1:
        return code, message
    from jax.experimental import multihost_utils

    return _decode(np.asarray(multihost_utils.broadcast_one_to_all(_encode(code, message))))


def gather(code: int, message: str = "") -> list[tuple[int, str]]:
    """Every process's ``(code, message)``, by process index, returned on every process.

    Args:
      code: a small integer.
      message: text of at most 1 KiB (UTF-8).

    Returns:
      One ``(code, message)`` per process.
    """
    if jax.process_count() == 1:
        return [(code, message)]
    from jax.experimental import multihost_utils

    rows = np.asarray(multihost_utils.process_allgather(_encode(code, message)))
    return [_decode(row) for row in rows.reshape(jax.process_count(), -1)]


def _encode(code: int, message: str) -> np.ndarray:
    data = np.zeros(_MESSAGE_BYTES + 1, np.int32)
    raw = message.encode()[:_MESSAGE_BYTES]
    data[0] = code
    data[1 : 1 + len(raw)] = np.frombuffer(raw, np.uint8)
    return data


def _decode(data: np.ndarray) -> tuple[int, str]:
    return int(data[0]), bytes(data[1:].astype(np.uint8)).rstrip(b"\0").decode(errors="replace")
