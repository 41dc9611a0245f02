"""The registry of weight initialisers: which fan sets the variance, and which distribution.

An init name gives the fan that sets the variance and the distribution: ``fan_in``,
``fan_out``, ``fan_avg`` (normal), each also ``_uniform`` and ``_truncated`` (truncated normal
rescaled to the same variance), and ``orthogonal``. Weights are drawn at unit scale
(``sweep.model.streams.weights``, with ``jax.nn.initializers``) and the kernel multiplies them
by the gain, so that Var[W] = gain² / fan.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from sweep.errors import SpecError

FANS = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = {"": "normal", "_uniform": "uniform", "_truncated": "truncated_normal"}

NAMES: tuple[str, ...] = tuple(f + s for f in FANS for s in _DISTRIBUTIONS) + ("orthogonal",)


class Init(NamedTuple):
    """A weight initialiser of unit scale.

    Attributes:
      name: the registry name, e.g. ``"fan_in_uniform"``.
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``, or ``"orthogonal"``.
      distribution: ``"normal"``, ``"uniform"``, ``"truncated_normal"`` (the names of
        ``jax.nn.initializers.variance_scaling``) or ``"orthogonal"``.
    """

    name: str
    mode: str
    distribution: str

    def fan(self, fan_in: int, fan_out: int) -> float:
        """The fan whose inverse is the weight variance at unit gain."""
        if self.mode == "fan_in":
            return float(fan_in)
        if self.mode == "fan_out":
            return float(fan_out)
        if self.mode == "fan_avg":
            return (fan_in + fan_out) / 2.0
        # A semi-orthogonal (fan_in, fan_out) matrix has unit-norm rows or columns,
        # whichever are fewer, so its entries have variance 1 / max(fan_in, fan_out).
        return float(max(fan_in, fan_out))


@functools.cache
def get(name: str, field: str = "init") -> Init:
    """Looks up an initialiser by name.

    Args:
      name: one of ``NAMES``.
      field: the spec field reported in errors.

    Returns:
      The ``Init``.

    Raises:
      SpecError: the name is not registered.
    """
    if name == "orthogonal":
        return Init(name, "orthogonal", "orthogonal")
    for fan in FANS:
        for suffix, distribution in _DISTRIBUTIONS.items():
            if name == fan + suffix:
                return Init(name, fan, distribution)
    raise SpecError(field, f"unknown init {name!r}; allowed: {', '.join(NAMES)}")
