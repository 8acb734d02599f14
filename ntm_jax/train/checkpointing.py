"""orbax checkpoints of the whole run: TrainState (params, optimizer, EMA, RNG, step) and the
grain iterator's position, saved together so a resumed run continues exactly."""

import os

import grain
import ml_collections
import orbax.checkpoint as ocp


def make_manager(workdir: str, config: ml_collections.ConfigDict,
                 asynchronous: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.train.keep_checkpoints,
                                         enable_async_checkpointing=asynchronous)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
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
