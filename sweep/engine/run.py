"""Runs a sweep of either kind: tiles computed on local devices, stored as they finish.

With ``out``, a sweep writes its store incrementally (``sweep.io.zarr_store`` for the layout,
``sweep.engine.checkpoint`` for the work record): process 0 checks what is at ``out`` and lays
out the whole store under ``.NAME.partial`` beside it (``sweep.engine.prepare``); every
process reads which tiles are stored, takes its contiguous share of the rest, computes them
on its local devices (``sweep.engine.compute``), and writes and records each tile as soon as
it is complete. When every process has finished, process 0 consolidates the metadata and
renames the store to ``out``. Ctrl-C or SIGTERM stops every process after its kernel call in
flight and the tiles it began, with everything finished stored; ``resume=True`` continues
from there. A kernel call that makes no progress stops the run the same way
(``sweep.engine.watchdog``).

Statistics and training sweeps go through the same code: their plans differ in their jobs
(``sweep.plan``), not in how they are tiled, stored, resumed or spread over devices and
processes. A network is always computed inside its own micro-batch, so its numbers do not
depend on chunking, devices, processes or interruptions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import xarray as xr
from tqdm.auto import tqdm

from sweep.config import Spec, TrainSpec, load_spec
from sweep.engine import checkpoint, compilation, distributed
from sweep.engine.compute import compute
from sweep.engine.prepare import prepare, recorded_plan
from sweep.engine.signals import stop_on_signals
from sweep.engine.watchdog import Watchdog
from sweep.errors import Interrupted, SpecError, Stalled
from sweep.io import schema, zarr_store
from sweep.io.provenance import provenance
from sweep.kernel import devices as device_mesh
from sweep.plan import Tile, assign, make_plan
from sweep.plan.memory import device_share, parse_memory

_POLL_SECONDS = (0.05, 2.0)  # first and longest wait between looks for the other processes


def extra_variables(spec: Spec | TrainSpec, with_theory: bool) -> xr.Dataset:
    """Variables computed from the spec alone, stored beside the measurements.

    The one place to add such variables: they are merged into the in-memory dataset and into
    a store's template before any tile is computed, and take no part in tiling or
    resumption. Now: the theory's ``theory_*`` predictions (see ``sweep.theory.predict``).
    """
    if not with_theory:
        return xr.Dataset()
    from sweep import theory

    return theory.predict(spec)


def run(
    spec: Spec | TrainSpec | str | Path,
    out: str | Path | None = None,
    memory: str | int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    devices: int | None = None,
    chunk_networks: int | None = None,
    with_theory: bool | None = None,
    stall_timeout: float | None = None,
    cache: bool | None = None,
) -> xr.Dataset:
    """Runs a sweep: random-init statistics (``kind = "stats"``) or training (``kind = "train"``).

    Args:
      spec: a ``Spec`` or ``TrainSpec``, or the path of a TOML spec file of either kind.
      out: where to write the zarr store; ``None`` keeps the result in memory only.
      memory: memory budget of the kernel calls, e.g. ``"4GB"``, per device on accelerators and
        shared by all the devices of a CPU (default: automatic, ``sweep.plan.memory``).
      overwrite: replace an existing store at ``out``, or an unfinished one beside it.
      progress: show a progress bar with ETA and networks/s.
      resume: continue the unfinished store of an interrupted run of the same spec (start
        afresh if there is none; return ``out`` as it is if it is already complete).
      devices: use this process's first ``devices`` devices (default: all of them).
      chunk_networks: about how many networks each stored chunk holds (default: about 1 MiB
        per chunk of the largest variable); fixed when a store is created.
      with_theory: store the theory's prediction of every statistic beside it (``theory_*``);
        by default for statistics sweeps. Training sweeps have none, and refuse ``True``.
      stall_timeout: seconds a kernel call may take before the run stops with ``Stalled``
        (default: a generous limit from the plan's estimate, see ``sweep.engine.watchdog``).
      cache: use JAX's persistent compilation cache (default: yes, unless ``SWEEP_NO_CACHE``
        is set; see ``sweep.engine.compilation``).

    Returns:
      The dataset (``sweep.io.schema``); opened lazily from ``out`` if given.

    Raises:
      SpecError: bad spec or settings, an existing ``out`` without ``overwrite``, an
        unfinished store without ``resume`` or ``overwrite``, an unfinished store of another
        spec or a damaged one, too little disk or memory; raised before anything is
        computed, and nothing is written or changed.
      Interrupted: Ctrl-C or SIGTERM stopped the run; what was finished is stored.
      Stalled: a kernel call made no progress within its deadline; what was finished is
        stored, and the process should exit (the stuck call cannot be cancelled).
    """
    if not isinstance(spec, (Spec, TrainSpec)):
        spec = load_spec(spec)
    with_theory = _theory_setting(spec, with_theory)
    compilation.use_cache(cache)
    try:
        (mesh, memory), error = _devices_and_budget(spec, memory, devices), None
        kind_attrs = _kind_attributes(spec)
    except SpecError as e:
        mesh, error, kind_attrs = None, e, {}
    if distributed.process_count() > 1:  # all fail together rather than leave the others waiting
        failed = [(code, text) for code, text in distributed.gather(*_encode_error(error)) if code]
        error = SpecError(*failed[0][1].split("\n", 1)) if failed else None
    if error is not None:
        raise error
    attrs = {**provenance(spec), **kind_attrs, "device_kind": device_mesh.describe(mesh, distributed.process_count())}
    extra = lambda: extra_variables(spec, with_theory)  # computed once the store's checks have passed
    if out is None:
        if distributed.process_count() > 1:
            raise SpecError("out", "a run of several processes must write a store")
        return _run_in_memory(spec, memory, chunk_networks, mesh, progress, stall_timeout, attrs, extra)
    return _run_to_store(spec, Path(out), memory, overwrite, progress, resume, mesh, chunk_networks, attrs, extra,
                         stall_timeout)


def _devices_and_budget(spec: Spec | TrainSpec, memory, devices: int | None):
    """This process's mesh and the memory budget of each of its devices.

    An accelerator's budget is its own. A CPU's devices share the host's memory, so the budget
    is split among them; without ``devices``, only as many CPU devices are used as the budget
    gives every one of them room for the sweep's largest micro-batch (a budget that holds one
    micro-batch runs on one device, as before CPUs had one device per core).
    """
    mesh = device_mesh.local_mesh(devices)
    platform_name = mesh.devices.flat[0].platform
    if platform_name == "cpu" and devices is None and mesh.size > 1:
        budget = parse_memory(memory)
        fitting = budget // make_plan(spec, budget).micro_batch_bytes
        mesh = device_mesh.local_mesh(max(1, min(mesh.size, fitting)))
    return mesh, device_share(memory, mesh.size, platform_name)


def _theory_setting(spec: Spec | TrainSpec, with_theory: bool | None) -> bool:
    if isinstance(spec, TrainSpec):
        if with_theory:
            raise SpecError("theory", "training sweeps store no theory predictions; leave it out")
        return False
    return True if with_theory is None else bool(with_theory)


def _kind_attributes(spec: Spec | TrainSpec) -> dict:
    """The attributes of a kind's dataset beside the provenance; checks a training spec's data."""
    if not isinstance(spec, TrainSpec):
        return {}
    from sweep.train import job

    job.check(spec)
    return job.attributes(spec)


def _run_in_memory(spec, memory, chunk_networks, mesh, progress, stall_timeout, attrs, extra) -> xr.Dataset:
    plan = make_plan(spec, memory, chunk_networks)
    arrays = schema.empty_arrays(spec)
    variables = schema.measured(spec)

    def keep(tile: Tile, values: dict) -> None:
        region = _region(plan, tile)
        for name, block in values.items():
            arrays[name][tuple(region.get(d, slice(None)) for d in variables[name].dims)] = block

    compute(plan, plan.tiles, mesh, keep, _bar(spec, plan, plan.tiles, progress), lambda: False, Watchdog(stall_timeout))
    return schema.to_dataset(spec, arrays, attrs).merge(extra())


def _region(plan, tile: Tile) -> dict:
    """A tile's index along every grid axis: its group's position, and its slices."""
    group = plan.groups[tile.group]
    return {**dict(zip(group.axes, group.position)), **tile.region}


def _run_to_store(spec, out, memory, overwrite, progress, resume, mesh, chunk_networks, attrs, extra,
                  stall_timeout) -> xr.Dataset:
    """``run`` with a store, on every process of the run.

    Args:
      spec, out, memory, overwrite, progress, resume, chunk_networks, stall_timeout: as ``run``'s.
      mesh: this process's devices.
      attrs: the new store's attributes.
      extra: ``extra() -> Dataset``, the variables stored beside the measurements.

    Returns:
      The finished store, opened lazily.
    """
    partial = zarr_store.partial_path(out)
    me, processes = distributed.process_index(), distributed.process_count()
    # Process 0 alone looks at and changes the file system; the others follow its verdict,
    # so that every process raises the same error or works on the same store.
    code, message = 0, ""
    if me == 0:
        try:
            state = prepare(spec, out, partial, memory, overwrite, resume, chunk_networks, attrs, extra)
            code, message = (1, "") if state == "complete" else (0, checkpoint.new_run_id())
        except SpecError as e:
            code, message = _encode_error(e)
    code, message = distributed.share(code, message)
    if code == 2:
        raise SpecError(*message.split("\n", 1))
    if code == 1:
        return _load(out)
    run_id = message

    _wait_until_visible(checkpoint.folder(partial) / "manifest.json")
    manifest = checkpoint.read_manifest(partial)
    plan = recorded_plan(spec, manifest, memory)
    tiles = plan.tiles
    done = checkpoint.done(partial, len(tiles))
    distributed.barrier(f"sweep-read-{run_id}")  # nobody records a tile before all have read `done`
    todo = [t for t in tiles if t.id not in done]
    mine = assign(todo, [plan.tile_cost(t) for t in todo], processes)[me]
    log = checkpoint.RunLog(partial, run_id, me, {
        "resumed": bool(done), "stored_before": len(done), "tiles": len(tiles), "assigned": [t.id for t in mine],
        "processes": processes, "devices": mesh.size, "memory_bytes": plan.memory_bytes,
    })
    writer = zarr_store.TileWriter(partial, spec)

    def keep(tile: Tile, values: dict) -> None:
        writer.write(_region(plan, tile), values)
        new = checkpoint.record(partial, tile.id, run_id, me)
        log.write({"event": "stored", "tile": tile.id, "new": new})

    with stop_on_signals() as signalled:
        def stopping() -> bool:
            if signalled():
                checkpoint.request_stop(partial)
                return True
            return checkpoint.stop_requested(partial)

        error = None
        try:
            finished = compute(plan, mine, mesh, keep, _bar(spec, plan, mine, progress, processes), stopping,
                               Watchdog(stall_timeout), log.write)
        except Stalled as e:
            stored = len(checkpoint.done(partial, len(tiles)))
            e.where = f"{stored} of {len(tiles)} tiles are stored in {str(partial)!r}"
            if processes == 1:
                raise
            error, finished = e, False
            checkpoint.request_stop(partial)
        except Exception as e:  # the other processes must not be left waiting for this one
            if processes == 1:
                raise
            error, finished = e, False
            checkpoint.request_stop(partial)
        log.write({"event": "end", "finished": finished})
        log.close()
        _wait_for_all(partial, run_id, me, processes, finished)

        code = 0
        if me == 0:
            if len(checkpoint.done(partial, len(tiles))) == len(tiles):
                manifest["state"] = "complete"
                checkpoint.write_manifest(partial, manifest)
                zarr_store.finalise(partial, out)
            else:
                code = 1
        code, _ = distributed.share(code)
    if error is not None:
        raise error
    if code == 1:
        raise Interrupted(out, partial, len(checkpoint.done(partial, len(tiles))), len(tiles))
    return _load(out)


def _encode_error(error: SpecError | None) -> tuple[int, str]:
    """A ``SpecError`` (or none) as a code and text that ``sweep.engine.distributed`` can send."""
    return (0, "") if error is None else (2, f"{error.field}\n{error.message}")


def _load(out: Path) -> xr.Dataset:
    """The finished store, once this process can see it."""
    _wait_until_visible(out / ".zmetadata")
    return zarr_store.load(out)


def _wait_until_visible(path: Path, seconds: float = 120.0) -> None:
    """Waits for a file that another process has just made, which a network file system may
    show here only after a while."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _bar(spec, plan, tiles, progress: bool, processes: int = 1):
    """A progress bar over the networks of ``tiles``, named after the process when there are several,
    after a line that says what the plan will compile."""
    desc = spec.name if processes == 1 else f"{spec.name} [process {distributed.process_index()}]"
    total = sum(t.size for t in tiles)
    if progress:
        print(f"{desc}: {plan.summary()}", file=sys.stderr, flush=True)
    return tqdm(total=total, unit="net", desc=desc, disable=not progress, dynamic_ncols=True)


def _wait_for_all(partial: Path, run_id: str, me: int, processes: int, finished: bool) -> None:
    """Marks this process's part of the run as ended and waits until every process's is.

    The wait polls the shared file system rather than holding a collective open, since
    processes may end hours apart and collectives time out.
    """
    if processes == 1:
        return
    ended = checkpoint.folder(partial) / "runs"
    (ended / f"{run_id}-p{me}.end").write_text("finished" if finished else "stopped")
    wait = _POLL_SECONDS[0]
    while sum((ended / f"{run_id}-p{p}.end").exists() for p in range(processes)) < processes:
        time.sleep(wait)
        wait = min(2 * wait, _POLL_SECONDS[1])
    distributed.barrier(f"sweep-ended-{run_id}")
