"""Training state, optimizer and the jitted steps (Algorithm 1), as pure functions.

The model's graph is static (an nnx GraphDef); everything that changes is a pytree in
TrainState, so the step is a pure function that jit can shard and donate.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from ntm_jax import autoencoder
from ntm_jax import flow_matching
from ntm_jax import latents
from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax.data import pipeline
from ntm_jax.train import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # optimizer steps taken (skipped non-finite updates included)
  params: Any  # nnx.State of the model
  opt_state: Any  # optax.apply_if_finite(AdamW) state: counts skipped updates
  ema_params: Any  # EMA of params, updated only on finite steps
  rng: jax.Array  # key data; the step's key is fold_in(rng, step)


def model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `model` section completed with the shape of what it models: the data's images, or
  their autoencoder latents (latent.autoencoder_workdir)."""
  model = ml_collections.ConfigDict(config.model.to_dict())
  model.image_shape = latents.model_image_shape(config)
  return model


METHODS = ("ntm", "flow_matching", "autoencoder")


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs):
  """The model `config.method` trains: the NTM, the flow-matching baseline or the autoencoder
  whose latents they can model (configs/autoencoder.py)."""
  if config.method == "ntm":
    return ntm.NTM(model_config(config), rngs=rngs)
  if config.method == "flow_matching":
    return flow_matching.FlowMatching(model_config(config), rngs=rngs)
  if config.method == "autoencoder":
    return autoencoder.Autoencoder(config.model.autoencoder, config.data.channels, rngs=rngs)
  raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")


def model_inputs(batch):
  """What the generator models, from a global batch: its latents when the runtime encoded them
  (runtime.global_batch), else its images in [-1, 1]."""
  if "latents" in batch:
    return batch["latents"]
  return pipeline.normalize_images(batch["image"])


def abstract_model(config: ml_collections.ConfigDict):
  return nnx.eval_shape(lambda: make_model(config, nnx.Rngs(config.seed)))


def lr_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warmup to peak_lr, cosine decay to end_lr at step optim.schedule_steps (0: at
  num_steps, the end of training; longer: training stops before the decay ends)."""
  length = optim.schedule_steps or num_steps
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.peak_lr, warmup_steps=optim.warmup_steps,
      decay_steps=max(length, optim.warmup_steps + 1), end_value=optim.end_lr)


def decay_mask(params):
  """Weight decay on matrices (kernels, embeddings) only, not on biases, norms or positions."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: sharding.path_string(path).rsplit("/", 1)[-1] in ("kernel", "embedding"),
      params)


def make_optimizer(optim: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """AdamW with warmup-cosine, global-norm clipping, decay on matrices only, and skipping of
  non-finite updates (optax.apply_if_finite; the training loop aborts on a long run of them).

  `optim` is an optimizer section (config.optim or config.distill.optim)."""
  schedule = lr_schedule(optim, num_steps)
  adamw = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay,
                      mask=decay_mask)
  tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip), adamw)
  # The loop enforces the limit; apply_if_finite would apply NaNs after its own limit.
  return optax.apply_if_finite(tx, max_consecutive_errors=2**30)


def create_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """Builds the state from scratch; jit this with out_shardings to create it sharded."""
  params = nnx.state(make_model(config, nnx.Rngs(config.seed)))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=params,
                    rng=jax.random.key_data(jax.random.key(config.seed)))


def _nll_terms(model, batch, rng, config, num_steps, cfg_dropout, mean_reference=None):
  images = model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  n = config.ntm
  kwargs = dict(t_min_range=tuple(n.t_min_range), cfg_dropout=cfg_dropout,
                mean_reference=mean_reference)
  if n.mode == "end_to_end":
    return ntm.trajectory_nll(model, images, text, mask, rng, num_steps=num_steps, **kwargs)
  if n.mode == "pair_wise":
    return ntm.pair_wise_nll(model, images, text, mask, rng, num_steps_set=tuple(n.num_steps),
                             **kwargs)
  raise ValueError(f"ntm.mode must be 'end_to_end' or 'pair_wise', got {n.mode!r}")


def nll_metrics(out, num_dims: int, pixels: bool = True) -> dict:
  """Batch means in nats/dim and bits/dim, and bits per 8-bit data dimension when the model
  generates pixels in [-1, 1] (not on autoencoder latents, where it has no meaning)."""
  nll = out["nll"]
  metrics = {"nll_nats_per_dim": jnp.mean(nll) / num_dims,
             "bits_per_dim": jnp.mean(ntm.bits_per_dim(nll, num_dims))}
  if pixels:
    metrics["bits_per_8bit_dim"] = jnp.mean(ntm.bits_per_dim(nll, num_dims, data_scale=127.5))
  if "level_nll" in out:
    for k in range(out["level_nll"].shape[1]):
      metrics[f"level_{k}_nats_per_dim"] = jnp.mean(out["level_nll"][:, k]) / num_dims
    metrics["bound_x_t0_nats_per_dim"] = jnp.mean(out["bound"]) / num_dims
  return metrics


