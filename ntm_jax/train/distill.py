"""--mode=distill: trains the learned denoiser g_phi with the NTM frozen (paper Eq. 3.9).

The NTM's latest checkpoint (its EMA parameters) is read from workdir/checkpoints; the denoiser
lives under workdir/distill with its own checkpoints (state + data position), TensorBoard
metrics, fast-sampler grids and held-out distillation error, and resumes like training.
"""

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from flax import nnx

from ntm_jax import denoise
from ntm_jax import files
from ntm_jax import sampling
from ntm_jax import text as text_lib
from ntm_jax import text_to_image
from ntm_jax.evaluate import likelihood
from ntm_jax.train import checkpointing
from ntm_jax.train import loop
from ntm_jax.train import runtime as runtime_lib
from ntm_jax.train import sharding
from ntm_jax.train import state as state_lib


def run_dir(workdir: str) -> str:
  return os.path.join(workdir, "distill")


def make_denoiser(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> denoise.Denoiser:
  model = state_lib.abstract_model(config)
  d = config.distill.model
  return denoise.Denoiser(channels=model.channels, grid_shape=model.grid_shape,
                          width=d.width, depth=d.depth, num_heads=d.num_heads,
                          num_kv_heads=d.num_kv_heads, text_dim=model.text_dim,
                          remat=config.model.remat, dtype=jnp.dtype(config.model.dtype),
                          rngs=rngs)


def create_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  params = nnx.state(make_denoiser(config, nnx.Rngs(config.seed + 1)))
  return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=tx.init(params), ema_params=params,
                              rng=jax.random.key_data(jax.random.key(config.seed + 1)))


def _targets(ntm_params, batch, rng, *, ntm_graphdef, config, num_steps: int):
  model = nnx.merge(ntm_graphdef, ntm_params)
  images = state_lib.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  d = config.distill
  targets = denoise.distillation_targets(
      model, images, text, mask, rng, num_steps=num_steps, t_min_range=tuple(d.t_min_range),
      clip_percentile=d.clip_percentile or None)
  return targets, text, mask  # constants: only the denoiser's parameters are differentiated


def _error_metrics(mse, targets) -> dict:
  """MSE and PSNR (images in [-1, 1], peak-to-peak 2) against the target, and how far the
  target is from the noisy x_t0 the predictor chain stops at."""
  moved = jnp.mean(jnp.square(targets["x_t0"] - targets["target"]))
  return {"mse": mse, "psnr": 10.0 * jnp.log10(4.0 / mse), "target_vs_x_t0_mse": moved}


