"""Training: train_and_evaluate(config, workdir) trains config's method (methods/: the NTM by
likelihood, Algorithm 1, the flow-matching baseline or the autoencoder); run_steps is the loop
it shares with distillation.

Resumes from the latest checkpoint (state and data position), writes metrics through clu
(TensorBoard + log), reports progress, saves sample grids as PNG, evaluates held-out NLL, and on
SIGTERM saves a checkpoint and exits cleanly.
"""

import os
import signal
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from jax.experimental import multihost_utils

from ntm_jax import errors
from ntm_jax import files
from ntm_jax import grids
from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.data import pipeline
from ntm_jax.methods import autoencoder as autoencoder_method
from ntm_jax.methods import sampling
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import held_out
from ntm_jax.runtime import runtime as runtime_lib
from ntm_jax.train import autoencoding
from ntm_jax.train import fm_init


class NonFiniteError(errors.UserError, RuntimeError):
  """Training stopped: too many consecutive updates were NaN or inf."""


def check_workdir(workdir: str) -> None:
  """Fails before any training when the workdir cannot be created or written (by this process:
  on a pod every host checks its own probe file, so none deletes another's)."""
  try:
    probe = files.writable_directory(workdir) / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as err:
    raise errors.NotWritableError(f"workdir {workdir!r} is not writable: {err}") from err


def validate(config: ml_collections.ConfigDict, batch_size: int, name: str = "train") -> None:
  """Config errors a researcher would otherwise meet minutes later, deep inside XLA."""
  devices = jax.device_count()
  if batch_size % devices:
    raise ValueError(f"{name}.batch_size {batch_size} must be divisible by the {devices} devices")
  if config.init.source not in ("scratch", "flow_matching"):
    raise ValueError(f"init.source must be 'scratch' or 'flow_matching', got "
                     f"{config.init.source!r}")
  if (config.init.source == "flow_matching") != bool(config.init.fm_workdir):
    raise ValueError("init.source='flow_matching' and init.fm_workdir go together: set "
                     "--config.init.fm_workdir=DIR of a configs/fm.py run with the same preset")
  pipeline.validate_channels(config.data.channels)
  if config.data.channels == 1 and config.data.source == "shapes":
    raise ValueError("data.channels=1 drops colour, which every shapes caption names; use "
                     "data.channels=3 on the shapes data")
  for section, keep in (("train", config.train.keep_checkpoints),
                        ("distill.train", config.distill.train.keep_checkpoints)):
    if keep < 2:
      raise ValueError(f"{section}.keep_checkpoints={keep}: keep at least 2, so that a resume "
                       "can fall back when the newest checkpoint is corrupt")
  methods.get(config).validate(config)
  latents.validate(config)
  sampling.validate_settings(config, config.sample)


