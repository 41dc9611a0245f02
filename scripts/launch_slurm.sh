#!/usr/bin/env bash
# One sweep on several GPU nodes under SLURM: one process per node, each using all its GPUs.
#
#   sbatch --nodes=4 scripts/launch_slurm.sh SPEC.toml /shared/results/NAME.zarr [sweep run options]
#
# OUT must be on a file system that every node mounts at the same path. JAX finds the other
# processes from SLURM's variables (--distributed). The job can be submitted again as it is:
# --resume continues an unfinished store and computes only what is missing. Two minutes
# before the time limit SLURM sends SIGTERM, and every process stops after its current
# kernel call with what it finished stored.
#
#SBATCH --job-name=sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --output=sweep-%j.out

set -euo pipefail

spec=${1:?usage: sbatch scripts/launch_slurm.sh SPEC.toml OUT.zarr [sweep run options]}
out=${2:?usage: sbatch scripts/launch_slurm.sh SPEC.toml OUT.zarr [sweep run options]}
shift 2

# Progress bars do not belong in a log file; the store's .sweep/runs/ logs say what each process did.
srun --kill-on-bad-exit=1 sweep run "$spec" --out "$out" --distributed --resume --no-progress "$@"
