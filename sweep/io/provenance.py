"""What produced a dataset: its spec, package versions, device, source commit and time."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import subprocess
from pathlib import Path


def provenance(spec) -> dict[str, str]:
    """Attributes that say what produced a dataset: spec, versions, device, commit, time.

    ``device_kind`` names this process's default device and JAX's device count; a run on
    fewer devices or several processes overrides it (see ``sweep.devices.describe``).
    """
    packages = ("sweep", "jax", "jaxlib", "flax", "optax", "numpy", "xarray", "zarr")
    versions = {}
    for p in packages:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = "not installed"
    import jax

    device = jax.devices()[0]
    return {
        "title": f"sweep {spec.kind}: {spec.name}",
        "spec": spec.to_json(),
        "versions": json.dumps(versions, sort_keys=True),
        "device_kind": f"{device.platform}: {device.device_kind} x{jax.device_count()}",
        "matmul_precision": spec.precision,
        "git_commit": _git_commit(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=5)
        if result.returncode == 0:
            return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


