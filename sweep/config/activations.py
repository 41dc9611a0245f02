"""The registry of activation functions, parsed from names such as ``"leaky_relu(0.2)"``.

Each entry is an elementwise ``jax`` function plus the facts that the kernel and the theory
need about it: whether it is positively homogeneous (so that the forward signal can be
rescaled exactly by powers of two) and where it has kinks (so that quadrature can be split).
Names and facts need no JAX; the function is built, with JAX, when it is first asked for.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

from sweep.errors import SpecError


class Activation(NamedTuple):
    """An activation function and what the engine needs to know about it.

    Attributes:
      name: canonical name, e.g. ``"relu"`` or ``"leaky_relu(0.2)"``; used as coordinate.
      family: the registered family, e.g. ``"leaky_relu"``.
      params: the family's parameters, e.g. ``(0.2,)``.
      homogeneous: ``fn(c * z) == c * fn(z)`` for every ``c > 0``.
      kinks: points where ``fn`` is not smooth (its derivative jumps).
      slope_from_output: ``fn'(z) == fn'(c * fn(z))`` for every z and ``c > 0``: true of a
        homogeneous ``fn`` that keeps the sign of z or sends it to 0 (relu, leaky relu with a
        non-negative slope, linear). The backward pass can then take the slope at a layer's
        (scaled) output, which it holds anyway, instead of keeping the pre-activation.
    """

    name: str
    family: str
    params: tuple[float, ...]
    homogeneous: bool
    kinks: tuple[float, ...]
    slope_from_output: bool = False

    @property
    def fn(self) -> Callable:
        """The elementwise ``jax`` function, any shape to the same shape."""
        return _function(self.family, self.params)


@functools.cache
def _function(family: str, params: tuple[float, ...]) -> Callable:
    import jax
    import jax.numpy as jnp

    def identity(z):
        return z

    factories = {
        "relu": lambda: jax.nn.relu,
        "leaky_relu": lambda slope: functools.partial(jax.nn.leaky_relu, negative_slope=slope),
        "linear": lambda: identity,
        "tanh": lambda: jnp.tanh,
        "gelu": lambda: functools.partial(jax.nn.gelu, approximate=False),
        "silu": lambda: jax.nn.silu,
        "selu": lambda: jax.nn.selu,
        "elu": lambda alpha: functools.partial(jax.nn.elu, alpha=alpha),
        "sigmoid": lambda: jax.nn.sigmoid,
        "erf": lambda: jax.scipy.special.erf,
    }
    return factories[family](*params)


# name -> (default parameters, homogeneous, kinks)
_FAMILIES: dict[str, tuple[tuple[float, ...], bool, tuple[float, ...]]] = {
    "relu": ((), True, (0.0,)),
    "leaky_relu": ((0.01,), True, (0.0,)),
    "linear": ((), True, ()),
    "tanh": ((), False, ()),
    "gelu": ((), False, ()),
    "silu": ((), False, ()),
    "selu": ((), False, (0.0,)),
    "elu": ((1.0,), False, (0.0,)),
    "sigmoid": ((), False, ()),
    "erf": ((), False, ()),
}

# The homogeneous families whose slope at z equals their slope at any positive multiple of
# φ(z): φ keeps the sign of z or sends it to 0. name -> test of the parameters.
_SLOPE_FROM_OUTPUT: dict[str, Callable[..., bool]] = {
    "relu": lambda: True,
    "leaky_relu": lambda slope: slope >= 0,
    "linear": lambda: True,
}

NAMES: tuple[str, ...] = tuple(_FAMILIES)

_PATTERN = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*)\s*\))?\s*$")


@functools.cache
def get(name: str, field: str = "activation") -> Activation:
    """Looks up an activation by name.

    Args:
      name: a registered name, optionally with parameters: ``"relu"``, ``"leaky_relu(0.2)"``,
        ``"elu(0.5)"``. A parametrised family without parameters takes its default.
      field: the spec field reported in errors.

    Returns:
      The ``Activation``; its ``name`` is canonical (``"leaky_relu"`` becomes
      ``"leaky_relu(0.01)"``).

    Raises:
      SpecError: the name is not registered or its parameters do not fit.
    """
    allowed = ", ".join(f"{n}({', '.join(map(str, d))})" if d else n for n, (d, _, _) in _FAMILIES.items())
    match = _PATTERN.match(name) if isinstance(name, str) else None
    if match is None or match.group(1) not in _FAMILIES:
        raise SpecError(field, f"unknown activation {name!r}; allowed: {allowed}")
    family, arg_text = match.groups()
    defaults, homogeneous, kinks = _FAMILIES[family]
    if arg_text is None or arg_text.strip() == "":
        params = defaults
    else:
        try:
            params = tuple(float(a) for a in arg_text.split(","))
        except ValueError:
            raise SpecError(field, f"parameters of {name!r} must be numbers; allowed: {allowed}") from None
    if len(params) != len(defaults):
        raise SpecError(field, f"{family} takes {len(defaults)} parameter(s), got {name!r}; allowed: {allowed}")
    canonical = family + (f"({', '.join(repr(p) for p in params)})" if params else "")
    # A homogeneous fn is linear on each side of 0, so its slope is set by the sign of z alone.
    slope_from_output = family in _SLOPE_FROM_OUTPUT and _SLOPE_FROM_OUTPUT[family](*params)
    return Activation(canonical, family, params, homogeneous, kinks, slope_from_output)
