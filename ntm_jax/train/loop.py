"""Likelihood training (Algorithm 1): train_and_evaluate(config, workdir).

Resumes from the latest checkpoint (state and data position), writes metrics through clu
(TensorBoard + log), reports progress, saves sample grids as PNG, evaluates held-out NLL, and on
SIGTERM saves a checkpoint and exits cleanly.
"""

import os
import signal

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import periodic_actions

from ntm_jax import text as text_lib
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.evaluate import likelihood
from ntm_jax.train import checkpointing
from ntm_jax.train import grids
from ntm_jax.train import runtime as runtime_lib


class NonFiniteError(RuntimeError):
  pass


def tokenizer_for(config: ml_collections.ConfigDict) -> text_lib.HashedWordTokenizer:
  encoder = config.model.text_encoder
  return text_lib.HashedWordTokenizer(encoder.vocab_size, encoder.max_length)


def check_workdir(workdir: str) -> None:
  """Fails before any training when the workdir cannot be created or written."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w", encoding="utf-8") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as err:
    raise PermissionError(f"workdir {workdir!r} is not writable: {err}") from err


def validate(config: ml_collections.ConfigDict) -> None:
  """Config errors a researcher would otherwise meet minutes later, deep inside XLA."""
  devices = jax.device_count()
  if config.train.batch_size % devices:
    raise ValueError(f"train.batch_size {config.train.batch_size} must be divisible by the "
                     f"{devices} devices")
  if config.sample.num_steps not in config.ntm.num_steps:
    logging.warning("sample.num_steps=%d was not trained (ntm.num_steps=%s)",
                    config.sample.num_steps, tuple(config.ntm.num_steps))


def write_samples(rt, params, config, tokenizer, workdir: str, writer, step: int) -> str:
  s = config.sample
  images = grids.sample_prompts(rt.sampler(s), params, tokenizer, list(s.prompts),
                                per_prompt=s.per_prompt, seed=s.seed, batch_size=s.batch_size)
  grid = grids.make_grid(images, s.per_prompt)
  path = os.path.join(workdir, "samples", f"step_{step:08d}.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  grids.save_png(path, grid, scale=max(1, 128 // images.shape[1]))
  writer.write_images(step, {"samples": grid[None]})
  return path


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint and exiting after this step")
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains (or resumes) to config.train.num_steps. Returns the final TrainState."""
  check_workdir(workdir)
  validate(config)
  rt = runtime_lib.build(config)
  tokenizer = tokenizer_for(config)
  loader = pipeline.make_loader(sources.make_source(config.data, "train"), tokenizer,
                                global_batch_size=config.train.batch_size, seed=config.data.seed,
                                worker_count=config.data.worker_count)
  data_iter = iter(loader)
  manager = checkpointing.make_manager(workdir, config)
  state = checkpointing.restore(manager, rt.abstract_state, data_iter)
  if state is None:
    state = rt.create_state()
    logging.info("Starting from scratch")
  start = int(state.step)
  logging.info("Training from step %d to %d", start, config.train.num_steps)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start == 0:
    writer.write_hparams({k: str(v) for k, v in config.to_dict().items()})
  report = periodic_actions.ReportProgress(num_train_steps=config.train.num_steps, writer=writer)
  preemption = _Preemption()
  history, t = [], config.train
  try:
    for step in range(start, t.num_steps):
      # End-to-end: one T per step, a deterministic function of (seed, step) so resumes agree.
      # Pair-wise draws T per example inside the step: one compiled step serves every T.
      num_steps = (int(np.random.default_rng([config.seed, step]).choice(config.ntm.num_steps))
                   if config.ntm.mode == "end_to_end" else max(config.ntm.num_steps))
      batch = rt.global_batch(next(data_iter))
      state, metrics, consecutive_nonfinite = rt.train_step(num_steps)(state, batch)
      history.append(metrics)
      done = step + 1
      report(done)
      if done % t.log_every == 0 or done == t.num_steps:
        # Checked here, not every step, to keep dispatch asynchronous; skipped updates leave the
        # state untouched, so a late check loses nothing.
        if int(consecutive_nonfinite) >= config.optim.max_consecutive_nonfinite:
          raise NonFiniteError(f"{int(consecutive_nonfinite)} consecutive non-finite updates "
                               f"at step {done}; lower optim.peak_lr or check the data")
        writer.write_scalars(done, likelihood.average(history))
        history = []
      if done % t.checkpoint_every == 0 or done == t.num_steps or preemption.requested:
        checkpointing.save(manager, done, state, data_iter)
      if t.sample_every and (done % t.sample_every == 0 or done == t.num_steps):
        path = write_samples(rt, state.ema_params, config, tokenizer, workdir, writer, done)
        logging.info("Wrote samples to %s", path)
      if t.eval_every and (done % t.eval_every == 0 or done == t.num_steps):
        writer.write_scalars(done, likelihood.evaluate(rt, state.ema_params, config, tokenizer,
                                                       done))
      if preemption.requested:
        logging.warning("Stopped at step %d after SIGTERM; the checkpoint is saved", done)
        break
  finally:
    manager.wait_until_finished()
    writer.flush()
    preemption.restore()
  return state
