#!/usr/bin/env bash
# One host's share of a multi-host run (launch/tpu_pod.sh starts it on every worker, detached
# with nohup, so a dropped ssh session does not stop training).
#
#   bash launch/on_host.sh WORKDIR CONFIG [ntm_jax.main arguments...]
#
# Output goes to logs/train-HOST.log on the worker (follow it with tail -f) and, when the run
# ends, is copied to WORKDIR/logs/ (gcloud storage for a gs:// workdir, cp otherwise).
set -uo pipefail
cd "$(dirname "$0")/.."
WORKDIR="$1"
CONFIG="$2"
shift 2
mkdir -p logs
LOG="logs/train-$(hostname).log"
. .venv/bin/activate
python -m ntm_jax.main --config="$CONFIG" --workdir="$WORKDIR" --distributed "$@" >>"$LOG" 2>&1
STATUS=$?
echo "exit status $STATUS" >>"$LOG"
if [[ "$WORKDIR" == gs://* ]]; then
  gcloud storage cp "$LOG" "$WORKDIR/logs/" >/dev/null 2>&1 || true
else
  mkdir -p "$WORKDIR/logs" && cp "$LOG" "$WORKDIR/logs/" || true
fi
exit "$STATUS"
