"""Corrupt and partial checkpoints: a restore skips them with a warning and resumes from the
newest good one, with that checkpoint's data position; a checkpoint of another model is refused
in one line."""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from configs import fm
from configs import t2i
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import runtime
from ntm_jax.train import loop


def micro():
  return t2i.get_config("micro")  # 20 steps, a checkpoint every 10, 3 kept


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A finished micro run (checkpoints 10 and 20) and its runtime."""
  workdir = str(tmp_path_factory.mktemp("integrity"))
  config = micro()
  loop.train_and_evaluate(config, workdir)
  return workdir, config, runtime.build(config)


def _copy(run, tmp_path):
  workdir, config, rt = run
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  return copy, config, rt


def _restore(workdir, config, rt, step=None, move_bad=False):
  """(state, the next training batch) restored from workdir, as a resuming training does."""
  data_iter = iter(loaders.train_loader(config, text_lib.tokenizer_for(config),
                                        config.train.batch_size))
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  state = checkpointing.restore(manager, rt.abstract_state, data_iter, step=step,
                                move_bad=move_bad)
  return state, next(data_iter)


def _step_dir(workdir, step=20):
  return os.path.join(workdir, "checkpoints", str(step))


def _flip_bytes(workdir):
  rng = np.random.default_rng(0)
  data_files = [f for f in glob.glob(os.path.join(_step_dir(workdir), "state", "**", "d", "*"),
                                     recursive=True) if os.path.isfile(f)]
  assert data_files
  for path in data_files:
    with open(path, "r+b") as f:
      data = bytearray(f.read())
      for i in rng.choice(len(data), min(64, len(data)), replace=False):
        data[i] ^= 0xFF
      f.seek(0)
      f.write(data)


def _truncate(workdir):
  data_files = [f for f in glob.glob(os.path.join(_step_dir(workdir), "state", "**", "d", "*"),
                                     recursive=True) if os.path.isfile(f)]
  largest = max(data_files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 2)


def _drop_metadata(workdir):
  os.remove(os.path.join(_step_dir(workdir), "_CHECKPOINT_METADATA"))


def _half_written(workdir):
  # What a crash during the save of step 20 leaves: orbax's temporary directory, never renamed.
  os.rename(_step_dir(workdir), _step_dir(workdir) + ".orbax-checkpoint-tmp-1764")


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate, _drop_metadata, _half_written])
def test_a_resume_skips_a_damaged_newest_checkpoint(run, tmp_path, caplog, damage):
  workdir, config, rt = _copy(run, tmp_path)
  expected_state, expected_batch = _restore(workdir, config, rt, step=10)
  damage(workdir)
  with caplog.at_level(logging.WARNING):
    state, batch = _restore(workdir, config, rt, move_bad=True)
  assert int(state.step) == 10
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected_state)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  for key in expected_batch:  # the data position of step 10, not of step 20
    np.testing.assert_array_equal(batch[key], expected_batch[key])
  if damage is not _half_written:  # still a step directory: named, and moved aside
    assert "Skipped bad checkpoints" in caplog.text and "step 20: " in caplog.text
    assert "restored step 10" in caplog.text
    assert os.path.isdir(os.path.join(workdir, "checkpoints_bad", "20"))
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  assert manager.all_steps() == [10]


def test_training_resumes_past_a_corrupt_checkpoint_and_saves_that_step_again(run, tmp_path):
  workdir, config, _ = _copy(run, tmp_path)
  _flip_bytes(workdir)
  state = loop.train_and_evaluate(config, workdir)
  assert int(state.step) == 20
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  assert manager.all_steps() == [10, 20]
  assert checkpointing.restore(manager, runtime.build(config).abstract_state).step == 20


def test_an_altered_finite_value_is_caught_by_the_fingerprint(run, tmp_path, monkeypatch):
  workdir, config, rt = _copy(run, tmp_path)
  # Save step 30 with a fingerprint of other values: as if the arrays changed on disk.
  state, _ = _restore(workdir, config, rt, step=20)
  real = checkpointing.fingerprint
  monkeypatch.setattr(checkpointing, "fingerprint",
                      lambda s: {k: v + 1 for k, v in real(s).items()})
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  data_iter = iter(loaders.train_loader(config, text_lib.tokenizer_for(config),
                                        config.train.batch_size))
  checkpointing.save(manager, 30, state.replace(step=state.step + 10), data_iter)
  monkeypatch.setattr(checkpointing, "fingerprint", real)
  with pytest.raises(checkpointing.CorruptCheckpointError, match="altered on disk"):
    _restore(workdir, config, rt, step=30)
  assert int(_restore(workdir, config, rt)[0].step) == 20


def test_non_finite_values_are_refused_and_eval_falls_back(run, tmp_path, caplog):
  workdir, config, rt = _copy(run, tmp_path)
  state, _ = _restore(workdir, config, rt, step=20)
  poisoned = jax.tree.map(lambda x: x * np.nan if np.issubdtype(x.dtype, np.floating) else x,
                          state.params)
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  checkpointing.save(manager, 30, state.replace(step=state.step + 10, params=poisoned))
  with caplog.at_level(logging.WARNING):
    _, restored = checkpointing.restore_latest(config, workdir)  # as --mode=eval/sample do
  assert int(restored.step) == 20
  assert "step 30: holds NaN or inf values" in caplog.text
  assert os.path.isdir(_step_dir(workdir, 30))  # read-only modes move nothing


def test_a_checkpoint_of_another_model_is_refused_in_one_line(run):
  workdir, _, _ = run
  with pytest.raises(ValueError, match="holds a checkpoint of another model") as error:
    checkpointing.restore_latest(fm.get_config("micro"), workdir)
  assert "\n" not in str(error.value) and len(str(error.value)) < 400


def test_fewer_than_two_kept_checkpoints_is_a_config_error():
  config = micro()
  config.train.keep_checkpoints = 1
  with pytest.raises(ValueError, match="keep at least 2"):
    loop.validate(config, config.train.batch_size)
