"""Runs a plan: tiles computed by compiled kernels on local devices, stored as they finish.

With ``out``, a sweep writes its store incrementally (see ``sweep.store`` for the layout and
``sweep.checkpoint`` for the work record): process 0 checks what is at ``out`` and lays out
the whole store under ``.NAME.partial`` beside it; every process reads which tiles are
stored, takes its contiguous share of the rest (``plan.assign``), computes them on its
local devices (``sweep.devices``), and writes and records each tile as soon as it is
complete. When every process has finished, process 0 consolidates the metadata and
renames the store to ``out``. Ctrl-C or SIGTERM stops every process after its kernel call in
flight and the tiles it began, with everything finished stored; ``resume=True`` continues
from there.

A network is always computed inside its own micro-batch (see ``sweep.plan``), so its
numbers do not depend on chunking, devices, processes or interruptions.
"""

from __future__ import annotations

import contextlib
import signal
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sweep import checkpoint, devices as device_mesh, distributed, kernel, plan as planning, store
from sweep.errors import Interrupted, SpecError, Stalled
from sweep.watchdog import Watchdog
from sweep.plan import Plan, Tile
from sweep.spec import Spec

_POLL_SECONDS = (0.05, 2.0)  # first and longest wait between looks for the other processes


def extra_variables(spec: Spec, with_theory: bool = True) -> xr.Dataset:
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
    spec: Spec | str | Path,
    out: str | Path | None = None,
    memory: str | int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    devices: int | None = None,
    chunk_networks: int | None = None,
    with_theory: bool = True,
    stall_timeout: float | None = None,
) -> xr.Dataset:
    """Runs a sweep: random-init statistics (``kind = "stats"``) or training (``kind = "train"``).

    Args:
      spec: a ``Spec`` (or ``TrainSpec``) or the path of a TOML spec file.
      out: where to write the zarr store; ``None`` keeps the result in memory only.
      memory: device memory budget for one kernel call on one device, e.g. ``"4GB"``
        (default: automatic).
      overwrite: replace an existing store at ``out``, or an unfinished one beside it.
      progress: show a progress bar with ETA and networks/s.
      resume: continue the unfinished store of an interrupted run of the same spec (start
        afresh if there is none; return ``out`` as it is if it is already complete).
      devices: use this process's first ``devices`` devices (default: all of them).
      chunk_networks: about how many networks each stored chunk holds (default: about 1 MiB
        per chunk of a per-layer variable); fixed when a store is created.
      with_theory: store the theory's prediction of every statistic beside it (``theory_*``).
      stall_timeout: seconds a kernel call may take before the run stops with ``Stalled``
        (default: a generous limit from the plan's estimate, see ``sweep.watchdog``).

    Returns:
      The dataset (see ``sweep.store`` for the contract); opened lazily from ``out`` if given.

    Raises:
      SpecError: bad spec or settings, an existing ``out`` without ``overwrite``, an
        unfinished store without ``resume`` or ``overwrite``, an unfinished store of another
        spec or a damaged one, too little disk or memory; raised before anything is
        computed, and nothing is written or changed.
      Interrupted: Ctrl-C or SIGTERM stopped the run; what was finished is stored.
      Stalled: a kernel call made no progress within its deadline; what was finished is
        stored, and the process should exit (the stuck call cannot be cancelled).
    """
    if isinstance(spec, (str, Path)):
        spec = Spec.from_toml(spec)
    if spec.kind == "train":
        from sweep.train import run_training

        return run_training(spec, out=out, memory=memory, overwrite=overwrite, progress=progress)
    try:
        mesh, error = device_mesh.local_mesh(devices), None
    except SpecError as e:
        mesh, error = None, e
    if distributed.process_count() > 1:  # all fail together rather than leave the others waiting
        failed = [(code, text) for code, text in distributed.gather(*_encode_error(error)) if code]
        error = SpecError(*failed[0][1].split("\n", 1)) if failed else None
    if error is not None:
        raise error
    attrs = {"device_kind": device_mesh.describe(mesh, distributed.process_count())}
    if out is None:
        if distributed.process_count() > 1:
            raise SpecError("out", "a run of several processes must write a store")
        the_plan = planning.make_plan(spec, memory, chunk_networks)
        arrays = store.empty_arrays(spec)
        tiles = the_plan.tiles

        def keep(tile: Tile, values: dict) -> None:
            position = the_plan.groups[tile.group].position
            for name, block in values.items():
                arrays[name][position + tile.region] = block

        _compute(the_plan, tiles, mesh, keep, _bar(spec, tiles, progress), lambda: False, Watchdog(stall_timeout))
        return store.to_dataset(spec, arrays, attrs).merge(extra_variables(spec, with_theory))
    return _run_to_store(spec, Path(out), memory, overwrite, progress, resume, mesh, chunk_networks, attrs,
                         with_theory, stall_timeout)


