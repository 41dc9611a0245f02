"""The golden regression sweeps: run them, and compare or rewrite their stored numbers.

    python tests/golden/golden.py            # compare with values.npz, say what moved
    python tests/golden/golden.py --write    # rewrite values.npz (commit it on its own, saying what moved)

Every variable of every golden sweep's dataset (measurements, theory, coordinates' values)
is recomputed in memory on the CPU and compared bit for bit, NaN where NaN, with one
exception: the float64 theory predictions (``theory_*``, no random numbers in them) may
differ by ``THEORY_ULPS`` units in the last place. XLA vectorises their float64 reductions
by the host CPU's vector width, so they round differently on different CPU generations:
the same code and pinned versions gave relative differences up to 5.2e-16 (a few ulp)
between an AVX2-era machine, where values.npz was written, and an AVX-512 one. Anything
larger is reported, like any other moved number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs.toml"
THEORY_ULPS = 16
VALUES = HERE / "values.npz"
VERSIONS = ("jax", "jaxlib", "numpy", "flax", "optax")


def specs() -> dict:
    """The golden specs by name, as dicts for ``sweep.Spec.from_dict``."""
    raw = tomllib.loads(SPECS.read_text())
    return {name: {"name": name, **table} for name, table in raw.items()}


def versions() -> dict[str, str]:
    import importlib.metadata

    return {p: importlib.metadata.version(p) for p in VERSIONS}


def compute(names=None) -> dict[str, np.ndarray]:
    """Each golden sweep's variables, keyed ``<sweep>/<variable>``."""
    import sweep

    out = {}
    for name, raw in specs().items():
        if names and name not in names:
            continue
        ds = sweep.run(sweep.load_spec(raw), progress=False)
        for variable in sorted(ds.variables):
            out[f"{name}/{variable}"] = np.asarray(ds[variable].values)
    return out


def load() -> tuple[dict[str, np.ndarray], dict]:
    """The recorded values and the versions they were recorded with."""
    with np.load(VALUES, allow_pickle=False) as f:
        values = {k: f[k] for k in f.files if k != "__versions__"}
        recorded = json.loads(str(f["__versions__"]))
    return values, recorded


def differences(new: dict, old: dict) -> list[str]:
    """One line per variable whose values differ: the largest relative difference."""
    lines = []
    sweeps = lambda values: {k.split("/", 1)[0] for k in values}
    for name in sorted(sweeps(new) ^ sweeps(old)):
        lines.append(f"{name}: {'a new sweep' if name in sweeps(new) else 'a sweep no longer golden'}")
    whole = sweeps(new) ^ sweeps(old)
    for key in sorted(k for k in set(new) | set(old) if k.split("/", 1)[0] not in whole):
        if key not in old or key not in new:
            lines.append(f"{key}: {'new' if key not in old else 'gone'}")
            continue
        a, b = new[key], old[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            lines.append(f"{key}: {b.dtype}{list(b.shape)} -> {a.dtype}{list(a.shape)}")
        elif a.dtype.kind in "fc":
            ulps = THEORY_ULPS if key.split("/", 1)[1].startswith("theory_") else 0
            if not _within_ulps(a, b, ulps):
                both = np.isfinite(a) & np.isfinite(b)
                scale = np.maximum(np.abs(b), np.finfo(np.float64).tiny)
                worst = float(np.max(np.abs(a - b)[both] / scale[both])) if both.any() else float("nan")
                lines.append(f"{key}: largest relative difference {worst:.3g}"
                             + ("" if np.array_equal(np.isnan(a), np.isnan(b)) else ", NaNs moved"))
        elif not np.array_equal(a, b):
            lines.append(f"{key}: values differ")
    return lines


def _within_ulps(a: np.ndarray, b: np.ndarray, ulps: int) -> bool:
    """Equal NaN pattern, and every finite value within ``ulps`` spacings of the recorded one."""
    if not ulps:
        return np.array_equal(a, b, equal_nan=True)
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(np.isinf(a), np.isinf(b)):
        return False
    finite = np.isfinite(b)
    if not np.array_equal(a[~finite & ~np.isnan(b)], b[~finite & ~np.isnan(b)]):
        return False
    return bool(np.all(np.abs(a[finite] - b[finite]) <= ulps * np.spacing(np.abs(b[finite]))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite values.npz")
    args = parser.parse_args(argv)
    new = compute()
    if VALUES.exists():
        old, recorded = load()
        moved = differences(new, old)
        print("\n".join(moved) if moved else "no golden number moved")
        if recorded != versions():
            print(f"recorded with {recorded}, now {versions()}")
    if args.write:
        np.savez_compressed(VALUES, __versions__=np.asarray(json.dumps(versions(), sort_keys=True)), **new)
        print(f"wrote {VALUES} ({VALUES.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(main())
