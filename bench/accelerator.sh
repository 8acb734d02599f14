#!/usr/bin/env bash
# One prepared accelerator run: train-step MFU in bf16, sampler images/s, and the `small` NTM and
# FM trained for as many steps as fit with ShapesEval at the end; about 8 minutes on one H200-class
# GPU or a TPU host. Prints one JSON object (bench/accelerator.py says what each field is).
#
# Set-up on the machine: pip install -e '.[test]' plus jax for the chip, e.g.
#   pip install -U "jax[cuda12]"    or    pip install -U "jax[tpu]"
# then: bash bench/accelerator.sh [--train_s=75] [--mfu_candidates=:64,small:256] > accel.json
set -euo pipefail
cd "$(dirname "$0")/.."
# Recompiles of the same step (calibration, then training) hit the persistent cache.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/ntm_jax_accelerator_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
exec timeout 600 python bench/accelerator.py "$@"
