"""The ``sweep`` command line: a thin layer over the Python API.

Bad input of any kind ends with one line on stderr that names the field and what is
allowed, and exit code 2; nothing is written in that case. A run stopped by Ctrl-C or
SIGTERM ends with one line that says how to continue it, and exit code 130; a run whose
kernel call stalled (``sweep.watchdog``) with one line saying what stalled, and exit code 3.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sweep.errors import Interrupted, SpecError, Stalled

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Random-init statistics of thousands of deep networks, stored as xarray/zarr.",
)

MemoryOption = Annotated[
    str | None, typer.Option("--memory", help="Memory budget of the kernel calls, e.g. 4GB: per device on an "
                             "accelerator, shared by a CPU's devices (default: auto).")
]


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="The sweep spec, a TOML file.")],
    out: Annotated[Path | None, typer.Option("--out", help="Zarr store to write (default results/NAME.zarr).")] = None,
    memory: MemoryOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing store, or an unfinished one.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run of the same spec (or start one; done if --out is complete)."
    )] = False,
    devices: Annotated[int | None, typer.Option(
        "--devices", help="Use this many of each process's devices (default: all; on a CPU, one per core).",
        show_default=False
    )] = None,
    chunk_networks: Annotated[int | None, typer.Option(
        "--chunk-networks", help="About how many networks each stored chunk holds (default: ~1 MiB chunks).",
        show_default=False,
    )] = None,
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Join a multi-process run set up by the environment (SLURM, TPU pod, JAX_* variables)."
    )] = False,
    coordinator: Annotated[str | None, typer.Option(
        "--coordinator", help="host:port of process 0, for a multi-process run.", show_default=False
    )] = None,
    num_processes: Annotated[int | None, typer.Option(
        "--num-processes", help="Processes in a multi-process run.", show_default=False
    )] = None,
    process_id: Annotated[int | None, typer.Option(
        "--process-id", help="This process's index in a multi-process run, from 0.", show_default=False
    )] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    theory: Annotated[bool | None, typer.Option(
        "--theory/--no-theory", help="Store theory_* predictions beside (default: for statistics sweeps).",
        show_default=False,
    )] = None,
    stall_timeout: Annotated[float | None, typer.Option(
        "--stall-timeout", help="Seconds a kernel call may take before the run stops (default: generous, "
        "from the plan's estimate).", show_default=False,
    )] = None,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Keep compiled programs in JAX's persistent cache (~/.cache/sweep/jax, "
        "or SWEEP_CACHE_DIR; SWEEP_NO_CACHE=1 turns it off).",
    )] = True,
):
    """Run a sweep and write its dataset to a zarr store."""
    import sweep

    sweep.use_cpu_cores()

    the_spec = sweep.load_spec(spec)
    out = out or Path("results") / f"{the_spec.name}.zarr"
    if distributed or coordinator is not None or num_processes is not None or process_id is not None:
        from sweep.engine import distributed as multiprocess

        multiprocess.initialize(coordinator, num_processes, process_id)
    try:
        sweep.run(the_spec, out=out, memory=memory, overwrite=overwrite, progress=progress, resume=resume,
                  devices=devices, chunk_networks=chunk_networks, with_theory=theory, stall_timeout=stall_timeout,
                  cache=None if cache else False)
    except Interrupted as e:
        print(f"sweep: {e}; continue with: sweep run {spec} --out {out} --resume", file=sys.stderr)
        raise typer.Exit(130) from None
    except Stalled as e:
        # The stuck call holds threads inside XLA that no exit handler could join.
        print(f"sweep: error: {e}; continue with: sweep run {spec} --out {out} --resume", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(3)
    typer.echo(f"wrote {out}  (inspect: sweep show {out})")


@app.command("theory")
def theory_command(
    spec: Annotated[Path, typer.Argument(help="The sweep spec, a TOML file.")],
    out: Annotated[Path, typer.Option("--out", help="Zarr store to write.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing store.")] = False,
):
    """Write the mean-field and finite-width predictions for a spec's grid, without running it."""
    from sweep import theory
    from sweep.config import Spec
    from sweep.io import provenance, zarr_store

    the_spec = Spec.from_toml(spec)
    zarr_store.check_writable(out, overwrite)
    predictions = theory.predict(the_spec)
    predictions.attrs.update(provenance.provenance(the_spec))
    zarr_store.write(predictions, out, overwrite=overwrite)
    typer.echo(f"wrote {out}")


@app.command()
def show(path: Annotated[Path, typer.Argument(help="A store written by `sweep run`.")]):
    """Print a readable summary of a store."""
    from sweep.io import describe, zarr_store

    typer.echo(describe.describe(zarr_store.load(path)))


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="A store written by `sweep run`.")],
    netcdf: Annotated[Path, typer.Option("--netcdf", help="The netCDF file to write.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
):
    """Export a store to netCDF."""
    from sweep.io import netcdf as netcdf_io
    from sweep.io import zarr_store

    netcdf_io.export_netcdf(zarr_store.load(path).load(), netcdf, overwrite=overwrite)
    typer.echo(f"wrote {netcdf}")


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Stores written by `sweep run`, statistics or training.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md, report.html and figures/.")] = Path("report"),
):
    """Build every figure and table the stores' data supports, and a report of them."""
    from sweep.report import build

    typer.echo(f"wrote {build(results, out)}")


@app.command()
def plot(
    path: Annotated[Path, typer.Argument(help="A store written by `sweep run`.")],
    kind: Annotated[str, typer.Option(
        "--kind", help="forward, backward, gradients, phase, spread, spectra, training or coord_check.")],
    out: Annotated[Path, typer.Option("--out", help="The figure's file: .png or .pdf.")],
    sel: Annotated[list[str] | None, typer.Option("--sel", help="key=value: fix an axis by label (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
):
    """Draw one figure of a store, with axes fixed by label."""
    import matplotlib.pyplot as plt

    from sweep.io import zarr_store
    from sweep.report import KINDS, figure, parse_selection, survey
    from sweep.report.build import with_theory

    if kind not in KINDS:
        raise SpecError("--kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if out.suffix not in (".png", ".pdf"):
        raise SpecError("--out", f"{str(out)!r} must end in .png or .pdf")
    if out.exists() and not overwrite:
        raise SpecError("--out", f"{str(out)!r} exists; pass --overwrite to replace it")
    s = survey(with_theory(zarr_store.load(path)))
    fig = figure(s, kind, parse_selection(s.ds, sel or []))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    typer.echo(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning ``SpecError`` into one line and exit code 2."""
    try:
        app(args=argv)
    except SpecError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # typer ends every command this way
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
