"""What a sweep is: specs, their validation and the registries, without JAX.

    >>> from sweep import config
    >>> spec = config.load_spec("analysis/specs/quick.toml")   # a Spec, or a TrainSpec for kind = "train"

Modules: ``spec`` (statistics specs and the grid), ``train_spec`` (training specs),
``validate`` (field checks), and the registries ``activations``, ``inits`` and ``profiles``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.config.spec import ALL_GRID_AXES, GRID_AXES, STATIC_AXES, Grid, Spec, read_toml
from sweep.config.train_spec import TRAIN_AXES, TrainGrid, TrainSpec
from sweep.errors import SpecError


def load_spec(source: str | Path | dict[str, Any]) -> Spec | TrainSpec:
    """Reads and validates a spec of either kind.

    Args:
      source: the path of a TOML spec file, or a dict shaped like one.

    Returns:
      A ``TrainSpec`` when ``kind = "train"``, else a ``Spec``.

    Raises:
      SpecError: the file is missing or not TOML, or a field is bad.
    """
    raw = source if isinstance(source, dict) else read_toml(source)
    if not isinstance(raw, dict):
        raise SpecError("spec", f"must be a table of keys, got {type(raw).__name__}")
    return (TrainSpec if raw.get("kind") == "train" else Spec).from_dict(raw)


__all__ = ["ALL_GRID_AXES", "GRID_AXES", "STATIC_AXES", "TRAIN_AXES", "Grid", "Spec", "TrainGrid", "TrainSpec", "load_spec",
           "read_toml"]
