"""Runs a plan: every chunk through its compiled kernel, results gathered into the dataset."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sweep import kernel, plan as planning, store
from sweep.spec import Spec


def run(
    spec: Spec | str | Path,
    out: str | Path | None = None,
    memory: str | int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    with_theory: bool = True,
) -> xr.Dataset:
    """Runs a sweep: random-init statistics (``kind = "stats"``) or training (``kind = "train"``).

    Args:
      spec: a ``Spec`` (or ``TrainSpec``) or the path of a TOML spec file.
      out: where to write the zarr store; ``None`` keeps the result in memory only.
      memory: device memory budget for one kernel call, e.g. ``"4GB"`` (default: automatic).
      overwrite: replace an existing store at ``out``.
      progress: show a progress bar with ETA and networks/s.
      with_theory: store the theory's prediction of every statistic beside it (``theory_*``).

    Returns:
      The dataset (see ``sweep.store`` for the contract).

    Raises:
      SpecError: bad spec, an existing ``out`` without ``overwrite``, too little disk or
        memory; raised before anything is computed or written.
    """
    if isinstance(spec, (str, Path)):
        spec = Spec.from_toml(spec)
    if spec.kind == "train":
        from sweep.train import run_training

        return run_training(spec, out=out, memory=memory, overwrite=overwrite, progress=progress)
    the_plan = planning.make_plan(spec, memory)
    if out is not None:
        store.check_writable(out, overwrite)
        planning.check_disk(spec, out)
    arrays = store.empty_arrays(spec)
    grid = spec.grid
    local_shape = (len(grid.gain), len(grid.bias_std), spec.seeds)
    gains = np.asarray(grid.gain, np.float32)
    bias_stds = np.asarray(grid.bias_std, np.float32)

    bar = tqdm(total=spec.num_networks, unit="net", desc=spec.name, disable=not progress, dynamic_ncols=True)
    pending = None  # one chunk in flight while the host gathers the previous one
    for group in the_plan.groups:
        kern = kernel.make_kernel(group.arch, the_plan.probe, group.micro_batch)
        for chunk in the_plan.chunks(group):
            g_idx, b_idx, _ = np.unravel_index(chunk.indices % np.prod(local_shape), local_shape)
            raw = kern(
                jnp.uint32(spec.rng_seed),
                jnp.asarray(chunk.indices, jnp.uint32),
                jnp.asarray(gains[g_idx]),
                jnp.asarray(bias_stds[b_idx]),
            )
            if pending is not None:
                _gather(arrays, *pending, local_shape)
                bar.update(pending[2].valid)
            pending = (group, raw, chunk)
    if pending is not None:
        _gather(arrays, *pending, local_shape)
        bar.update(pending[2].valid)
    bar.close()

    ds = store.to_dataset(spec, arrays)
    if with_theory:
        from sweep import theory

        ds = ds.merge(theory.predict(spec), combine_attrs="drop_conflicts")
    if out is not None:
        store.write(ds, out, overwrite=overwrite)
    return ds


def _gather(arrays, group, raw, chunk, local_shape) -> None:
    """Moves one chunk's statistics from the device into the result arrays."""
    stats = kernel.finish(raw)
    g_idx, b_idx, s_idx = np.unravel_index(chunk.local, local_shape)
    depth = group.arch.depth
    for name, values in stats.items():
        target = arrays[name][group.position]
        values = values[: chunk.valid]
        if name in store.LAYER_STATS_AND_FLAGS:
            target[g_idx, b_idx, s_idx, :depth] = values
        elif name == "jacobian_singular_values":
            target[g_idx, b_idx, s_idx, : values.shape[-1]] = values
        else:
            target[g_idx, b_idx, s_idx] = values