def write_samples(sampler: Callable, params, config, tokenizer, run_dir: str, writer,
                  step: int) -> str:
  """A grid of config.sample's prompts at run_dir/samples/step_N.png and in TensorBoard."""
  s = config.sample
  images = grids.sample_prompts(sampler, params, tokenizer, list(s.prompts),
                                per_prompt=s.per_prompt, seed=s.seed, batch_size=s.batch_size)
  grid = grids.make_grid(images, s.per_prompt)
  path = os.path.join(run_dir, "samples", f"step_{step:08d}.png")
  grids.save_png(path, grid, scale=max(1, 128 // images.shape[1]))
  writer.write_images(step, {"samples": grid[None]})
  return path


class _Preemption:
  """SIGTERM -> save a checkpoint and stop after a step.

  One process: a signal handler sets a flag. Several (jax.distributed): JAX's coordination
  service catches SIGTERM on any host, and reached_preemption_sync_point makes every host stop
  at the same step, so none is left alone inside a collective checkpoint save.
  """

  def __init__(self):
    self.requested = False
    self._hosts = jax.process_count()
    if self._hosts == 1:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint and exiting after this step")
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step` (every host gets the same answer)."""
    if self._hosts > 1 and not self.requested:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def restore(self):
    if self._hosts == 1:
      signal.signal(signal.SIGTERM, self._previous)


class _ProgressLine:
  """One log line every `every_s` seconds (and at the last step): step/total, the latest logged
  loss (the NTM's NLL in nats/dim), steps/s since the previous line, and the ETA at the mean
  speed so far (so one slow interval, e.g. a periodic evaluation, does not swing it)."""

  def __init__(self, start: int, total: int, every_s: float = 25.0):
    self.total, self.every_s = total, every_s
    self.last_step, self.last_time = start, None
    self.first_step, self.first_time = start, None
    self.created = time.monotonic()

  def __call__(self, step: int, metrics: dict) -> None:
    now = time.monotonic()
    if self.last_time is None:  # the clock starts after the first step: compiling is not speed
      self.last_step, self.last_time = step, now
      self.first_step, self.first_time = step, now
      logging.info("step %d/%d | compiled and ran the first step in %s", step, self.total,
                   _duration(now - self.created))
      return
    if now - self.last_time < self.every_s and step != self.total:
      return
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    mean_rate = (step - self.first_step) / max(now - self.first_time, 1e-9)
    eta = (self.total - step) / mean_rate if mean_rate > 0 else float("inf")
    shown = {"nll_nats_per_dim": "NLL {:.4g} nats/dim", "fm_loss": "velocity MSE {:.4g}",
             "mse": "MSE {:.4g}", "loss": "loss {:.4g}"}
    name = next((k for k in shown if k in metrics), None)
    value = " | " + shown[name].format(metrics[name]) if name else ""
    logging.info("step %d/%d%s | %.2f steps/s | ETA %s", step, self.total, value, rate,
                 _duration(eta))
    self.last_step, self.last_time = step, now


def _duration(seconds: float) -> str:
  if seconds == float("inf"):
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def run_steps(state, *, train: ml_collections.ConfigDict, step_fn: Callable, data_iter,
              manager, writer, max_consecutive_nonfinite: int, actions=()):
  """The loop skeleton every training mode shares, from state.step to train.num_steps.

  step_fn(state, step, batch) -> (state, metrics, consecutive non-finite updates). Metrics are
  averaged and written every train.log_every steps, checkpoints (state + data position) saved
  every train.checkpoint_every steps, and each (every, action(state, done)) of `actions` runs every
  `every` steps (0: never); all three also at the last step. SIGTERM saves and stops cleanly.
  """
  start = int(state.step)
  report = periodic_actions.ReportProgress(num_train_steps=train.num_steps, writer=writer)
  progress = _ProgressLine(start, train.num_steps)
  began = time.monotonic()
  preemption = _Preemption()
  history, latest = [], {}
  try:
    for step in range(start, train.num_steps):
      state, metrics, consecutive_nonfinite = step_fn(state, step, next(data_iter))
      if history:
        # At most two steps in flight: the progress line then counts finished steps, and comes
        # every ~25 s however many steps lie between metric writes.
        jax.block_until_ready(history[-1])
      history.append(metrics)
      done = step + 1
      last = done == train.num_steps
      report(done)
      if done % train.log_every == 0 or last:
        # Checked here, not every step, to keep dispatch asynchronous; skipped updates leave the
        # state untouched, so a late check loses nothing.
        if int(consecutive_nonfinite) >= max_consecutive_nonfinite:
          origin = "a verified checkpoint" if start else "its initialization"
          raise NonFiniteError(
              f"{int(consecutive_nonfinite)} consecutive non-finite updates at step {done}. The "
              f"state they started from was finite ({origin}, step {start}; restores check), "
              "so the updates themselves overflow: lower the learning rate (optim.peak_lr; "
              "distill.optim.peak_lr for --mode=distill) or look for NaN / inf in the inputs "
              "(e.g. an autoencoder's latents). The last checkpoint holds the last finite state")
        latest = held_out.average(history)
        writer.write_scalars(done, latest)
        history = []
      progress(done, latest)
      stop = preemption.reached(done)
      if done % train.checkpoint_every == 0 or last or stop:
        checkpointing.save(manager, done, state, data_iter)
        logging.info("Checkpoint %d saved to %s", done, manager.directory)
      for every, action in actions:
        if every and (done % every == 0 or last):
          action(state, done)
      if stop:
        logging.warning("Stopped at step %d after SIGTERM; the checkpoint is saved", done)
        break
    if int(state.step) > start:
      logging.info("Trained steps %d to %d in %s", start, int(state.step),
                   _duration(time.monotonic() - began))
  finally:
    manager.wait_until_finished()
    writer.flush()
    preemption.restore()
  return state


def make_writer(run_dir: str, config: ml_collections.ConfigDict, step: int):
  """clu writer (TensorBoard + log; log only on processes > 0); a new run records its config."""
  writer = metric_writers.create_default_writer(run_dir, just_logging=jax.process_index() > 0)
  if step == 0:
    writer.write_hparams({k: str(v) for k, v in config.to_dict().items()})
  return writer


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains (or resumes) to config.train.num_steps. Returns the final TrainState."""
  check_workdir(workdir)
  validate(config, config.train.batch_size)
  rt = runtime_lib.build(config)
  tokenizer = text_lib.tokenizer_for(config)
  data_iter = iter(loaders.train_loader(config, tokenizer, config.train.batch_size, rt.codec))
  manager = checkpointing.make_manager(workdir, config.train)
  from_fm = config.init.source == "flow_matching"
  if from_fm:
    rt = fm_init.attach(rt, config)
  # Before a checkpoint of another latent shape or text encoder can be restored.
  checkpointing.check_conditioning(config, rt, workdir, fresh=manager.latest_step() is None)
  state = checkpointing.restore(manager, rt.abstract_state, data_iter, move_bad=True)
  if state is None:
    state = rt.create_state()
    if from_fm:
      state = fm_init.initial_state(rt, state)
      logging.info("Starting from the flow-matching network in %s", config.init.fm_workdir)
    else:
      logging.info("Starting from scratch")
  logging.info("Training from step %d to %d", int(state.step), config.train.num_steps)
  writer = make_writer(workdir, config, int(state.step))

  def step_fn(state, step, batch):
    return rt.train_step(steps_for(config, step))(state, rt.global_batch(batch))

  t = config.train
  method = methods.get(config)
  evaluate = (t.eval_every, evaluate_fn(rt, config, tokenizer, writer))
  if method.generator:
    actions = ((t.sample_every, sample_fn(rt, config, tokenizer, workdir, writer)), evaluate)
  else:  # the autoencoder: grids of held-out reconstructions
    grid = autoencoder_method.grid_fn(rt.graphdef, config, tokenizer, workdir, writer)
    actions = (evaluate, (t.sample_every, lambda state, done: grid(state.ema_params, done)))
  state = run_steps(state, train=t, step_fn=step_fn, data_iter=data_iter, manager=manager,
                    writer=writer,
                    max_consecutive_nonfinite=config.optim.max_consecutive_nonfinite,
                    actions=actions)
  if method is methods.AUTOENCODER:
    autoencoding.export_if_finished(rt, config, tokenizer, workdir, state)
  return state


def sample_fn(rt, config, tokenizer, workdir: str, writer) -> Callable:
  """The periodic sample grid of a generator, with its own default sampler (no denoiser exists
  while the NTM trains)."""
  sample_config = config.sample.copy_and_resolve_references()
  if sample_config.sampler in ("auto", "fast"):
    sample_config.sampler = methods.get(config).default_sampler

  def sample(state, done):
    path = write_samples(rt.sampler(sample_config), state.ema_params, config, tokenizer, workdir,
                         writer, done)
    logging.info("Wrote samples to %s", path)
  return sample


def evaluate_fn(rt, config, tokenizer, writer) -> Callable:
  """The periodic held-out evaluation: NLL (NTM), velocity error (FM) or reconstruction error."""
  def evaluate(state, done):
    writer.write_scalars(done, held_out.evaluate(rt, state.ema_params, config, tokenizer, done))
  return evaluate


def draw_num_steps(seed: int, step: int, choices) -> int:
  """One T per step, a deterministic function of (seed, step) so that resumes agree."""
  return int(np.random.default_rng([seed, step]).choice(choices))


def steps_for(config: ml_collections.ConfigDict, step: int) -> int:
  """T for a training step: end-to-end draws one of ntm.num_steps per step; pair-wise draws per
  example inside the step, so it compiles for the largest T only."""
  if config.ntm.mode == "end_to_end":
    return draw_num_steps(config.seed, step, config.ntm.num_steps)
  return max(config.ntm.num_steps)
