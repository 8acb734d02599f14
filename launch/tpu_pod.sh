#!/usr/bin/env bash
# Trains on every host of a Cloud TPU VM slice (v4 / v5e / v5p / v6e) with jax.distributed.
#
#   TPU=my-v5p-64 ZONE=us-east5-a WORKDIR=gs://my-bucket/ntm bash launch/tpu_pod.sh \
#       --config.mesh.data=8 --config.mesh.fsdp=-1
#
# Copies this checkout to every worker, installs it with the TPU extra (libtpu matching the
# pinned jax), then starts the same command on all workers; jax.distributed.initialize() finds
# the slice's hosts by itself. The workdir must be a bucket (or a filesystem every host mounts):
# checkpoints, metrics and grids go there, and a rerun of this script resumes from them.
# Extra arguments are passed to ntm_jax.main (config overrides, --mode=...).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (gs://...)}"
CONFIG="${CONFIG:-configs/t2i.py}"
REMOTE_DIR="${REMOTE_DIR:-ntm_jax}"
cd "$(dirname "$0")/.."

tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --worker=all; }
tpu ssh "$TPU" --command="mkdir -p $REMOTE_DIR"
tpu scp --recurse setup.py README.md ntm_jax configs "$TPU:$REMOTE_DIR/"
tpu ssh "$TPU" --command="cd $REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate && \
pip install -q -e '.[tpu]' && python -m ntm_jax.main --config=$CONFIG --workdir=$WORKDIR \
--distributed $(printf '%q ' "$@")"