def _run_to_store(spec, out, memory, overwrite, progress, resume, mesh, chunk_networks, attrs,
                  with_theory=True, stall_timeout=None) -> xr.Dataset:
    """``run`` with a store, on every process of the run.

    Args:
      spec, out, memory, overwrite, progress, resume, chunk_networks: as ``run``'s.
      mesh: this process's devices.
      attrs: attributes that override the provenance of a new store.
      with_theory, stall_timeout: as ``run``'s.

    Returns:
      The finished store, opened lazily.
    """
    partial = store.partial_path(out)
    me, processes = distributed.process_index(), distributed.process_count()
    # Process 0 alone looks at and changes the file system; the others follow its verdict,
    # so that every process raises the same error or works on the same store.
    code, message = 0, ""
    if me == 0:
        try:
            state = _prepare(spec, out, partial, memory, overwrite, resume, chunk_networks, attrs, with_theory)
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
    the_plan = planning.make_plan(spec, memory, micro_batches=manifest["micro_batches"], tile_shape=manifest["tile_shape"])
    tiles = the_plan.tiles
    done = checkpoint.done(partial, len(tiles))
    distributed.barrier(f"sweep-read-{run_id}")  # nobody records a tile before all have read `done`
    mine = planning.assign(the_plan, [t for t in tiles if t.id not in done], processes)[me]
    log = checkpoint.RunLog(partial, run_id, me, {
        "resumed": bool(done), "stored_before": len(done), "tiles": len(tiles), "assigned": [t.id for t in mine],
        "processes": processes, "devices": mesh.size, "memory_bytes": the_plan.memory_bytes,
    })
    writer = store.TileWriter(partial)

    def keep(tile: Tile, values: dict) -> None:
        writer.write(the_plan.groups[tile.group].position, tile.region, values)
        new = checkpoint.record(partial, tile.id, run_id, me)
        log.write({"event": "stored", "tile": tile.id, "new": new})

    with _stop_on_signals() as signalled:
        def stopping() -> bool:
            if signalled():
                checkpoint.request_stop(partial)
                return True
            return checkpoint.stop_requested(partial)

        error = None
        try:
            finished = _compute(the_plan, mine, mesh, keep, _bar(spec, mine, progress, processes), stopping,
                                Watchdog(stall_timeout))
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
                store.finalise(partial, out)
            else:
                code = 1
        code, _ = distributed.share(code)
    if error is not None:
        raise error
    if code == 1:
        raise Interrupted(out, partial, len(checkpoint.done(partial, len(tiles))), len(tiles))
    return _load(out)


def _encode_error(error: SpecError | None) -> tuple[int, str]:
    """A ``SpecError`` (or none) as a code and text that ``sweep.distributed`` can send."""
    return (0, "") if error is None else (2, f"{error.field}\n{error.message}")


def _load(out: Path) -> xr.Dataset:
    """The finished store, once this process can see it."""
    _wait_until_visible(out / ".zmetadata")
    return store.load(out)


