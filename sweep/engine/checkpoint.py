"""The work record of a store: what it was made from, which tiles are stored, who stored them.

It lives in the store's ``.sweep`` folder, beside the zarr arrays; zarr and xarray read past
it (it has no zarr metadata), and it is not part of the dataset:

* ``manifest.json``: the spec (JSON, with its SHA-256), the platform, each group's
  micro-batch per job, the tile shape and the number of tiles, and ``state``: ``"running"``, or
  ``"complete"`` once every tile is stored. Written when the template is complete, before
  any tile, and rewritten at the end.
* ``done/<tile id>``: one marker per stored tile, created after every region of the tile is
  written, never overwritten. Completion is recorded only here, never inferred from fill
  values, so a tile whose writing was interrupted is simply not done.
* ``runs/<run>-p<process>.jsonl``: per run and process, a header line, then one line per tile
  that process stored: a log of who computed what, and proof that nothing was computed twice.
* ``stop``: present while some process of the run was asked to stop (Ctrl-C, SIGTERM); the
  others stop after their current kernel call.

Every file is written to a temporary name and renamed into place, so a process killed at
any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from pathlib import Path

from sweep.config import Spec, TrainSpec
from sweep.errors import SpecError

FOLDER = ".sweep"
FORMAT = 1


def folder(store: Path) -> Path:
    return Path(store) / FOLDER


def new_run_id() -> str:
    """A fresh run id: the start time, sortable, and a random suffix."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def spec_hash(spec: Spec | TrainSpec) -> str:
    return hashlib.sha256(spec.to_json().encode()).hexdigest()


def make_manifest(spec: Spec | TrainSpec, platform: str, micro_batches: list, tile_shape, tiles: int) -> dict:
    """The manifest of a new store.

    Args:
      spec: the sweep.
      platform: JAX platform the micro-batches were sized for (``cpu``, ``gpu``, ``tpu``).
      micro_batches: each group's micro-batch per job, in plan order.
      tile_shape: the tiles' extent along ``(gain, bias_std, seed)``.
      tiles: number of tiles.

    Returns:
      The manifest, as stored.
    """
    return {
        "format": FORMAT,
        "state": "running",
        "spec": spec.to_json(),
        "spec_sha256": spec_hash(spec),
        "platform": platform,
        "micro_batches": [[int(m) for m in group] for group in micro_batches],
        "tile_shape": [int(t) for t in tile_shape],
        "tiles": int(tiles),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_manifest(store: Path, manifest: dict) -> None:
    _atomic_write(folder(store) / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))


def read_manifest(store: Path) -> dict:
    """The store's manifest.

    Raises:
      SpecError: for ``out`` when it is missing or not a manifest this version can read.
    """
    path = folder(store) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        fields = ("state", "spec", "spec_sha256", "platform", "micro_batches", "tile_shape", "tiles")
        if manifest.get("format") != FORMAT or any(k not in manifest for k in fields):
            raise ValueError("not a manifest of this format")
        if hashlib.sha256(manifest["spec"].encode()).hexdigest() != manifest["spec_sha256"]:
            raise ValueError("its spec does not match its hash")
    except FileNotFoundError:
        raise damaged(store, f"no {FOLDER}/manifest.json") from None
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise damaged(store, f"unreadable {FOLDER}/manifest.json: {e}") from None
    return manifest


def check_spec(store: Path, stored_json: str, spec: Spec | TrainSpec) -> None:
    """Refuses a store made from another spec, naming the fields that differ.

    Raises:
      SpecError: for ``out``.
    """
    try:
        stored = json.loads(stored_json)
    except ValueError:
        raise damaged(store, "its spec is not JSON") from None
    if stored == json.loads(spec.to_json()):
        return
    here = json.loads(spec.to_json())
    keys = sorted(set(stored) | set(here))
    differ = []
    for k in keys:
        if k == "grid" and isinstance(stored.get(k), dict) and isinstance(here.get(k), dict):
            differ += [f"grid.{a}" for a in sorted(set(stored[k]) | set(here[k])) if stored[k].get(a) != here[k].get(a)]
        elif stored.get(k) != here.get(k):
            differ.append(k)
    raise SpecError(
        "out",
        f"{str(store)!r} was made from a different spec (differs in {', '.join(differ) or 'format'}); it was left as "
        "it is: use another --out, or pass --overwrite to replace it",
    )


def damaged(store: Path, reason: str) -> SpecError:
    """The error for a store that cannot be continued; the store is left as it is."""
    return SpecError(
        "out",
        f"{str(store)!r} is damaged ({reason}); it was left as it is: move it away, or pass --overwrite to start again",
    )


def done(store: Path, tiles: int) -> set[int]:
    """Ids of the stored tiles.

    Raises:
      SpecError: for ``out`` when a marker names no tile of this store.
    """
    path = folder(store) / "done"
    ids = set()
    for entry in os.listdir(path) if path.is_dir() else ():
        if not entry.isdigit() or int(entry) >= tiles:
            raise damaged(store, f"{FOLDER}/done/{entry} names no tile of this store")
        ids.add(int(entry))
    return ids


def record(store: Path, tile: int, run: str, process: int) -> bool:
    """Marks a tile as stored; call only once all its regions are written.

    Returns:
      False if it was already marked (the marker is kept as it was).
    """
    directory = folder(store) / "done"
    directory.mkdir(exist_ok=True)
    marker, text = directory / str(tile), json.dumps({"run": run, "process": process, "time": _now()})
    temporary = directory / f".{tile}.{uuid.uuid4().hex}"
    temporary.write_text(text)
    try:
        os.link(temporary, marker)  # fails if the marker exists: never replaced
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: the marker's name is what counts
        try:
            with open(marker, "x") as f:
                f.write(text)
            return True
        except FileExistsError:
            return False
    finally:
        temporary.unlink()


class RunLog:
    """One process's log of one run: a header, then a line per stored tile.

    Args:
      store: the store being written.
      run: the run id, shared by the run's processes.
      process: this process's index.
      header: what to say about the run (resumed, devices, ...).
    """

    def __init__(self, store: Path, run: str, process: int, header: dict):
        directory = folder(store) / "runs"
        directory.mkdir(exist_ok=True)
        self.path = directory / f"{run}-p{process}.jsonl"
        self._file = open(self.path, "a", buffering=1)
        self.write({"event": "start", "time": _now(), **header})

    def write(self, entry: dict) -> None:
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")

    def close(self) -> None:
        self._file.close()


def read_logs(store: Path) -> list[list[dict]]:
    """Every run log of a store, oldest run first, each a list of its entries."""
    directory = folder(store) / "runs"
    logs = []
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else ():
        logs.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return logs


def request_stop(store: Path) -> None:
    _atomic_write(folder(store) / "stop", _now())


def stop_requested(store: Path) -> bool:
    return (folder(store) / "stop").exists()


def clear_stop(store: Path) -> None:
    (folder(store) / "stop").unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(text)
    os.replace(temporary, path)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
