"""orbax checkpoints of the whole run: TrainState (params, optimizer, EMA, RNG, step) and the
grain iterator's position, saved together so a resumed run continues exactly. Likelihood
training and denoiser distillation each keep their own (workdir/ and workdir/distill/).

Every checkpoint also holds a fingerprint of its state: per leaf, the sum modulo 2^32 of the
leaf's bit patterns (exact, and independent of how the arrays are sharded). A restore checks
the state against it and for non-finite values; a checkpoint that cannot be read, whose save did
not finish, that differs from its fingerprint or that holds NaN or inf is skipped with a warning
naming it, and the newest good one is restored instead (with its own data position).
"""

import ast
import io
import json
import logging as logging_lib
import os
import re
import sys

import grain
import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from ntm_jax import errors
from ntm_jax import files
from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.runtime import runtime as runtime_lib
from ntm_jax.runtime import sharding

ITEMS = ("state", "data", "fingerprint")


class _FailedReadChatter(logging_lib.Filter):
  """Drops asyncio's "Task exception was never retrieved" for orbax's array reads: after one
  read of a corrupt checkpoint fails, every other pending read logs its own copy."""

  def filter(self, record):
    return "async_deserialize" not in record.getMessage()


logging_lib.getLogger("asyncio").addFilter(_FailedReadChatter())


class CorruptCheckpointError(errors.UserError, RuntimeError):
  """No checkpoint of a run could be restored: each one is unreadable, altered or non-finite."""


def make_manager(run_dir: str, train: ml_collections.ConfigDict,
                 asynchronous: bool = True) -> ocp.CheckpointManager:
  """Checkpoints under run_dir/checkpoints, keeping `train.keep_checkpoints` of them.

  run_dir is the workdir for likelihood training, workdir/distill for the denoiser."""
  options = ocp.CheckpointManagerOptions(max_to_keep=train.keep_checkpoints,
                                         enable_async_checkpointing=asynchronous)
  return ocp.CheckpointManager(files.path(run_dir) / "checkpoints", options=options,
                               item_names=ITEMS)


def _leaf_checksum(x):
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32,
                                          8: jnp.uint64}[x.dtype.itemsize])
  if x.dtype.itemsize == 8:  # both halves, so a flip in the high word shows too
    bits = (bits & 0xFFFFFFFF) ^ (bits >> 32)
  return jnp.sum(bits.astype(jnp.uint32), dtype=jnp.uint32)


@jax.jit
def _checksums(state):
  return jax.tree.map(_leaf_checksum, state)


@jax.jit
def _all_finite(state):
  floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in floats])) if floats else True


def fingerprint(state) -> dict:
  """{leaf path: uint32 checksum of its bit patterns}, the same for any sharding."""
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(_checksums(state)))[0]
  return {jax.tree_util.keystr(path): int(value) for path, value in leaves}


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  items = {"state": ocp.args.StandardSave(state),
           "fingerprint": ocp.args.JsonSave(fingerprint(state))}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items), force=True)


def _saved_paths(manager, step: int):
  """The leaf paths of a checkpoint's state ('params/.../kernel', as sharding.path_string
  writes them), from orbax's own metadata (None if unreadable)."""
  path = files.path(str(manager.directory)) / str(step) / "state" / "_METADATA"
  try:
    keys = [[str(k) for k in ast.literal_eval(key)]
            for key in json.loads(path.read_text())["tree_metadata"]]
  except (OSError, ValueError, KeyError):
    return None
  return {"/".join(k[:-1] if k and k[-1] == "value" else k) for k in keys}