def train_step(state: TrainState, batch, frozen_fm=None, *, graphdef, tx, config,
               num_steps: int, fm_graphdef=None):
  """One AdamW step of config.method's loss; non-finite updates are skipped.

  NTM: the mean trajectory NLL per dimension, plus, with frozen_fm (the parameters of the FM
  network the NTM started from), the mean-alignment loss lambda(step) sum_k ||mu_P - mu_FM||^2
  per dimension. Flow matching: the mean squared velocity error.
  """
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  cfg_dropout = config.ntm.cfg_dropout

  def ntm_loss(params):
    model = nnx.merge(graphdef, params)
    reference = None
    if frozen_fm is not None:
      reference = flow_matching.posterior_mean_reference(
          nnx.merge(fm_graphdef, frozen_fm), config.model.predictor.sigma_floor)
    out = _nll_terms(model, batch, rng, config, num_steps, cfg_dropout, reference)
    loss = jnp.mean(out["nll"]) / model.num_dims
    metrics = nll_metrics(out, model.num_dims, pixels=not latents.enabled(config))
    if frozen_fm is not None:
      a = config.init.mean_alignment
      weight = flow_matching.alignment_weight(state.step, a.weight,
                                              a.decay_steps or config.train.num_steps)
      alignment = jnp.mean(out["mean_alignment"]) / model.num_dims
      loss = loss + weight * alignment
      metrics.update(mean_alignment_per_dim=alignment, mean_alignment_weight=weight)
    return loss, metrics

  def fm_loss(params):
    model = nnx.merge(graphdef, params)
    images = model_inputs(batch)
    text, mask = text_to_image.encode_text(model, batch["text"])
    loss = jnp.mean(flow_matching.loss(model, images, text, mask, rng, cfg_dropout=cfg_dropout))
    return loss, {"fm_loss": loss}

  def autoencoder_loss(params):
    a = config.model.autoencoder
    per_example, mse = autoencoder.loss(nnx.merge(graphdef, params),
                                        pipeline.normalize_images(batch["image"]), rng,
                                        latent_noise=a.latent_noise, prior_weight=a.prior_weight)
    return jnp.mean(per_example), {"mse": jnp.mean(mse),
                                   "psnr_db": jnp.mean(autoencoder.psnr(mse))}

  loss_fn = {"ntm": ntm_loss, "flow_matching": fm_loss,
             "autoencoder": autoencoder_loss}[config.method]
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics["loss"] = loss
  return apply_gradients(state, grads, metrics, tx=tx, optim=config.optim,
                         num_steps=config.train.num_steps)


def apply_gradients(state: TrainState, grads, metrics: dict, *, tx, optim, num_steps: int):
  """The optimizer and EMA update shared by every training mode.

  Returns (state, metrics + optimizer metrics, consecutive non-finite update count)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = opt_state.last_finite
  # EMA warmup: early averages must not be dominated by the initialization.
  decay = jnp.minimum(optim.ema_decay, (1.0 + state.step) / (10.0 + state.step))
  ema = jax.tree.map(lambda e, p: jnp.where(finite, decay * e + (1 - decay) * p, e),
                     state.ema_params, params)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads),
                 learning_rate=lr_schedule(optim, num_steps)(state.step),
                 skipped_updates_total=opt_state.total_notfinite.astype(jnp.float32))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
  return new_state, metrics, opt_state.notfinite_count


def eval_step(params, batch, rng, *, graphdef, config, num_steps: int):
  """Held-out NLL of one batch (no CFG dropout), end-to-end at T = num_steps; for flow
  matching, the held-out velocity error; for the autoencoder, the reconstruction error of the
  latent means (num_steps unused by both)."""
  model = nnx.merge(graphdef, params)
  if config.method == "autoencoder":
    images = pipeline.normalize_images(batch["image"])
    mse = jnp.mean(jnp.square(model.decode(model.encode(images)) - images), axis=(1, 2, 3))
    return {"mse": jnp.mean(mse), "psnr_db": jnp.mean(autoencoder.psnr(mse))}
  images = model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  if config.method == "flow_matching":
    return {"fm_loss": jnp.mean(flow_matching.loss(model, images, text, mask, rng))}
  out = ntm.trajectory_nll(model, images, text, mask, rng, num_steps=num_steps,
                           t_min_range=tuple(config.ntm.t_min_range))
  return nll_metrics(out, model.num_dims, pixels=not latents.enabled(config))