def _wait_until_visible(path: Path, seconds: float = 120.0) -> None:
    """Waits for a file that another process has just made, which a network file system may
    show here only after a while."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _prepare(spec, out, partial, memory, overwrite, resume, chunk_networks, attrs, with_theory=True) -> str:
    """Checks ``out`` and its unfinished store, and creates one if needed (process 0 only).

    Returns:
      ``"complete"`` when ``resume`` finds ``out`` complete and of this spec, ``"resume"``
      when it continues an unfinished store, ``"new"`` when it created one.

    Raises:
      SpecError: see ``run``; nothing has been changed then.
    """
    the_plan = planning.make_plan(spec, memory, chunk_networks)
    if out.exists():
        if not store.is_store(out):
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
                _check_partial(partial, spec, the_plan, chunk_networks is not None)
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
    planning.check_disk(spec, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Laid out under a third name and renamed, so that an unfinished store always has its
    # whole template and manifest, whenever a process is killed.
    new = partial.with_name(partial.name + ".new")
    if new.exists():
        shutil.rmtree(new)
    store.create(store.template(spec, attrs).merge(extra_variables(spec, with_theory)), new, the_plan.tile_shape)
    micro = [g.micro_batch for g in the_plan.groups]
    checkpoint.write_manifest(new, checkpoint.make_manifest(
        spec, jax.default_backend(), micro, the_plan.tile_shape, len(the_plan.tiles)
    ))
    new.rename(partial)
    return "new"


def _stored_spec(path: Path) -> str:
    """The spec a finished store was made from, as JSON."""
    try:
        return store.load(path).attrs["spec"]
    except Exception as e:  # whatever zarr or xarray raise for a broken store
        raise checkpoint.damaged(path, f"no readable spec: {type(e).__name__}") from None


def _check_partial(partial: Path, spec: Spec, the_plan: Plan, chunking_given: bool) -> None:
    """Refuses an unfinished store that this run cannot continue, leaving it as it is."""
    manifest = checkpoint.read_manifest(partial)
    checkpoint.check_spec(partial, manifest["spec"], spec)
    platform = jax.default_backend()
    if manifest["platform"] != platform:
        raise SpecError("out", (
            f"{str(partial)!r} was started on {manifest['platform']}, and this process runs on {platform}, which would "
            f"give other numbers; continue it on {manifest['platform']}, or pass --overwrite to start again"
        ))
    if chunking_given and list(the_plan.tile_shape) != manifest["tile_shape"]:
        raise SpecError("chunk_networks", (
            f"{str(partial)!r} is laid out in chunks of {manifest['tile_shape']} (gain, bias_std, seed), "
            f"not {list(the_plan.tile_shape)}; leave --chunk-networks out to continue it"
        ))
    positive = lambda values: isinstance(values, list) and all(type(v) is int and v > 0 for v in values)
    if (
        not positive(manifest["micro_batches"]) or len(manifest["micro_batches"]) != len(the_plan.groups)
        or not positive(manifest["tile_shape"]) or len(manifest["tile_shape"]) != 3
        or manifest["state"] not in ("running", "complete")
    ):
        raise checkpoint.damaged(partial, "its manifest does not fit its spec")
    resumed = planning.make_plan(
        spec, the_plan.memory_bytes, micro_batches=manifest["micro_batches"], tile_shape=manifest["tile_shape"]
    )
    if len(resumed.tiles) != manifest["tiles"]:
        raise checkpoint.damaged(partial, "its manifest does not fit its spec")
    problem = store.check_layout(partial, spec, resumed.tile_shape)
    if problem is not None:
        raise checkpoint.damaged(partial, problem)
    checkpoint.done(partial, manifest["tiles"])


def _compute(the_plan: Plan, tiles: Sequence[Tile], mesh, keep: Callable, bar, stopping: Callable[[], bool],
             watchdog: Watchdog) -> bool:
    """Computes ``tiles`` and hands each one to ``keep`` as soon as all of it is computed.

    While the devices run one kernel call, the host finishes the previous one. Once
    ``stopping()`` is true, the call in flight is finished, then only the calls that complete
    the tiles it left partly computed, so a stop waits for at most one tile's worth of calls
    and loses no finished work; the tiles those calls begin are left for a resumed run.

    Args:
      the_plan: the plan.
      tiles: the tiles to compute, in ascending id.
      mesh: the local devices (``sweep.devices.local_mesh``).
      keep: ``keep(tile, values)``, values as ``store.TileWriter.write`` takes them.
      bar: a progress bar counting networks.
      stopping: polled after each kernel call until it is true.
      watchdog: runs the kernel calls, each with a deadline.

    Returns:
      False if it stopped on request, True if it computed every tile.
    """
    spec = the_plan.spec
    gains = np.asarray(spec.grid.gain, np.float32)
    bias_stds = np.asarray(spec.grid.bias_std, np.float32)
    shapes = store.measured_variables(spec)
    pending = None  # one call in flight while the host finishes the previous one
    finishing = None  # once stopping: the tiles still to complete

    def finish(assembler, positions, call, limit, what) -> None:
        raw = watchdog.result(call, limit, what)
        for tile, values in assembler.add(positions, kernel.finish(raw)):
            keep(tile, _pad(values, tile, shapes))
            bar.update(tile.size)

    for group_index, group_tiles in _by_group(tiles):
        if finishing is not None:
            break
        group = the_plan.groups[group_index]
        kern = device_mesh.make_kernel(group.arch, the_plan.probe, group.micro_batch, mesh)
        assembler = _Assembler(group_tiles)
        what = the_plan.describe(group)
        estimate = the_plan.call_flops(group, mesh.size)
        for n, ids in enumerate(the_plan.calls(group, the_plan.tile_micro_batches(group, group_tiles), mesh.size)):
            positions = the_plan.positions(group, ids)
            g_idx, b_idx, _ = np.unravel_index(positions, the_plan.local_shape)
            call = watchdog.submit(
                kern,
                np.uint32(spec.rng_seed),
                the_plan.global_indices(group, positions).astype(np.uint32),
                gains[g_idx],
                bias_stds[b_idx],
            )
            limit = watchdog.limit(estimate, first_of_program=n == 0)
            if pending is not None:
                finish(*pending)
            pending = (assembler, positions, call, limit, what)
            if finishing is None and stopping():
                finish(*pending)
                pending, finishing = None, assembler.partial()
            elif finishing is not None:
                finish(*pending)
                pending = None
            if finishing is not None and not finishing & assembler.partial():
                break
    if pending is not None:
        finish(*pending)
    bar.close()
    return finishing is None


class _Assembler:
    """Collects one group's kernel results into its tiles, and says when a tile is complete.

    Args:
      tiles: tiles of one group, in ascending id (hence ascending, disjoint flat ranges).
    """

    def __init__(self, tiles: Sequence[Tile]):
        self._open = list(tiles)
        self._buffers: dict[int, dict[str, np.ndarray]] = {}
        self._filled: dict[int, np.ndarray] = {}

    def partial(self) -> set[int]:
        """Ids of the tiles that are partly computed."""
        return set(self._filled)

    def add(self, positions: np.ndarray, stats: dict[str, np.ndarray]) -> Iterator[tuple[Tile, dict]]:
        """Takes one call's statistics, row i for flat position ``positions[i]``.

        Yields:
          ``(tile, values)`` for each tile now complete, values ``(tile.size, ...)`` in flat order.
        """
        if np.any(positions[1:] < positions[:-1]):  # common random numbers: slots are not in flat order
            order = np.argsort(positions, kind="stable")
            positions, stats = positions[order], {k: v[order] for k, v in stats.items()}
        still_open = []
        for n, tile in enumerate(self._open):
            if tile.start > positions[-1]:  # this call reaches no further tile
                still_open += self._open[n:]
                break
            lo, hi = np.searchsorted(positions, (tile.start, tile.stop))
            if hi > lo:
                if tile.id not in self._buffers:
                    self._buffers[tile.id] = {k: np.empty((tile.size,) + v.shape[1:], v.dtype) for k, v in stats.items()}
                    self._filled[tile.id] = np.zeros(tile.size, bool)
                rows = positions[lo:hi] - tile.start
                for name, values in stats.items():
                    self._buffers[tile.id][name][rows] = values[lo:hi]
                self._filled[tile.id][rows] = True
            if tile.id in self._filled and self._filled[tile.id].all():
                del self._filled[tile.id]
                yield tile, self._buffers.pop(tile.id)
            else:
                still_open.append(tile)
        self._open = still_open


def _pad(values: dict[str, np.ndarray], tile: Tile, shapes: dict) -> dict[str, np.ndarray]:
    """A tile's values reshaped to its region and padded to each variable's full extent."""
    region = tuple(r.stop - r.start for r in tile.region)
    out = {}
    for name, (shape, dtype, fill) in shapes.items():
        trailing = shape[len(store.NETWORK_DIMS):]
        block = np.full(region + trailing, fill, dtype)
        v = values[name].reshape(region + values[name].shape[1:])
        block[(...,) + tuple(slice(0, n) for n in v.shape[3:])] = v
        out[name] = block
    return out


def _by_group(tiles: Sequence[Tile]) -> Iterator[tuple[int, list[Tile]]]:
    """Runs of consecutive tiles of one group, with the group's index."""
    group, run = None, []
    for tile in tiles:
        if tile.group != group and run:
            yield group, run
            run = []
        group = tile.group
        run.append(tile)
    if run:
        yield group, run


def _bar(spec: Spec, tiles: Sequence[Tile], progress: bool, processes: int = 1):
    """A progress bar over the networks of ``tiles``, named after the process when there are several."""
    desc = spec.name if processes == 1 else f"{spec.name} [process {distributed.process_index()}]"
    total = sum(t.size for t in tiles)
    return tqdm(total=total, unit="net", desc=desc, disable=not progress, dynamic_ncols=True)


@contextlib.contextmanager
def _stop_on_signals():
    """Turns the first SIGINT or SIGTERM into a request to stop after the call in flight.

    A second signal acts as usual (SIGINT raises ``KeyboardInterrupt`` at once). Signals can
    only be caught in the main thread; elsewhere this does nothing.

    Yields:
      A function that says whether a stop was requested.
    """
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        requested.append(signum)
        for s, h in previous.items():
            signal.signal(s, h)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield lambda: bool(requested)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
