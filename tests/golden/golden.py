"""The golden regression sweeps: run them, and compare or rewrite their stored numbers.

    python tests/golden/golden.py                  # compare with values.npz, say what moved
    python tests/golden/golden.py --write          # rewrite values.npz (commit it on its own, saying what moved)
    python tests/golden/golden.py --write conv     # recompute and rewrite the named sweeps only

Every variable of every golden sweep's dataset (measurements, theory, coordinates' values)
is recomputed in memory on the CPU and compared with values.npz.

On the host that recorded values.npz (the same CPU vendor, family, model and vector
extensions: ``host()``), the comparison is bit for bit, NaN where NaN, with one exception:
the float64 theory predictions (``theory_*``, no random numbers in them) may differ by
``THEORY_ULPS`` units in the last place. XLA vectorises their float64 reductions by the host
CPU's vector width, so they round differently on different CPU generations: the same code
and pinned versions gave relative differences up to 5.2e-16 (a few ulp) between an AVX2-era
machine and an AVX-512 one.

On any other host the float32 measurements round differently too: XLA's CPU code and its
matrix-product kernels are chosen for the host (vector width, cache sizes), which changes
the order of sums. The same code and pinned versions, recorded on an earlier host and rerun
on an AMD EPYC (family 25, AVX2) one, gave differences up to 2.8e-6 of a statistics variable's
root mean square and 9.4e-5 of a training variable's (the lr = 1000 teacher runs, where
rounding grows step by step); theory up to 1e-13 relative. There, a float variable passes
when its NaN and infinity pattern is the recorded one and every value is within
``FOREIGN_TOLERANCE[kind]`` of the variable's recorded root mean square (about 20 and 10
times those differences); every other variable is still compared exactly. Anything larger is
reported, like any other moved number.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs.toml"
THEORY_ULPS = 16
VALUES = HERE / "values.npz"
VERSIONS = ("jax", "jaxlib", "numpy", "flax", "optax")
FOREIGN_TOLERANCE = {"stats": 2.0**-14, "train": 2.0**-10}
"""On a host other than the recording one: the largest difference of a float variable, as a
fraction of its recorded root mean square, by the kind of its sweep."""
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name")
_VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")


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


def host() -> dict[str, str]:
    """What decides how XLA's CPU code rounds: the machine, the CPU's identity and its vector extensions."""
    out = {"machine": platform.machine()}
    try:
        text = open("/proc/cpuinfo").read().split("\n\n")[0]
    except OSError:
        return {**out, "processor": platform.processor()}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    out.update({k: fields.get(k, "") for k in _CPU_FIELDS})
    flags = set(fields.get("flags", "").split())
    out["vector"] = " ".join(f for f in _VECTOR_FLAGS if f in flags)
    return out


def load() -> tuple[dict[str, np.ndarray], dict, dict | None]:
    """The recorded values, the versions they were recorded with, and the host that recorded
    them (``None`` for values recorded before hosts were)."""
    with np.load(VALUES, allow_pickle=False) as f:
        values = {k: f[k] for k in f.files if not k.startswith("__")}
        recorded = json.loads(str(f["__versions__"]))
        recorder = json.loads(str(f["__host__"])) if "__host__" in f.files else None
    return values, recorded, recorder


def kinds() -> dict[str, str]:
    """Each golden sweep's kind, ``"stats"`` or ``"train"``."""
    return {name: raw.get("kind", "stats") for name, raw in specs().items()}


def differences(new: dict, old: dict, tolerance: dict[str, float] | None = None) -> list[str]:
    """One line per variable whose values differ: the largest relative difference.

    Args:
      new, old: values keyed ``<sweep>/<variable>``.
      tolerance: ``None`` on the recording host (bit for bit, theory within ``THEORY_ULPS``);
        elsewhere, by sweep, the largest difference of a float variable as a fraction of its
        recorded root mean square (``FOREIGN_TOLERANCE``).
    """
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
            bound = None if tolerance is None else tolerance[key.split("/", 1)[0]]
            if not (_within_ulps(a, b, ulps) if bound is None else _within_rms(a, b, bound)):
                both = np.isfinite(a) & np.isfinite(b)
                scale = np.maximum(np.abs(b), np.finfo(np.float64).tiny)
                worst = float(np.max(np.abs(a[both] - b[both]) / scale[both])) if both.any() else float("nan")
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


def _within_rms(a: np.ndarray, b: np.ndarray, bound: float) -> bool:
    """Equal NaN and infinity pattern, and every finite value within ``bound`` times the
    recorded finite values' root mean square of the recorded one."""
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(np.isinf(a), np.isinf(b)):
        return False
    infinite = np.isinf(b)
    if not np.array_equal(a[infinite], b[infinite]):
        return False
    finite = np.isfinite(b)
    if not finite.any():
        return True
    rms = np.sqrt(np.mean(np.square(b[finite].astype(np.float64))))
    return bool(np.max(np.abs(a[finite].astype(np.float64) - b[finite])) <= bound * rms)


def tolerance(recorder: dict | None) -> dict[str, float] | None:
    """``differences``' tolerance on this host for values recorded on ``recorder``."""
    if recorder == host():
        return None
    return {name: FOREIGN_TOLERANCE[kind] for name, kind in kinds().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite values.npz")
    parser.add_argument("names", nargs="*", help="only these sweeps (the others' recorded values are kept)")
    args = parser.parse_args(argv)
    new = compute(args.names or None)
    old, recorded, recorder = load() if VALUES.exists() else ({}, None, None)
    if old:
        names = {k.split("/", 1)[0] for k in new}
        compared = {k: v for k, v in old.items() if k.split("/", 1)[0] in names}
        moved = differences(new, compared)
        print("\n".join(moved) if moved else "no golden number moved")
        if tolerance(recorder) is not None:
            beyond = differences(new, compared, tolerance(recorder))
            print(f"recorded on another host ({recorder}); beyond its tolerance: "
                  + ("\n".join(["", *beyond]) if beyond else "none"))
        if recorded != versions():
            print(f"recorded with {recorded}, now {versions()}")
    if args.write:
        if args.names and recorder != host():
            raise SystemExit("a partial rewrite needs the recording host; rewrite every sweep")
        kept = {k: v for k, v in old.items() if args.names and k.split("/", 1)[0] not in args.names}
        np.savez_compressed(VALUES, __versions__=np.asarray(json.dumps(versions(), sort_keys=True)),
                            __host__=np.asarray(json.dumps(host(), sort_keys=True)), **kept, **new)
        print(f"wrote {VALUES} ({VALUES.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(main())
