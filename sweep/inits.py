"""The registry of weight initialisers, built on ``jax.nn.initializers``.

An init name gives the fan that sets the variance and the distribution: ``fan_in``,
``fan_out``, ``fan_avg`` (normal), each also ``_uniform`` and ``_truncated`` (truncated normal
rescaled to the same variance), and ``orthogonal``. The registry samples weights of unit
scale; the kernel multiplies them by the gain, so that Var[W] = gain² / fan. Orthogonal
matrices are ``jax.nn.initializers.orthogonal``'s; on CPUs they are factorised by
``sweep.linalg`` instead of jaxlib's LAPACK QR, which can deadlock XLA's thread pool (the
same matrices up to float32 rounding).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax

from sweep import linalg
from sweep.errors import SpecError

_FANS = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = {"": "normal", "_uniform": "uniform", "_truncated": "truncated_normal"}

NAMES: tuple[str, ...] = tuple(f + s for f in _FANS for s in _DISTRIBUTIONS) + ("orthogonal",)


class Init(NamedTuple):
    """A weight initialiser of unit scale.

    Attributes:
      name: the registry name, e.g. ``"fan_in_uniform"``.
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``, or ``"orthogonal"``.
      distribution: ``"normal"``, ``"uniform"``, ``"truncated_normal"`` or ``"orthogonal"``.
      sample: ``sample(key, (fan_in, fan_out)) -> (fan_in, fan_out)`` array of weights with
        variance ``1 / fan`` (``jax.nn.initializers``' convention ``in_axis=-2``).
    """

    name: str
    mode: str
    distribution: str
    sample: Callable[[jax.Array, tuple[int, int]], jax.Array]

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


def _orthogonal(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """``jax.nn.initializers.orthogonal()``, without LAPACK on CPUs (see ``sweep.linalg``)."""
    if jax.default_backend() == "cpu":
        return linalg.orthogonal(key, shape)
    return jax.nn.initializers.orthogonal()(key, shape)


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
        return Init(name, "orthogonal", "orthogonal", _orthogonal)
    for fan in _FANS:
        for suffix, distribution in _DISTRIBUTIONS.items():
            if name == fan + suffix:
                sampler = jax.nn.initializers.variance_scaling(1.0, fan, distribution)
                return Init(name, fan, distribution, sampler)
    raise SpecError(field, f"unknown init {name!r}; allowed: {', '.join(NAMES)}")