def _paths(tree) -> set:
  return {sharding.path_string(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_model(manager, step: int, abstract_state, run_dir: str) -> None:
  """Refuses, in one line, a checkpoint of another model (e.g. a flow-matching config pointed
  at an NTM run): its parameter paths differ from those the config builds."""
  saved = _saved_paths(manager, step)
  if saved is None:
    return  # unreadable metadata: the restore itself reports it
  params = lambda paths: {p for p in paths if p.startswith("params/")}
  wanted, saved = params(_paths(abstract_state)), params(saved)
  missing, unexpected = sorted(wanted - saved), sorted(saved - wanted)
  if missing or unexpected:
    example = (missing or unexpected)[0]
    raise errors.RunMismatchError(
        f"{run_dir} holds a checkpoint of another model than --config builds ({len(missing)} "
        f"parameters missing, {len(unexpected)} unexpected, e.g. {example}): use the config "
        "file, preset and model overrides it was trained with (configs/t2i.py, fm.py, "
        "ntm_from_fm.py or autoencoder.py)")


def _read_error(err: Exception) -> str:
  """The part of a failed read's error a person needs: what failed, in which file (the cause
  is often a few exceptions down the chain)."""
  chain = []
  while err is not None and len(chain) < 8:
    chain.append(str(err))
    err = err.__cause__ or err.__context__
  text = "\n".join(chain)
  files_named = re.findall(r'local file "([^"]+)"', text)
  where = f" in {files_named[-1]}" if files_named else ""
  for pattern, what in ((r"data corruption", "data corruption detected"),
                        (r"byte range .* is not valid", "a data file is shorter than recorded "
                                                        "(truncated)"),
                        (r"no such file|not found", "a file is missing")):
    if re.search(pattern, text, re.IGNORECASE):
      return what + where
  return (text.strip().splitlines() or ["unknown error"])[0][:160]


def _restore_step(manager, step: int, abstract_state, data_iterator):
  """The state of one checkpoint, verified; raises CorruptCheckpointError saying why not."""
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  step_dir = files.path(str(manager.directory)) / str(step)
  if not (step_dir / "_CHECKPOINT_METADATA").exists():  # orbax writes it when a save finishes
    raise CorruptCheckpointError("partial (no _CHECKPOINT_METADATA: its save did not finish)")
  has_fingerprint = (step_dir / "fingerprint").exists()
  if has_fingerprint:
    items["fingerprint"] = ocp.args.JsonRestore()
  # A failed read makes orbax's pending array reads print one "Event loop is closed"
  # traceback each from their callbacks, also while the next checkpoint is read; they say
  # nothing the warning in restore() does not. (Logs go through absl's handler, not here.)
  stderr, sys.stderr = sys.stderr, io.StringIO()
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as err:  # pylint: disable=broad-except
    raise CorruptCheckpointError(f"unreadable ({_read_error(err)})") from err
  finally:
    sys.stderr = stderr
  state = restored["state"]
  if has_fingerprint:
    expected, actual = restored["fingerprint"], fingerprint(state)
    altered = sorted(k for k in expected if expected[k] != actual.get(k))
    if altered:
      raise CorruptCheckpointError(f"altered on disk ({len(altered)} arrays differ from the "
                                   f"fingerprint saved with them, e.g. {altered[0]})")
  if not bool(_all_finite(state)):
    raise CorruptCheckpointError("holds NaN or inf values")
  return state


def quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves a bad checkpoint out of the way of the run that resumes before it (which will save
  that step again), to checkpoints_bad/STEP; returns where it went."""
  source = files.path(str(manager.directory)) / str(step)
  target = files.path(str(manager.directory)).parent / "checkpoints_bad" / str(step)
  if files.writes():
    files.writable_directory(str(target.parent))
    if target.exists():
      target = target.parent / f"{step}_{len(list(target.parent.iterdir()))}"
    source.rename(target)
  manager.reload()
  return str(target)


def restore(manager: ocp.CheckpointManager, abstract_state, data_iterator=None, step=None,
            move_bad: bool = False):
  """The state of the newest good checkpoint (or of `step`), sharded like `abstract_state`, with
  the data iterator moved to that checkpoint's position. Bad newer checkpoints are skipped with
  a warning that names them and the step restored (and, with move_bad, as a resuming training
  asks, moved to checkpoints_bad/). Returns None when there is no checkpoint; raises
  CorruptCheckpointError when none is good."""
  steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
  run_dir = os.path.dirname(str(manager.directory))
  if steps:
    check_model(manager, steps[0], abstract_state, run_dir)
  bad = []
  for candidate in steps:
    try:
      state = _restore_step(manager, candidate, abstract_state, data_iterator)
    except CorruptCheckpointError as err:
      bad.append((candidate, f"step {candidate}: {err}"))
      continue
    if bad:
      moved = [quarantine(manager, s) for s, _ in bad] if move_bad else []
      logging.warning("Skipped bad checkpoints in %s (%s); restored step %d, the newest good "
                      "one%s", manager.directory, "; ".join(why for _, why in bad), candidate,
                      f"; moved the bad ones to {', '.join(moved)}" if moved else "")
    return state
  if bad:
    raise CorruptCheckpointError(f"no usable checkpoint in {manager.directory}: "
                                 + "; ".join(why for _, why in bad))
  return None


def check_conditioning(config: ml_collections.ConfigDict, rt, workdir: str, fresh: bool) -> None:
  """Records what a fresh run is conditioned on (autoencoder latents, text encoder); refuses to
  resume or load a run with another. Process 0 records first; the other hosts then check."""
  def check():
    if rt.codec is not None:
      latents.check_run(workdir, rt.codec, fresh)
    if methods.get(config).text_conditioned:
      text_lib.check_run(workdir, config.model.text_encoder, fresh)
  files.process_0_first(check, "conditioning recorded")


def restore_latest(config: ml_collections.ConfigDict, workdir: str, devices=None,
                   step: int | None = None):
  """(runtime, state) of config's model from the latest checkpoint in workdir (or from the one
  of `step`, e.g. a point of a training curve), or a clear error (also when the run was trained
  on another autoencoder's latents or text encoder)."""
  rt = runtime_lib.build(config, devices)
  manager = make_manager(workdir, config.train, asynchronous=False)
  saved = manager.all_steps()
  if step is not None and step not in saved:
    raise errors.MissingInputError(
        f"no checkpoint of step {step} in {os.path.join(workdir, 'checkpoints')}; it holds steps "
        f"{', '.join(map(str, saved)) or 'none'}")
  if manager.latest_step() is not None:  # before shapes can clash
    check_conditioning(config, rt, workdir, fresh=False)
  state = restore(manager, rt.abstract_state, step=step)
  if state is None:
    raise errors.MissingInputError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: train "
                            "first with --mode=train and the same --config")
  return rt, state
