"""orbax checkpoints of the whole run: TrainState (params, optimizer, EMA, RNG, step) and the
grain iterator's position, saved together so a resumed run continues exactly. Likelihood
training and denoiser distillation each keep their own (workdir/ and workdir/distill/)."""

import os

import grain
import ml_collections
import orbax.checkpoint as ocp

from ntm_jax import files
from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.runtime import runtime as runtime_lib


def make_manager(run_dir: str, train: ml_collections.ConfigDict,
                 asynchronous: bool = True) -> ocp.CheckpointManager:
  """Checkpoints under run_dir/checkpoints, keeping `train.keep_checkpoints` of them.

  run_dir is the workdir for likelihood training, workdir/distill for the denoiser."""
  options = ocp.CheckpointManagerOptions(max_to_keep=train.keep_checkpoints,
                                         enable_async_checkpointing=asynchronous)
  return ocp.CheckpointManager(files.path(run_dir) / "checkpoints",
                               options=options, item_names=("state", "data"))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator=None) -> None:
  items = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items), force=True)


def restore(manager: ocp.CheckpointManager, abstract_state, data_iterator=None, step=None):
  """The state at `step` (default: latest), sharded like `abstract_state`; the data iterator is
  moved to its saved position. Returns None when there is no checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))["state"]


def check_conditioning(config: ml_collections.ConfigDict, rt, workdir: str, fresh: bool) -> None:
  """Records what a fresh run is conditioned on (autoencoder latents, text encoder); refuses to
  resume or load a run with another. Process 0 records first; the other hosts then check."""
  def check():
    if rt.codec is not None:
      latents.check_run(workdir, rt.codec, fresh)
    if methods.get(config).text_conditioned:
      text_lib.check_run(workdir, config.model.text_encoder, fresh)
  files.process_0_first(check, "conditioning recorded")


def restore_latest(config: ml_collections.ConfigDict, workdir: str, devices=None):
  """(runtime, state) of config's model from the latest checkpoint in workdir, or a clear
  error (also when the run was trained on another autoencoder's latents or text encoder)."""
  rt = runtime_lib.build(config, devices)
  manager = make_manager(workdir, config.train, asynchronous=False)
  if manager.latest_step() is not None:  # before shapes can clash
    check_conditioning(config, rt, workdir, fresh=False)
  state = restore(manager, rt.abstract_state)
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: train "
                            "first with --mode=train and the same --config")
  return rt, state
