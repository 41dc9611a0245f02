"""The registry of parametrisations: how init, forward multipliers and learning rates scale with width.

A parametrisation says, for each trained tensor of a network, three numbers relative to the
standard parametrisation at the same width:

* ``init``: the standard deviation of the *effective* weights a·ω (what the layer multiplies
  its input by), as a factor of the standard one, gain · scale_l (``sweep.config.inits``);
* ``multiplier``: a, the forward multiplier: the layer computes (a·ω) x, ω being the trained
  parameter, drawn with standard deviation ``init`` · standard / a;
* ``learning_rate``: the factor on the optimizer's step of ω (SGD and momentum, or Adam).

The factors are set by the width multipliers m_in = fan_in / base fan_in and m_out =
fan_out / base fan_out of each tensor, the base being the same network at ``base_width``
(``Spec.base_width``, ``TrainSpec.base_width``); a dimension that does not grow with width (the input features,
the outputs) has m = 1. At the base width every parametrisation is the standard one.

Tensor Programs V (Yang, Hu et al. 2021, Table 3; the abc-parametrisations of Tensor
Programs IV), relative to a base width, for the tensor roles ``input`` (the first weight
layer, or a residual network's input map), ``hidden``, ``readout`` and ``bias`` (every
bias, including the readout's):

===============  ==========  ==========  ===================  ==================
parametrisation  tensor      init        SGD learning rate    Adam learning rate
===============  ==========  ==========  ===================  ==================
standard         all         1           1                    1
ntk              weights     1           1 (a = m_in^-1/2)    1 (a = m_in^-1/2)
ntk              bias        1           1                    1
mup              input       1           m_out                1
mup              hidden      1           1                    1 / m_in
mup              readout     m_in^-1/2   1 / m_in             1 / m_in
mup              bias        1           m_out                1
===============  ==========  ==========  ===================  ==================

μP's readout init variance 1/fan_in² is the standard 1/fan_in times 1/m_in. The NTK
parametrisation trains ω of variance m_in times the standard one behind a multiplier
a = m_in^-1/2, so that its effective weights have the standard law at every width while
their SGD step shrinks like 1/m_in (Adam's like m_in^-1/2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from sweep.errors import SpecError

TABLE = ("factors relative to the standard parametrisation at the same width, m_in = fan_in / base fan_in, "
         "m_out = fan_out / base fan_out (Tensor Programs V, Table 3): standard: all 1; ntk: weights behind a "
         "multiplier a = m_in^-1/2 with ω of m_in times the standard variance, biases standard, learning rates 1; "
         "mup: init of the readout m_in^-1/2 (others 1); SGD learning rate input m_out, hidden 1, readout 1/m_in, "
         "biases m_out; Adam learning rate input 1, hidden 1/m_in, readout 1/m_in, biases 1")
"""The table in one line, as stored in a training dataset's attributes."""

ROLES: tuple[str, ...] = ("input", "hidden", "readout", "bias")
"""The roles a trained tensor can have."""


class LayerRule(NamedTuple):
    """One tensor's factors relative to the standard parametrisation.

    Attributes:
      init: the effective weights' standard deviation, as a factor of the standard one.
      multiplier: the forward multiplier a.
      learning_rate: the factor on the learning rate of the trained parameter ω.
    """

    init: float = 1.0
    multiplier: float = 1.0
    learning_rate: float = 1.0


def _standard(role: str, m_in: float, m_out: float, adam: bool) -> LayerRule:
    return LayerRule()


def _ntk(role: str, m_in: float, m_out: float, adam: bool) -> LayerRule:
    if role == "bias":
        return LayerRule()
    return LayerRule(multiplier=1.0 / math.sqrt(m_in))


def _mup(role: str, m_in: float, m_out: float, adam: bool) -> LayerRule:
    if role == "readout":
        return LayerRule(init=1.0 / math.sqrt(m_in), learning_rate=1.0 / m_in)
    if adam:
        return LayerRule(learning_rate=1.0 / m_in if role == "hidden" else 1.0)
    return LayerRule(learning_rate=1.0 if role == "hidden" else m_out)


_PARAMETRIZATIONS = {"standard": _standard, "ntk": _ntk, "mup": _mup}

NAMES: tuple[str, ...] = tuple(_PARAMETRIZATIONS)


def check(name: str, field: str = "parametrization") -> str:
    """Returns ``name`` if it is a registered parametrisation, else raises ``SpecError``."""
    if name not in _PARAMETRIZATIONS:
        raise SpecError(field, f"unknown parametrization {name!r}; allowed: {', '.join(NAMES)}")
    return name


def rule(name: str, role: str, m_in: float, m_out: float, optimizer: str = "sgd") -> LayerRule:
    """A tensor's factors under a parametrisation.

    Args:
      name: a registered parametrisation.
      role: one of ``ROLES``.
      m_in: fan_in / base fan_in (1 for a bias).
      m_out: fan_out / base fan_out.
      optimizer: ``"sgd"``, ``"momentum"`` (SGD's rules) or ``"adam"``.

    Returns:
      The ``LayerRule``.
    """
    if role not in ROLES:
        raise ValueError(f"unknown tensor role {role!r}; allowed: {', '.join(ROLES)}")
    return _PARAMETRIZATIONS[check(name)](role, float(m_in), float(m_out), optimizer == "adam")


def weight_rules(name: str, shapes, base_shapes, optimizer: str = "sgd",
                 reads_data: bool = True) -> tuple[tuple[LayerRule, LayerRule], ...]:
    """Each weight layer's factors and its bias's, from its shape and the same layer's at the base width.

    Args:
      name: a registered parametrisation.
      shapes: the weight layers' shapes, ``(..., fan_in, fan_out)`` with a conv kernel's taps
        first (the taps cancel in the ratios).
      base_shapes: the same layers' shapes at the base width.
      optimizer: as for ``rule``.
      reads_data: whether the first layer reads the data, whose dimension does not grow with
        width (Tensor Programs V's input weights: a trained network's first layer); ``False``
        for a statistics network, whose input has ``width`` dimensions, so that every layer
        is a hidden one.

    Returns:
      ``(weight rule, bias rule)`` per layer.
    """
    out = []
    for i, (shape, base) in enumerate(zip(shapes, base_shapes)):
        m_in, m_out = shape[-2] / base[-2], shape[-1] / base[-1]
        role = "input" if i == 0 and reads_data else "hidden"
        out.append((rule(name, role, m_in, m_out, optimizer), rule(name, "bias", 1.0, m_out, optimizer)))
    return tuple(out)


def readout_init(name: str, width: int, base_width: int) -> float:
    """The readout's init factor (its standard deviation relative to the standard one) when it
    reads ``width`` units, ``base_width`` at the base width: μP's m_in^-1/2, else 1."""
    return rule(name, "readout", width / base_width, 1.0).init
