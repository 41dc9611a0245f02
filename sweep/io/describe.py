"""``sweep show``: a readable summary of a stored sweep."""

from __future__ import annotations

import json

import xarray as xr

from sweep.config import GRID_AXES, load_spec


def describe(ds: xr.Dataset) -> str:
    """A readable summary of a stored sweep: what was swept, on what, and a few key numbers."""
    spec = load_spec(json.loads(ds.attrs["spec"]))
    lines = [ds.attrs.get("title", "sweep"), ""]
    lines.append(f"  networks : {spec.num_networks} ({spec.grid.size} grid points x {spec.seeds} seeds)")
    if spec.kind == "train":
        lines.append(f"  training : {spec.dataset}, {spec.optimizer}, {spec.steps} steps of batch {spec.batch}")
        lines.append(f"  network  : {ds.attrs.get('architecture', _family(spec))}")
    else:
        lines.append(f"  batch    : {spec.batch} inputs, loss {spec.loss}, precision {spec.precision}")
        lines.append(f"  network  : {_family(spec)}")
        if spec.sampler != "direct":
            lines.append(f"  sampler  : {spec.sampler} ({ds.attrs.get('sampler_layers', '?')})")
    for axis in spec.grid.axes:
        values = list(ds[axis].values)
        text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:8])
        lines.append(f"  {axis:<9}: {text}{' ...' if len(values) > 8 else ''} ({len(values)})")
    lines.append(f"  device   : {ds.attrs.get('device_kind', '?')}; created {ds.attrs.get('created', '?')}")
    lines.append(f"  commit   : {ds.attrs.get('git_commit', '?')}")
    if spec.kind == "train":
        return "\n".join(lines + _describe_training(ds, spec.grid.axes))
    overflow = int(ds["overflow"].any("layer").sum())
    lines.append(f"  overflow : {overflow} of {spec.num_networks} networks left the float range")
    lines.append("")
    lines.append("  last layer, median over seeds (first bias_std):")
    last = ds.isel(bias_std=0).sel(layer=ds["depth"])  # each network's own last layer
    extra = _extra_columns(spec.grid.axes)
    header = f"    {'activation':<16}{'init':<18}{'profile':<12}{'depth':>6}{'width':>6}"
    header += "".join(label.rjust(size) for _, label, size in extra) + f"{'gain':>8}"
    residual = "branch_layer" in ds.dims
    header += f"{'stream_ms' if residual else 'preact_ms':>12}{'grad_w2_ms' if residual else 'grad_w_ms':>12}"
    lines.append(header)
    for point in _first_points(last, 12, spec.grid.axes):
        row = last.sel(point)
        z = float(row["stream_meansq" if residual else "preact_meansq"].median("seed"))
        w = row["grad_weight_meansq"]
        w = float((w.sel(branch_layer=2) if residual else w).median("seed"))
        k = "".join(_cell(point[axis], size) for axis, _, size in extra)
        lines.append(
            f"    {point['activation']:<16}{point['init']:<18}{point['profile']:<12}{point['depth']:>6}"
            f"{point['width']:>6}{k}{point['gain']:>8.3g}{z:>12.4g}{w:>12.4g}"
        )
    return "\n".join(lines)


def _extra_columns(axes) -> list[tuple[str, str, int]]:
    """``(axis, label, width)`` of the optional grid axes a table shows."""
    columns = (("kernel_size", "k", 6), ("branch_scale", "α", 6), ("parametrization", "param", 10))
    return [column for column in columns if column[0] in axes]


def _cell(value, size: int) -> str:
    return f"{value:>{size}}" if isinstance(value, str) else f"{value:>{size}.3g}"


def _family(spec) -> str:
    """One line on the network family."""
    from sweep.io.schema import network_family

    return network_family(spec)


def _describe_training(ds: xr.Dataset, grid_axes: tuple[str, ...]) -> list[str]:
    final = ds.isel(eval_step=-1)
    lines = [f"  diverged : {int(ds['diverged'].sum())} networks", "",
             f"  after {int(final.eval_step)} steps, median over seeds (first profile and bias_std):"]
    extra = _extra_columns(tuple(ds.dims))
    header = f"    {'activation':<16}{'init':<14}{'depth':>6}{'width':>6}" + "".join(label.rjust(size)
                                                                               for _, label, size in extra)
    lines.append(header + f"{'gain':>8}{'lr':>9}{'test_loss':>11}{'test_acc':>10}")
    axes = [a for a in grid_axes if a not in ("profile", "bias_std")]
    table = final[["test_loss", "test_accuracy"]].isel(profile=0, bias_std=0).median("seed")
    for values in table["test_loss"].stack(point=axes).point.values[:16]:
        point = dict(zip(axes, values))
        row = table.sel(point)
        k = "".join(_cell(point[axis], size) for axis, _, size in extra)
        lines.append(f"    {point['activation']:<16}{point['init']:<14}{point['depth']:>6}{point['width']:>6}{k}"
                     f"{point['gain']:>8.3g}{point['learning_rate']:>9.3g}{float(row.test_loss):>11.4g}"
                     f"{float(row.test_accuracy):>10.3f}")
    return lines


def _first_points(ds: xr.Dataset, limit: int, grid_axes=GRID_AXES):
    axes = [a for a in grid_axes if a != "bias_std"]
    stacked = ds["loss"].stack(point=axes).point.values[:limit]
    for values in stacked:
        yield {a: (v.item() if hasattr(v, "item") else v) for a, v in zip(axes, values)}