def distill_step(state, ntm_params, batch, *, graphdef, ntm_graphdef, tx, config,
                 num_steps: int):
  """One AdamW step of the denoiser on the distillation MSE; the NTM is a constant."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  targets, text, mask = _targets(ntm_params, batch, rng, ntm_graphdef=ntm_graphdef,
                                 config=config, num_steps=num_steps)

  loss_fn = lambda params: denoise.distillation_loss(nnx.merge(graphdef, params), targets,
                                                     text, mask)
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  metrics = dict(_error_metrics(loss, targets), loss=loss)
  d = config.distill
  return state_lib.apply_gradients(state, grads, metrics, tx=tx, optim=d.optim,
                                   num_steps=d.train.num_steps)


def eval_step(params, ntm_params, batch, rng, *, graphdef, ntm_graphdef, config,
              num_steps: int):
  targets, text, mask = _targets(ntm_params, batch, rng, ntm_graphdef=ntm_graphdef,
                                 config=config, num_steps=num_steps)
  mse = denoise.distillation_loss(nnx.merge(graphdef, params), targets, text, mask)
  return _error_metrics(mse, targets)


@dataclasses.dataclass
class DistillRuntime:
  """The denoiser's state shardings and jitted functions, next to the frozen NTM's runtime."""
  ntm: runtime_lib.Runtime
  graphdef: Any
  tx: optax.GradientTransformation
  abstract_state: Any
  state_shardings: Any
  _cache: dict = dataclasses.field(default_factory=dict)

  def _cached(self, key, make: Callable) -> Callable:
    if key not in self._cache:
      self._cache[key] = make()
    return self._cache[key]

  def create_state(self):
    create = jax.jit(functools.partial(create_state, self.ntm.config, self.tx),
                     out_shardings=self.state_shardings)
    with jax.set_mesh(self.ntm.mesh):
      return create()

  def distill_step(self, num_steps: int) -> Callable:
    """(state, ntm_params, batch) -> (state, metrics, consecutive non-finite), state donated."""
    def make():
      step = functools.partial(distill_step, graphdef=self.graphdef,
                               ntm_graphdef=self.ntm.graphdef, tx=self.tx,
                               config=self.ntm.config, num_steps=num_steps)
      replicated = sharding.replicated(self.ntm.mesh)
      return self.ntm.on_mesh(jax.jit(
          step, in_shardings=(self.state_shardings, self.ntm.state_shardings.ema_params,
                              self.ntm.batch_sharding),
          out_shardings=(self.state_shardings, replicated, replicated), donate_argnums=0))
    return self._cached(("step", num_steps), make)

  def eval_step(self, num_steps: int) -> Callable:
    return self._cached(("eval", num_steps), lambda: self.ntm.on_mesh(jax.jit(functools.partial(
        eval_step, graphdef=self.graphdef, ntm_graphdef=self.ntm.graphdef,
        config=self.ntm.config, num_steps=num_steps))))

  def fast_sampler(self, sample_config: ml_collections.ConfigDict,
                   denoiser_params) -> Callable:
    """(ntm_params, tokens, rng) -> images with the given denoiser parameters (decoded, on
    latents)."""
    s = sample_config
    settings = dict(num_steps=s.num_steps, guidance=s.guidance, t_min=s.t_min,
                    temperature=s.temperature, final_temperature=s.final_temperature)
    jitted = self._cached(("fast",) + tuple(settings.values()), lambda: jax.jit(
        functools.partial(sampling.fast_sample_images, graphdef=self.ntm.graphdef,
                          denoiser_graphdef=self.graphdef, **settings)))
    return self.ntm.on_host(lambda params, text_input, rng: jitted(params, denoiser_params,
                                                                   text_input, rng))


def build(config: ml_collections.ConfigDict, ntm_runtime: runtime_lib.Runtime) -> DistillRuntime:
  d = config.distill
  tx = state_lib.make_optimizer(d.optim, d.train.num_steps)
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: make_denoiser(config, nnx.Rngs(0))))
  shapes = jax.eval_shape(functools.partial(create_state, config, tx))
  shardings = sharding.state_shardings(shapes, ntm_runtime.mesh, config.mesh)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  return DistillRuntime(ntm=ntm_runtime, graphdef=graphdef, tx=tx, abstract_state=abstract,
                        state_shardings=shardings)


def has_denoiser(workdir: str) -> bool:
  directory = files.path(run_dir(workdir)) / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def restore_denoiser(config: ml_collections.ConfigDict, workdir: str,
                     ntm_runtime: runtime_lib.Runtime):
  """(runtime, state) of the latest distilled denoiser, or a clear error if there is none."""
  drt = build(config, ntm_runtime)
  manager = checkpointing.make_manager(run_dir(workdir), config.distill.train,
                                       asynchronous=False)
  state = checkpointing.restore(manager, drt.abstract_state)
  if state is None:
    raise FileNotFoundError(f"no denoiser checkpoint in {run_dir(workdir)}/checkpoints: run "
                            "--mode=distill with the same --config first")
  return drt, state


def evaluate(drt: DistillRuntime, params, ntm_params, config, tokenizer, step: int) -> dict:
  """Held-out distillation error (EMA denoiser) at every trained T."""
  t = config.distill.train
  batches = likelihood.held_out_batches(drt.ntm, config, tokenizer, t.batch_size,
                                        t.eval_batches)
  return likelihood.average_per_step_count(
      lambda num_steps, batch, rng: drt.eval_step(num_steps)(params, ntm_params, batch, rng),
      batches, config.ntm.num_steps, step)


def distill(config: ml_collections.ConfigDict, workdir: str):
  """Trains (or resumes) the denoiser to distill.train.num_steps. Returns its final state."""
  if config.method != "ntm":
    raise ValueError(f"--mode=distill distills an NTM; method is {config.method!r}")
  d = config.distill
  out = run_dir(workdir)
  loop.check_workdir(out)
  loop.validate(config, d.train.batch_size, name="distill.train")
  ntm_runtime, ntm_state = checkpointing.restore_latest(config, workdir)
  ntm_params = ntm_state.ema_params
  logging.info("Distilling the NTM of step %d", int(ntm_state.step))
  del ntm_state  # only the EMA parameters are used
  drt = build(config, ntm_runtime)
  tokenizer = text_lib.tokenizer_for(config)
  data_iter = iter(loop.make_train_loader(config, tokenizer, d.train.batch_size))
  manager = checkpointing.make_manager(out, d.train)
  state = checkpointing.restore(manager, drt.abstract_state, data_iter)
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
