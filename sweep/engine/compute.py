"""Computing tiles: every job's kernel calls of a group, assembled into whole tiles as they finish.

For each group, its jobs run one after another (a training sweep's ``init`` then ``train``),
each in the calls ``sweep.plan`` cuts its micro-batches into. Calls run on the watchdog's
worker thread; while the devices run one call, the host finishes the previous one. A tile
is handed on as soon as every job has computed all of its networks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from sweep import kernel
from sweep.config import TrainSpec
from sweep.engine.watchdog import Watchdog
from sweep.io import schema
from sweep.kernel import devices
from sweep.plan import Group, Job, Plan, Tile, trained_factors


class JobCall(NamedTuple):
    """A job's kernel call on this process's devices.

    Attributes:
      run: ``run(positions) -> raw``: computes the networks at those job positions (runs on
        the watchdog's thread).
      finish: ``finish(raw) -> values``: the stored variables of each network, ``(C, ...)``.
      postfix: ``postfix(values) -> dict``: what the progress bar shows after the call.
    """

    run: Callable[[np.ndarray], Any]
    finish: Callable[[Any], dict[str, np.ndarray]]
    postfix: Callable[[dict], dict] = lambda values: {}


def job_call(plan: Plan, group: Group, job: Job, mesh) -> JobCall:
    """The kernel call of ``job`` in ``group``, on the devices of ``mesh``."""
    spec = plan.spec
    g = spec.grid
    values = {"gain": np.asarray(g.gain, np.float32), "bias_std": np.asarray(g.bias_std, np.float32)}
    if isinstance(spec, TrainSpec):
        values["learning_rate"] = np.asarray(g.learning_rate, np.float32)

    def inputs(positions):
        index = plan.axis_indices(job, positions)
        keys = plan.key_indices(group, job, positions).astype(np.uint32)
        return keys, values["gain"][index["gain"]], values["bias_std"][index["bias_std"]], index

    if job.kind == "train":
        from sweep.train import job as training

        call = training.make_call(job, spec, mesh)

        def run(positions):
            keys, gains, bias_stds, index = inputs(positions)
            return call(spec.rng_seed, keys, gains, bias_stds, values["learning_rate"][index["learning_rate"]])

        return JobCall(run, lambda raw: raw, _median_loss)

    kern = devices.make_kernel(job.program, job.probe, job.micro_batch, mesh)
    prefix, depth = job.prefix, job.arch.depth

    def run_stats(positions):
        keys, gains, bias_stds, _ = inputs(positions)
        return kern(spec.rng_seed, prefix, keys, gains, bias_stds)

    if job.kind == "init":
        stored = schema.measured(spec)  # the per-layer (and per-block) statistics, not the probe's loss
        return JobCall(run_stats, lambda raw: {f"init_{k}": v for k, v in kernel.finish(raw, depth).items()
                                               if f"init_{k}" in stored})
    if not g.parametrization:
        return JobCall(run_stats, lambda raw: kernel.finish(raw, depth))
    factors = trained_factors(spec, group.values)

    def finish(raw):
        out = kernel.finish(raw, depth)
        return out | factors.apply(out["grad_weight_meansq"])

    return JobCall(run_stats, finish)


def _median_loss(values: dict) -> dict:
    """The median over a call's networks of their last finite training loss."""
    last = values["train_loss"][:, -1]
    finite = last[np.isfinite(last)]
    return {"loss": f"{np.median(finite):.4g}" if finite.size else "nan"}


def compute(plan: Plan, tiles: Sequence[Tile], mesh, keep: Callable, bar, stopping: Callable[[], bool],
            watchdog: Watchdog, note: Callable[[dict], None] = lambda entry: None) -> bool:
    """Computes ``tiles`` and hands each one to ``keep`` as soon as all of it is computed.

    Once ``stopping()`` is true, the call in flight is finished, then only the calls of the
    same job that complete the tiles it left partly computed, so a stop waits for at most one
    tile's worth of calls and loses no finished work; what those calls begin is left for a
    resumed run.

    Args:
      plan: the plan.
      tiles: the tiles to compute, in ascending id.
      mesh: the local devices (``sweep.kernel.devices.local_mesh``).
      keep: ``keep(tile, values)``, values as ``Assembler.add`` yields them.
      bar: a progress bar counting networks.
      stopping: polled after each kernel call until it is true.
      watchdog: runs the kernel calls, each with a deadline.
      note: ``note(entry)`` for the run log: an entry per compiled program (``"compiled"``:
        its seconds, executables built and loaded from the cache) and one at the end
        (``"timing"``: compile and compute seconds of each program).

    Returns:
      False if it stopped on request, True if it computed every tile.
    """
    pending = None  # one call in flight while the host finishes the previous one
    finishing = None  # once stopping: the tiles the current job still has to complete
    timing: dict[str, list[float]] = {}  # program -> [compile seconds, compute seconds]

    def finish(assembler, index, call, positions, waiting, limit, what, program) -> None:
        values = call.finish(watchdog.result(waiting, limit, what))
        compiled = waiting.compiled
        spent = timing.setdefault(program, [0.0, 0.0])
        spent[0] += compiled.seconds
        spent[1] += max(0.0, waiting.seconds - compiled.seconds)
        if compiled.programs:
            note({"event": "compiled", "program": program, "seconds": round(compiled.seconds, 3),
                  "executables": compiled.programs, "cache_hits": compiled.cache_hits})
        total = sum(t[0] for t in timing.values())
        bar.set_postfix({**call.postfix(values), "compile": f"{total:.1f}s"}, refresh=False)
        for tile, blocks in assembler.add(index, positions, values):
            keep(tile, blocks)
            bar.update(tile.size)

    for group_index, group_tiles in _by_group(tiles):
        group = plan.groups[group_index]
        assembler = Assembler(plan, group, group_tiles)
        for index, job in enumerate(group.jobs):
            if finishing is not None:
                break
            call = job_call(plan, group, job, mesh)
            estimate = plan.call_flops(job, mesh.size)
            what = group.describe() + ("" if job.kind == "stats" else f" ({job.kind})")
            program = plan.program_name(job)
            for ids in plan.calls(job, plan.micro_batches_of(job, group_tiles), mesh.size):
                positions = plan.positions(job, ids)
                first = program not in timing and (pending is None or pending[-1] != program)
                waiting = watchdog.submit(call.run, positions)
                limit = watchdog.limit(estimate, first_of_program=first)
                if pending is not None:
                    finish(*pending)
                pending = (assembler, index, call, positions, waiting, limit, what, program)
                if finishing is None and stopping():
                    finish(*pending)
                    pending, finishing = None, assembler.partial(index)
                elif finishing is not None:
                    finish(*pending)
                    pending = None
                if finishing is not None and not finishing & assembler.partial(index):
                    break
        if finishing is not None:
            break
    if pending is not None:
        finish(*pending)
    bar.close()
    note({"event": "timing", "programs": {p: {"compile_s": round(c, 3), "compute_s": round(r, 3)}
                                          for p, (c, r) in timing.items()}})
    return finishing is None


class Assembler:
    """Collects one group's kernel results into its tiles, and says when a tile is complete.

    Args:
      plan: the plan.
      group: the group.
      tiles: tiles of the group, in ascending id (hence ascending, disjoint flat ranges).
    """

    def __init__(self, plan: Plan, group: Group, tiles: Sequence[Tile]):
        self._plan, self._group = plan, group
        self._variables = schema.measured(plan.spec)
        self._open = list(tiles)
        self._buffers: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._filled: dict[tuple[int, int], np.ndarray] = {}
        self._complete: dict[int, set[int]] = {}

    def partial(self, job_index: int) -> set[int]:
        """Ids of the tiles that job ``job_index`` has partly computed."""
        return {tile for tile, job in self._filled if job == job_index}

    def add(self, job_index: int, positions: np.ndarray, values: dict[str, np.ndarray]) -> Iterator[tuple[Tile, dict]]:
        """Takes one call's results, row i for job position ``positions[i]``.

        Yields:
          ``(tile, values)`` for each tile now complete: every stored variable's block of the
          tile, in the variable's dims (without the static ones), padded to its full extent
          along its other dims.
        """
        job = self._group.jobs[job_index]
        if np.any(positions[1:] < positions[:-1]):  # common random numbers: slots are not in flat order
            order = np.argsort(positions, kind="stable")
            positions, values = positions[order], {k: v[order] for k, v in values.items()}
        still_open = []
        for n, tile in enumerate(self._open):
            start, stop = self._plan.job_range(job, tile)
            if start > positions[-1]:  # this call reaches no further tile
                still_open += self._open[n:]
                break
            key = (tile.id, job_index)
            if tile.id not in self._complete.get(job_index, set()):
                lo, hi = np.searchsorted(positions, (start, stop))
                if hi > lo:
                    if key not in self._buffers:
                        self._buffers[key] = {k: np.empty((stop - start,) + v.shape[1:], v.dtype) for k, v in values.items()}
                        self._filled[key] = np.zeros(stop - start, bool)
                    rows = positions[lo:hi] - start
                    for name, block in values.items():
                        self._buffers[key][name][rows] = block[lo:hi]
                    self._filled[key][rows] = True
                if key in self._filled and self._filled[key].all():
                    del self._filled[key]
                    self._complete.setdefault(job_index, set()).add(tile.id)
            if all(tile.id in self._complete.get(j, set()) for j in range(len(self._group.jobs))):
                for done in self._complete.values():
                    done.discard(tile.id)
                yield tile, self._blocks(tile)
            else:
                still_open.append(tile)
        self._open = still_open

    def _blocks(self, tile: Tile) -> dict[str, np.ndarray]:
        """A complete tile's values, each variable in its dims' order and padded."""
        out = {}
        n = schema.sizes(self._plan.spec)
        for j, job in enumerate(self._group.jobs):
            axes = self._plan.local_axes[: len(job.shape)]
            extents = [tile.region[a].stop - tile.region[a].start for a in axes]
            for name, rows in self._buffers.pop((tile.id, j)).items():
                variable = self._variables[name]
                block = rows.reshape(extents + list(rows.shape[1:]))
                # An axis the variable lacks (the learning rate of an initial network's
                # values) holds equal values: keep its first.
                block = block[tuple(slice(None) if a in variable.dims else 0 for a in axes)]
                kept = [a for a in axes if a in variable.dims]
                order = [d for d in variable.dims if d in kept]
                block = np.transpose(block, [kept.index(d) for d in order] + list(range(len(kept), block.ndim)))
                trailing = [n[d] for d in variable.dims if d not in self._plan.spec.grid.static_axes + self._plan.local_axes]
                full = np.full(block.shape[: len(order)] + tuple(trailing), variable.fill, variable.dtype)
                full[(...,) + tuple(slice(0, k) for k in block.shape[len(order):])] = block
                out[name] = full
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
