#!/usr/bin/env bash
# Trains on every host of a Cloud TPU VM slice (v4 / v5e / v5p / v6e) with jax.distributed.
#
#   TPU=my-v5p-64 ZONE=us-east5-a WORKDIR=gs://my-bucket/ntm bash launch/tpu_pod.sh \
#       --config.mesh.data=8 --config.mesh.fsdp=-1
#
# Copies this checkout to every worker, installs it with the TPU extra (libtpu matching the
# pinned jax), then starts launch/on_host.sh on all workers, detached (nohup): the script returns
# and the run survives a dropped ssh session. jax.distributed.initialize() finds the slice's hosts
# by itself. The workdir must be a bucket (or a filesystem every host mounts): checkpoints,
# metrics and grids go there, and a rerun of this script resumes from them. Each worker logs to
# ~/$REMOTE_DIR/logs/train-HOST.log (copied to WORKDIR/logs/ when the run ends):
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=0 \
#       --command="tail -f ntm_jax/logs/train-*.log"
# Extra arguments are passed to ntm_jax.main (config overrides, --mode=...).
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR (gs://...)}"
CONFIG="${CONFIG:-configs/t2i.py}"
REMOTE_DIR="${REMOTE_DIR:-ntm_jax}"
cd "$(dirname "$0")/.."

tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --worker=all; }
tpu ssh "$TPU" --command="mkdir -p $REMOTE_DIR"
tpu scp --recurse setup.py README.md ntm_jax configs launch "$TPU:$REMOTE_DIR/"
tpu ssh "$TPU" --command="cd $REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate && \
pip install -q -e '.[tpu]'"
tpu ssh "$TPU" --command="cd $REMOTE_DIR && nohup bash launch/on_host.sh $WORKDIR $CONFIG \
$(printf '%q ' "$@") >/dev/null 2>&1 </dev/null &"
echo "Started on every worker of $TPU; logs: ~/$REMOTE_DIR/logs/ on each, then $WORKDIR/logs/"
