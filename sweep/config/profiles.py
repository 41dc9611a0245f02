"""The registry of width profiles: the hidden widths n_1..n_L as a function of ``width`` = n.

The input dimension n_0 is always n. Unequal widths are what make ``fan_in``, ``fan_out``
and ``fan_avg`` really differ (He et al.'s forward-versus-backward argument).
"""

from __future__ import annotations

from collections.abc import Callable

from sweep.errors import SpecError


def constant(width: int, depth: int) -> tuple[int, ...]:
    """n, n, n, ..."""
    return (width,) * depth


def alternating(width: int, depth: int) -> tuple[int, ...]:
    """n, 2n, n, 2n, ..."""
    return tuple(width if l % 2 else 2 * width for l in range(1, depth + 1))


def taper(width: int, depth: int) -> tuple[int, ...]:
    """From n linearly down to n/4 over the depth, in steps of n/8 (so runs of equal width)."""
    step = max(1, width // 8)
    last = max(step, width // 4)
    if depth == 1:
        return (width,)
    widths = []
    for l in range(depth):
        target = width - (width - last) * l / (depth - 1)
        widths.append(max(step, step * round(target / step)))
    return tuple(widths)


_PROFILES: dict[str, Callable[[int, int], tuple[int, ...]]] = {
    "constant": constant,
    "alternating": alternating,
    "taper": taper,
}

NAMES: tuple[str, ...] = tuple(_PROFILES)


def check(name: str, field: str = "profile") -> str:
    """Returns ``name`` if it is a registered profile, else raises ``SpecError``."""
    if name not in _PROFILES:
        raise SpecError(field, f"unknown profile {name!r}; allowed: {', '.join(NAMES)}")
    return name


def widths(name: str, width: int, depth: int) -> tuple[int, ...]:
    """The layer widths of a network.

    Args:
      name: a registered profile.
      width: the base width n (also the input dimension).
      depth: the number of hidden layers L.

    Returns:
      ``(n_0, n_1, ..., n_L)``: the input dimension followed by the L hidden widths.
    """
    return (width,) + _PROFILES[check(name)](width, depth)
