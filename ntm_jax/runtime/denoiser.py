"""The learned denoiser g_phi next to a frozen NTM (paper Eq. 3.9): its model and state, the
distillation step and held-out error, the fast sampler, and the restore of a distilled one.

Its checkpoints live under workdir/distill (runtime.checkpointing); --mode=distill trains it
(train/distill.py).
"""

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from ntm_jax import denoise
from ntm_jax import errors
from ntm_jax import files
from ntm_jax.methods import denoiser as denoiser_method
from ntm_jax.methods import sampling
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import runtime as runtime_lib
from ntm_jax.runtime import sharding
from ntm_jax.runtime import state as state_lib


def run_dir(workdir: str) -> str:
  return os.path.join(workdir, "distill")


def create_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  params = nnx.state(denoiser_method.make_denoiser(config, nnx.Rngs(config.seed + 1)))
  return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=tx.init(params), ema_params=params,
                              rng=jax.random.key_data(jax.random.key(config.seed + 1)))


def distill_step(state, ntm_params, batch, *, graphdef, ntm_graphdef, tx, config,
                 num_steps: int):
  """One AdamW step of the denoiser on the distillation MSE; the NTM is a constant."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  targets, text, mask = denoiser_method.targets(ntm_params, batch, rng, ntm_graphdef=ntm_graphdef,
                                 config=config, num_steps=num_steps)

  loss_fn = lambda params: denoise.distillation_loss(nnx.merge(graphdef, params), targets,
                                                     text, mask)
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  metrics = dict(denoiser_method.error_metrics(loss, targets), loss=loss)
  d = config.distill
  return state_lib.apply_gradients(state, grads, metrics, tx=tx, optim=d.optim,
                                   num_steps=d.train.num_steps)


def eval_step(params, ntm_params, batch, rng, *, graphdef, ntm_graphdef, config,
              num_steps: int):
  targets, text, mask = denoiser_method.targets(ntm_params, batch, rng, ntm_graphdef=ntm_graphdef,
                                 config=config, num_steps=num_steps)
  mse = denoise.distillation_loss(nnx.merge(graphdef, params), targets, text, mask)
  return denoiser_method.error_metrics(mse, targets)


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
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: denoiser_method.make_denoiser(config, nnx.Rngs(0))))
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
    raise errors.MissingInputError(f"no denoiser checkpoint in {run_dir(workdir)}/checkpoints: run "
                            "--mode=distill with the same --config first")
  return drt, state
