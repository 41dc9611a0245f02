"""The registry of weight initialisers: which fan sets the variance, and which distribution.

An init name gives the fan that sets the variance and the distribution: ``fan_in``,
``fan_out``, ``fan_avg`` (normal), each also ``_uniform`` and ``_truncated`` (truncated normal
rescaled to the same variance), and ``orthogonal``. Weights are raw draws of the distribution
(``sweep.model.streams.raw_weights``: N(0, 1), U(-1, 1), N(0, 1) truncated to [-2, 2], or a
semi-orthogonal matrix) times the layer's ``scale`` and the gain, so that Var[W] = gain² / fan,
as ``jax.nn.initializers.variance_scaling`` draws them. The fan modes of one distribution
differ only in that scale, which is why they share one compiled program.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from sweep.errors import SpecError

FANS = ("fan_in", "fan_out", "fan_avg")
# The variance of each raw draw (jax.nn.initializers.variance_scaling's constants).
_RAW_VARIANCE = {"normal": 1.0, "uniform": 1.0 / 3.0, "truncated_normal": 0.87962566103423978**2, "orthogonal": None}
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

    def scale(self, fan_in: int, fan_out: int) -> float:
        """The factor that turns a raw draw into a unit-gain weight of variance 1 / fan.

        1 for orthogonal weights, whose raw draw already has that variance.
        """
        raw = _RAW_VARIANCE[self.distribution]
        return 1.0 if raw is None else math.sqrt(1.0 / (raw * self.fan(fan_in, fan_out)))


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
