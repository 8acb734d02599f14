"""Everything a mode needs on the device mesh: shardings and the jitted, sharded functions."""

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.methods import inputs
from ntm_jax.methods import sampling
from ntm_jax.runtime import sharding
from ntm_jax.runtime import state as state_lib


@dataclasses.dataclass
class Runtime:
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  graphdef: Any
  tx: optax.GradientTransformation
  abstract_state: Any  # ShapeDtypeStructs carrying their shardings
  state_shardings: Any
  num_params: int
  # The frozen flow-matching network of the mean-alignment loss (train/fm_init.py), if any.
  fm_graphdef: Any = None
  fm_params: Any = None
  # The autoencoder whose latents the model generates (latent.autoencoder_workdir), if any.
  codec: latents.Codec | None = None
  # Host function token ids -> the model's text input (text.text_inputs): the ids themselves,
  # or the frozen encoder's cached token states.
  text_inputs: Callable = lambda tokens: tokens
  _train_steps: dict = dataclasses.field(default_factory=dict)
  _eval_steps: dict = dataclasses.field(default_factory=dict)
  _samplers: dict = dataclasses.field(default_factory=dict)

  def with_frozen_fm(self, graphdef, params) -> "Runtime":
    """This runtime with the frozen FM network of the mean-alignment loss; a new runtime (with
    its own compiled programs): a built one is never changed."""
    return dataclasses.replace(self, fm_graphdef=graphdef, fm_params=params, _train_steps={},
                               _eval_steps={}, _samplers={})

  @property
  def batch_sharding(self):
    return sharding.batch_sharding(self.mesh)

  def create_state(self):
    """A fresh state, created directly with its shardings (no host copy of the parameters)."""
    create = jax.jit(functools.partial(state_lib.create_train_state, self.config, self.tx),
                     out_shardings=self.state_shardings)
    with jax.set_mesh(self.mesh):
      return create()

  def global_batch(self, local_batch):
    """This process's numpy batch -> one global array per key, split over (data, fsdp). The
    caption tokens travel on as the model's "text" input; on latents the images are encoded
    here, on the devices, and travel on as "latents"."""
    local_batch = dict(local_batch)
    local_batch["text"] = self.text_inputs(local_batch.pop("tokens"))
    batch = jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), local_batch)
    if self.codec is None or "latents" in batch:  # pixels, or latents cached on the host
      return batch
    return {"latents": self.codec.encode(batch.pop("image")), **batch}

  def model_inputs(self, images):
    """uint8 images [batch, H, W, C] -> what the model generates: normalized latents, or the
    images in [-1, 1] (inputs.model_inputs of a batch holding them, as global_batch builds it)."""
    if self.codec is not None:
      return inputs.model_inputs({"latents": self.codec.encode(images)})
    return inputs.model_inputs({"image": jnp.asarray(images)})

  def _jitted_train_step(self, num_steps: int):
    """The jitted step of T = num_steps (one compilation per T), state donated."""
    if num_steps not in self._train_steps:
      step = functools.partial(state_lib.train_step, graphdef=self.graphdef, tx=self.tx,
                               config=self.config, num_steps=num_steps,
                               fm_graphdef=self.fm_graphdef)
      replicated = sharding.replicated(self.mesh)
      fm_shardings = jax.tree.map(lambda x: x.sharding, self.fm_params)
      self._train_steps[num_steps] = jax.jit(
          step, in_shardings=(self.state_shardings, self.batch_sharding, fm_shardings),
          out_shardings=(self.state_shardings, replicated, replicated), donate_argnums=0)
    return self._train_steps[num_steps]

  def train_step(self, num_steps: int) -> Callable:
    """(state, batch) -> (state, metrics, consecutive non-finite updates) for T = num_steps;
    the frozen FM network, if any, rides along."""
    jitted = self.on_mesh(self._jitted_train_step(num_steps))
    return lambda state, batch: jitted(state, batch, self.fm_params)

  def lowered_train_step(self, num_steps: int, state, batch):
    """The train step of T = num_steps lowered ahead of time for these (possibly abstract)
    arguments: .compile() gives the executable, its cost_analysis() and memory_analysis(),
    without allocating a state; compiled(state, batch, rt.fm_params) runs it."""
    return self.on_mesh(self._jitted_train_step(num_steps).lower)(state, batch, self.fm_params)

  def eval_step(self, num_steps: int) -> Callable:
    if num_steps not in self._eval_steps:
      self._eval_steps[num_steps] = self.on_mesh(jax.jit(functools.partial(
          state_lib.eval_step, graphdef=self.graphdef, config=self.config, num_steps=num_steps)))
    return self._eval_steps[num_steps]

  def sampler(self, sample_config: ml_collections.ConfigDict) -> Callable:
    """The sampler (params, tokens, rng) -> images for a `sample` config section: the model's
    own samplers (Method.samplers), jitted; the NTM's fast one needs the denoiser."""
    s = sample_config
    method = methods.get(self.config)
    if s.sampler not in method.samplers:
      raise ValueError(f"sample.sampler must be one of {method.samplers} for method "
                       f"{method.name!r}, got {s.sampler!r} (the NTM's fast sampler is "
                       "DistillRuntime.fast_sampler)")
    settings = dict(sampler=s.sampler, num_steps=s.num_steps, guidance=s.guidance, t_min=s.t_min,
                    temperature=s.temperature, final_temperature=s.final_temperature,
                    inverse=s.inverse, jacobi_tolerance=s.jacobi_tolerance)
    key = tuple(settings.values())
    if key not in self._samplers:
      self._samplers[key] = self.on_host(jax.jit(functools.partial(
          sampling.sample_images, graphdef=self.graphdef, **settings)))
    return self._samplers[key]

  def on_mesh(self, fn: Callable) -> Callable:
    """fn traced and run under the mesh: layers.constrain holds its activations split over the
    batch axes (and heads over 'tensor')."""
    def run(*args):
      with jax.set_mesh(self.mesh):
        return fn(*args)
    return run

  def prompt_batch(self, x):
    """A host array every process holds in full (the text input of the same prompts) -> one
    global array split over the batch axes (replicated when its batch does not divide)."""
    divides = x.shape[0] % math.prod(self.mesh.shape[a] for a in sharding.BATCH_AXES) == 0
    return jax.device_put(x, self.batch_sharding if divides else sharding.replicated(self.mesh))

  def on_host(self, sampler: Callable) -> Callable:
    """A sampler (params, text input, rng) -> what the model generates, as a data-parallel
    sampler (params, token ids, rng) -> images: text inputs from the ids, split over the batch
    axes; latents decoded; the images gathered from every process to numpy on each host."""
    decoding = self.on_mesh(sampler if self.codec is None else self.codec.decoding(sampler))

    def run(params, tokens, rng):
      text_input = jax.tree.map(self.prompt_batch, self.text_inputs(tokens))
      return multihost_utils.process_allgather(decoding(params, text_input, rng), tiled=True)
    return run


def build(config: ml_collections.ConfigDict, devices=None, check_memory: bool = True) -> Runtime:
  """Mesh, shapes and shardings of the state, and the fail-fast memory check: no allocation."""
  mesh = sharding.make_mesh(config.mesh, devices)
  tx = state_lib.make_optimizer(config.optim, config.train.num_steps)
  graphdef, _ = nnx.split(state_lib.abstract_model(config))
  shapes = jax.eval_shape(functools.partial(state_lib.create_train_state, config, tx))
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes.params))
  logging.info("Model: %s, %.2fM parameters; mesh %s", methods.get(config).name,
               num_params / 1e6, dict(mesh.shape))
  if check_memory:
    sharding.check_fits(num_params, config, mesh)
  shardings = sharding.state_shardings(shapes, mesh, config.mesh)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  codec = latents.load(config.latent.autoencoder_workdir) if latents.enabled(config) else None
  return Runtime(config=config, mesh=mesh, graphdef=graphdef, tx=tx, abstract_state=abstract,
                 state_shardings=shardings, num_params=num_params, codec=codec,
                 text_inputs=text_lib.text_inputs(config.model.text_encoder))
