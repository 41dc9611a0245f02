#!/usr/bin/env bash
# One sweep on every host of a multi-host Cloud TPU slice: one process per host, each using its chips.
#
#   scripts/launch_tpu.sh TPU_NAME ZONE SPEC.toml /shared/results/NAME.zarr [sweep run options]
#
# Every host needs this repository at the same path (SWEEP_REPO, default ~/sweep) and OUT on
# a file system that every host mounts at the same path (e.g. a Filestore NFS share). JAX
# finds the other hosts by itself on Cloud TPU (--distributed). Run the same command again
# to continue an interrupted sweep: --resume computes only what is missing.

set -euo pipefail

usage="usage: scripts/launch_tpu.sh TPU_NAME ZONE SPEC.toml OUT.zarr [sweep run options]"
tpu=${1:?$usage}
zone=${2:?$usage}
spec=${3:?$usage}
out=${4:?$usage}
shift 4
repo=${SWEEP_REPO:-'~/sweep'}

# Quoted once here, for the shell on each host.
options=$(printf ' %q' "$spec" --out "$out" --distributed --resume --no-progress "$@")

gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd $repo && python3 -m pip install -q -e . 'jax[tpu]' && python3 -m sweep run$options"
