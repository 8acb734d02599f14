"""--mode=distill: trains the learned denoiser g_phi with the NTM frozen (paper Eq. 3.9).

The NTM's latest checkpoint (its EMA parameters) is read from workdir/checkpoints; the denoiser
lives under workdir/distill with its own checkpoints (state + data position), TensorBoard
metrics, fast-sampler grids and held-out distillation error, and resumes like training.
"""

import ml_collections
from absl import logging

from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import denoiser
from ntm_jax.runtime import held_out
from ntm_jax.train import loop


def evaluate(drt: denoiser.DistillRuntime, params, ntm_params, config, tokenizer,
             step: int) -> dict:
  """Held-out distillation error (EMA denoiser) at every trained T."""
  t = config.distill.train
  batches = held_out.held_out_batches(drt.ntm, config, tokenizer, t.batch_size,
                                        t.eval_batches)
  return held_out.average_per_step_count(
      lambda num_steps, batch, rng: drt.eval_step(num_steps)(params, ntm_params, batch, rng),
      batches, config.ntm.num_steps, step)


def distill(config: ml_collections.ConfigDict, workdir: str):
  """Trains (or resumes) the denoiser to distill.train.num_steps. Returns its final state."""
  method = methods.get(config)
  if not method.distillable:
    raise ValueError(f"--mode=distill distills an NTM; method is {method.name!r}")
  d = config.distill
  out = denoiser.run_dir(workdir)
  loop.check_workdir(out)
  loop.validate(config, d.train.batch_size, name="distill.train")
  ntm_runtime, ntm_state = checkpointing.restore_latest(config, workdir)
  ntm_params = ntm_state.ema_params
  logging.info("Distilling the NTM of step %d", int(ntm_state.step))
  del ntm_state  # only the EMA parameters are used
  drt = denoiser.build(config, ntm_runtime)
  tokenizer = text_lib.tokenizer_for(config)
  data_iter = iter(loaders.train_loader(config, tokenizer, d.train.batch_size,
                                        ntm_runtime.codec))
  manager = checkpointing.make_manager(out, d.train)
  state = checkpointing.restore(manager, drt.abstract_state, data_iter, move_bad=True)
  if state is None:
    state = drt.create_state()
    logging.info("Denoiser: starting from scratch")
  logging.info("Distilling from step %d to %d", int(state.step), d.train.num_steps)
  writer = loop.make_writer(out, config, int(state.step))

  def step_fn(state, step, batch):
    # One T per step from (seed, step), as in end-to-end training, so resumes agree.
    num_steps = loop.draw_num_steps(config.seed, step, config.ntm.num_steps)
    return drt.distill_step(num_steps)(state, ntm_params, ntm_runtime.global_batch(batch))

  def sample(state, done):
    sampler = drt.fast_sampler(config.sample, state.ema_params)
    path = loop.write_samples(sampler, ntm_params, config, tokenizer, out, writer, done)
    logging.info("Wrote fast-sampler samples to %s", path)

  def evaluate_(state, done):
    writer.write_scalars(done, evaluate(drt, state.ema_params, ntm_params, config, tokenizer,
                                        done))

  return loop.run_steps(state, train=d.train, step_fn=step_fn, data_iter=data_iter,
                        manager=manager, writer=writer,
                        max_consecutive_nonfinite=d.optim.max_consecutive_nonfinite,
                        actions=((d.train.sample_every, sample), (d.train.eval_every, evaluate_)))
