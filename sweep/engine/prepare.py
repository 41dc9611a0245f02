"""Preparing a store for a run: refusing what must not be touched, laying out a new one, and
checking that an unfinished one can be continued. Runs on process 0 only; nothing is changed
before every check has passed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import xarray as xr

from sweep.config import Spec, TrainSpec
from sweep.engine import checkpoint
from sweep.errors import SpecError
from sweep.io import schema, zarr_store
from sweep.plan import Plan, check_disk, make_plan
from sweep.plan.plan import bytes_of_result


def prepare(spec: Spec | TrainSpec, out: Path, partial: Path, memory, overwrite: bool, resume: bool,
            chunk_networks: int | None, attrs: dict, extra: Callable[[], xr.Dataset]) -> str:
    """Checks ``out`` and its unfinished store, and creates one if needed.

    Args:
      spec, out, memory, overwrite, resume, chunk_networks: as ``sweep.engine.run.run``'s.
      partial: where the unfinished store goes (``zarr_store.partial_path(out)``).
      attrs: the new store's attributes.
      extra: ``extra() -> Dataset``, variables computed from the spec alone and stored beside the
        measurements; called only for a new store, once every check has passed.

    Returns:
      ``"complete"`` when ``resume`` finds ``out`` complete and of this spec, ``"resume"``
      when it continues an unfinished store, ``"new"`` when it created one.

    Raises:
      SpecError: see ``run``; nothing has been changed then.
    """
    plan = make_plan(spec, memory, chunk_networks)
    if out.exists():
        if not zarr_store.is_store(out):
            raise SpecError("out", f"{str(out)!r} exists and is not a sweep store; refusing to replace it")
        if resume:
            try:
                checkpoint.check_spec(out, _stored_spec(out), spec)
                return "complete"
            except SpecError:
                if not overwrite:
                    raise
        elif not overwrite:
            raise SpecError("out", f"{str(out)!r} exists; pass --overwrite to replace it")
    if partial.exists():
        if resume:
            try:
                check_partial(partial, spec, plan, chunk_networks is not None)
                checkpoint.clear_stop(partial)
                return "resume"
            except SpecError:
                if not overwrite:
                    raise
        elif not overwrite:
            raise SpecError(
                "out", f"an interrupted run left {str(partial)!r}; pass --resume to continue it, or --overwrite to start again"
            )
        shutil.rmtree(partial)
    check_disk(bytes_of_result(spec), out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Laid out under a third name and renamed, so that an unfinished store always has its
    # whole template and manifest, whenever a process is killed.
    new = partial.with_name(partial.name + ".new")
    if new.exists():
        shutil.rmtree(new)
    chunks = zarr_store.chunking(spec, dict(zip(plan.local_axes, plan.tile_shape)))
    zarr_store.create(schema.template(spec, attrs).merge(extra()), new, chunks)
    micro = [[job.micro_batch for job in group.jobs] for group in plan.groups]
    checkpoint.write_manifest(new, checkpoint.make_manifest(
        spec, jax.default_backend(), micro, plan.tile_shape, len(plan.tiles)))
    new.rename(partial)
    return "new"


def recorded_plan(spec: Spec | TrainSpec, manifest: dict, memory) -> Plan:
    """The plan of a store's manifest: its micro-batches and tile shape, this run's budget."""
    return make_plan(spec, memory, micro_batches=manifest["micro_batches"], tile_shape=manifest["tile_shape"])


def _stored_spec(path: Path) -> str:
    """The spec a finished store was made from, as JSON."""
    try:
        return zarr_store.load(path).attrs["spec"]
    except Exception as e:  # whatever zarr or xarray raise for a broken store
        raise checkpoint.damaged(path, f"no readable spec: {type(e).__name__}") from None


def check_partial(partial: Path, spec: Spec | TrainSpec, plan: Plan, chunking_given: bool) -> None:
    """Refuses an unfinished store that this run cannot continue, leaving it as it is."""
    manifest = checkpoint.read_manifest(partial)
    checkpoint.check_spec(partial, manifest["spec"], spec)
    platform = jax.default_backend()
    if manifest["platform"] != platform:
        raise SpecError("out", (
            f"{str(partial)!r} was started on {manifest['platform']}, and this process runs on {platform}, which would "
            f"give other numbers; continue it on {manifest['platform']}, or pass --overwrite to start again"
        ))
    if chunking_given and list(plan.tile_shape) != manifest["tile_shape"]:
        raise SpecError("chunk_networks", (
            f"{str(partial)!r} is laid out in chunks of {manifest['tile_shape']} ({', '.join(plan.local_axes)}), "
            f"not {list(plan.tile_shape)}; leave --chunk-networks out to continue it"
        ))
    positive = lambda values: isinstance(values, list) and all(type(v) is int and v > 0 for v in values)
    micro = manifest["micro_batches"]
    per_group = [m if isinstance(m, list) else [m] for m in micro] if isinstance(micro, list) else None
    if (
        per_group is None or len(per_group) != len(plan.groups)
        or any(not positive(m) or len(m) != len(g.jobs) for m, g in zip(per_group, plan.groups))
        or not positive(manifest["tile_shape"]) or len(manifest["tile_shape"]) != len(plan.local_axes)
        or manifest["state"] not in ("running", "complete")
    ):
        raise checkpoint.damaged(partial, "its manifest does not fit its spec")
    resumed = recorded_plan(spec, manifest, plan.memory_bytes)
    if len(resumed.tiles) != manifest["tiles"]:
        raise checkpoint.damaged(partial, "its manifest does not fit its spec")
    chunks = zarr_store.chunking(spec, dict(zip(resumed.local_axes, resumed.tile_shape)))
    problem = zarr_store.check_layout(partial, spec, chunks)
    if problem is not None:
        raise checkpoint.damaged(partial, problem)
    checkpoint.done(partial, manifest["tiles"])
