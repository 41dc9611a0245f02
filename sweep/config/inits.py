"""The registry of weight initialisers: which fan sets the variance, and which distribution.

An init name gives the fan that sets the variance and the distribution: ``fan_in``,
``fan_out``, ``fan_avg`` (normal), each also ``_uniform`` and ``_truncated`` (truncated normal
rescaled to the same variance), ``orthogonal``, and for convolutions ``delta_orthogonal``
(Xiao et al. 2018: an orthogonal matrix at the kernel's centre tap, zeros elsewhere), and for
residual networks ``fixup`` (Zhang et al. 2019: ``fan_in`` normal weights, each branch's first
layer scaled by L^{-1/2} and its last layer zero; ``sweep.model.network``). Weights
are raw draws of the distribution (``sweep.model.streams.raw_weights``: N(0, 1), U(-1, 1),
N(0, 1) truncated to [-2, 2], or a semi-orthogonal matrix) times the layer's ``scale`` and the
gain, so that Var[W] = gain² / fan, as ``jax.nn.initializers.variance_scaling`` draws them.
The fan modes of one distribution differ only in that scale, which is why they share one
compiled program.

Fans are those of ``jax.nn.initializers`` with the input axis -2 and the output axis -1: a
weight of shape ``(k, ..., k, c_in, c_out)`` (a conv kernel; a dense layer has no taps) has
fan_in = k^d · c_in and fan_out = k^d · c_out, He et al.'s n_l and n̂_l.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from sweep.errors import SpecError

FANS = ("fan_in", "fan_out", "fan_avg")
# The variance of each raw draw (jax.nn.initializers.variance_scaling's constants).
_RAW_VARIANCE = {"normal": 1.0, "uniform": 1.0 / 3.0, "truncated_normal": 0.87962566103423978**2,
                 "orthogonal": None, "delta_orthogonal": None}
_DISTRIBUTIONS = {"": "normal", "_uniform": "uniform", "_truncated": "truncated_normal"}

NAMES: tuple[str, ...] = tuple(f + s for f in FANS for s in _DISTRIBUTIONS) + ("orthogonal", "delta_orthogonal", "fixup")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` ``(*taps, n_in, n_out)``: the channels times the taps."""
    taps = math.prod(shape[:-2])
    return taps * shape[-2], taps * shape[-1]


class Init(NamedTuple):
    """A weight initialiser of unit scale.

    Attributes:
      name: the registry name, e.g. ``"fan_in_uniform"``.
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``, ``"orthogonal"`` or ``"delta_orthogonal"``.
      distribution: ``"normal"``, ``"uniform"``, ``"truncated_normal"`` (the names of
        ``jax.nn.initializers.variance_scaling``), ``"orthogonal"`` or ``"delta_orthogonal"``.
    """

    name: str
    mode: str
    distribution: str

    def fan(self, fan_in: int, fan_out: int) -> float:
        """The fan whose inverse is the weight variance at unit gain, of a dense layer."""
        return self.variance_fan((fan_in, fan_out))

    def variance_fan(self, shape: tuple[int, ...]) -> float:
        """The fan whose inverse is the variance of the weights of ``shape`` at unit gain.

        A semi-orthogonal matrix has unit-norm rows or columns, whichever are fewer, so its
        entries have variance 1 / (its larger side): the kernel is the matrix
        ``(k^d · c_in, c_out)`` for ``orthogonal`` (as ``jax.nn.initializers.orthogonal``
        reshapes it), and its centre tap ``(c_in, c_out)`` for ``delta_orthogonal``.
        """
        fan_in, fan_out = fans(shape)
        if self.mode == "fan_in":
            return float(fan_in)
        if self.mode == "fan_out":
            return float(fan_out)
        if self.mode == "fan_avg":
            return (fan_in + fan_out) / 2.0
        if self.mode == "orthogonal":
            return float(max(fan_in, shape[-1]))
        return float(max(shape[-2:]))

    def ratios(self, shape: tuple[int, ...]) -> tuple[float, float]:
        """``(forward, backward)``: the random weights feeding one output, and fed by one input,
        each over the fan (``variance_fan``).

        σ_w² times the first maps the input's second moment to the pre-activation's; σ_w²
        times the second maps the pre-activation gradient's to the input gradient's (He et
        al.'s eqs. 10 and 14: n_l/fan and n̂_l/fan). The centre tap alone is random under
        ``delta_orthogonal``.
        """
        fan = self.variance_fan(shape)
        taps = 1 if self.mode == "delta_orthogonal" else math.prod(shape[:-2])
        return taps * shape[-2] / fan, taps * shape[-1] / fan

    def scale(self, fan_in: int, fan_out: int) -> float:
        """``kernel_scale`` of a dense layer ``(fan_in, fan_out)``."""
        return self.kernel_scale((fan_in, fan_out))

    def kernel_scale(self, shape: tuple[int, ...]) -> float:
        """The factor that turns a raw draw of ``shape`` into a unit-gain weight of variance 1 / fan.

        1 for orthogonal weights, whose raw draw already has that variance.
        """
        raw = _RAW_VARIANCE[self.distribution]
        return 1.0 if raw is None else math.sqrt(1.0 / (raw * self.variance_fan(shape)))


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
    if name in ("orthogonal", "delta_orthogonal"):
        return Init(name, name, name)
    if name == "fixup":
        return Init(name, "fan_in", "normal")
    for fan in FANS:
        for suffix, distribution in _DISTRIBUTIONS.items():
            if name == fan + suffix:
                return Init(name, fan, distribution)
    raise SpecError(field, f"unknown init {name!r}; allowed: {', '.join(NAMES)}")
