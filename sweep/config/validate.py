"""Validation of spec fields: each helper returns the clean value or raises ``SpecError``
naming the field and what is allowed. Shared by every kind of spec."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from sweep.errors import SpecError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What a sweep's ``name`` may be: letters, digits, '.', '_' and '-', not starting with a symbol."""


def reject_unknown(raw: dict, allowed, where: str) -> None:
    """Raises for the first key of ``raw`` not in ``allowed``; ``where`` prefixes the field."""
    for key in raw:
        if key not in allowed:
            field = f"{where}.{key}" if where else key
            raise SpecError(field, f"unknown key; allowed: {', '.join(sorted(allowed))}")


def choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise SpecError(field, f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def integer(value: Any, field: str, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise SpecError(field, f"must be an integer >= {minimum}, got {value}")
    return value


def boolean(value: Any, field: str) -> bool:
    """``value`` if it is ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise SpecError(field, f"must be true or false, got {value!r}")
    return value


def grid(value: Any, grid_class):
    """The ``[grid]`` table as a ``grid_class`` (an instance of it is taken as it is)."""
    if isinstance(value, grid_class):
        return value
    if not isinstance(value, dict):
        raise SpecError("grid", f"must be a table of axes, got {type(value).__name__}")
    return grid_class.from_dict(value)


def string_list(value: Any, field: str) -> list[str]:
    """A non-empty list of names (a single name is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SpecError(field, f"must be a list of names, got {value!r}")
    if not value:
        raise SpecError(field, "must not be empty")
    return list(value)


def number_list(value: Any, field: str, integer: bool) -> list:
    """A list of numbers, or a range table ``{start, stop, num[, log]}`` (stop included)."""
    what = "integers" if integer else "numbers"
    if isinstance(value, dict):
        if integer:
            raise SpecError(field, f"must be a list of {what}, got a range table")
        value = _expand_range(value, field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SpecError(field, f"must be a list of {what} or a range {{start, stop, num}}, got {value!r}")
    if not value:
        raise SpecError(field, "must not be empty")
    for v in value:
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            raise SpecError(field, f"must be a list of {what}, got {value!r}")
    return [int(v) for v in value] if integer else [float(v) for v in value]


def _expand_range(table: dict, field: str) -> list[float]:
    reject_unknown(table, ("start", "stop", "num", "log"), field)
    for key in ("start", "stop", "num"):
        if key not in table:
            raise SpecError(f"{field}.{key}", "missing; a range needs start, stop and num")
    start, stop, num, log = table["start"], table["stop"], table["num"], table.get("log", False)
    for key, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpecError(f"{field}.{key}", f"must be a number, got {v!r}")
    num = integer(num, f"{field}.num", minimum=1)
    log = boolean(log, f"{field}.log")
    if log:
        if start <= 0 or stop <= 0:
            raise SpecError(field, f"a log range needs start > 0 and stop > 0, got {start}, {stop}")
        return [float(v) for v in np.geomspace(start, stop, num)]
    return [float(v) for v in np.linspace(start, stop, num)]


def unique(values: list, field: str) -> tuple:
    """``values`` as a tuple, if no value appears twice."""
    seen = set()
    for v in values:
        if v in seen:
            raise SpecError(field, f"values must be distinct, {v!r} appears twice")
        seen.add(v)
    return tuple(values)
