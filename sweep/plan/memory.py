"""Memory: the budget, the fixed micro-batch sizes, and the disk a result needs."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

from sweep.errors import SpecError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "t": 10**12, "tb": 10**12}
_MICRO_BATCH_BYTES = {"cpu": 64 * 2**20}  # per platform; accelerators get _ACCELERATOR_BYTES
_ACCELERATOR_BYTES = 2 * 2**30


def parse_memory(text: str | int | None) -> int:
    """Parses a memory budget such as ``"4GB"``, ``"512MiB"`` or a number of bytes.

    ``None`` or ``"auto"`` gives a quarter of the machine's total memory, at most 4 GB.

    Raises:
      SpecError: for ``memory`` when the text is not a positive size.
    """
    if text is None or text == "auto":
        import psutil

        return int(min(4 * 10**9, psutil.virtual_memory().total // 4))
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise SpecError("memory", f"must be a size such as 4GB, 512MB or 2GiB, got {text!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise SpecError("memory", f"must be positive, got {text!r}")
    return value


def device_share(memory: str | int | None, devices: int, platform_name: str | None = None) -> int:
    """The budget of one device: ``memory`` (see ``parse_memory``) on an accelerator, which has
    its own; on a CPU, whose devices share the host's memory, its share of ``devices``.

    Raises:
      SpecError: for ``memory`` as ``parse_memory``.
    """
    budget = parse_memory(memory)
    return max(1, budget // devices) if platform(platform_name) == "cpu" else budget


def platform(name: str | None = None) -> str:
    """``name``, or by default the JAX backend's (``cpu``, ``gpu``, ``tpu``)."""
    if name is None:
        import jax

        name = jax.default_backend()
    return name


def fitting_power_of_two(bytes_each: int, most: int, platform_name: str | None = None, reference_factor: int = 1) -> int:
    """The largest power of two of items, at most ``most``, that fit the platform's reference size.

    The reference (64 MiB on a CPU, 2 GiB on an accelerator) sizes micro-batches from what
    one item needs, never from the budget, since a network's numbers are bit-identical only
    within the same compiled shape (``sweep.kernel.batching``); at least one item.

    Args:
      bytes_each: memory of one item.
      most: the most items.
      platform_name: the JAX backend (default: the current one).
      reference_factor: a multiple of the platform's reference, for kernels whose per-item
        loops gain from more items at once.
    """
    reference = reference_factor * _MICRO_BATCH_BYTES.get(platform(platform_name), _ACCELERATOR_BYTES)
    fits = max(1, reference // bytes_each)
    return 2 ** int(math.log2(min(most, fits)))


def check_disk(need: int, out: str | Path) -> None:
    """Raises ``SpecError`` for ``out`` when ``need`` bytes would not fit the free disk space."""
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if need > free:
        raise SpecError("out", f"the result needs up to {need / 1e9:.2f} GB but {parent} has {free / 1e9:.2f} GB free")
