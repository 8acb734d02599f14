"""The NTM (docs/method.md): trained by the exact trajectory likelihood (Algorithm 1),
end-to-end or pair-wise, optionally aligned with the flow-matching network it started from."""

import math

import jax.numpy as jnp

from ntm_jax import flow_matching
from ntm_jax import latents
from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax.methods import base
from ntm_jax.methods import inputs


def make_model(config, rngs):
  return ntm.NTM(inputs.model_config(config), rngs=rngs)


def nll_terms(model, batch, rng, config, num_steps, cfg_dropout, mean_reference=None):
  """The per-example trajectory NLL terms of a batch in the configured mode (ntm.mode)."""
  images = inputs.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  n = config.ntm
  kwargs = dict(t_min_range=tuple(n.t_min_range), cfg_dropout=cfg_dropout,
                mean_reference=mean_reference,
                level_weight_power=float(n.get("level_weight_power", 0.0)))
  if n.mode == "end_to_end":
    return ntm.trajectory_nll(model, images, text, mask, rng, num_steps=num_steps, **kwargs)
  if n.mode == "pair_wise":
    return ntm.pair_wise_nll(model, images, text, mask, rng, num_steps_set=tuple(n.num_steps),
                             level_sampling_power=float(n.get("level_sampling_power", 0.0)),
                             **kwargs)
  raise ValueError(f"ntm.mode must be 'end_to_end' or 'pair_wise', got {n.mode!r}")


def validate(config) -> None:
  n = config.ntm
  if n.mode not in ntm.MODES:
    raise ValueError(f"ntm.mode must be one of {ntm.MODES}, got {n.mode!r}")
  for name in ("level_weight_power", "level_sampling_power"):
    value = n.get(name, 0.0)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      raise ValueError(f"ntm.{name} must be a finite number, got {value!r}")
  if n.get("level_sampling_power", 0.0) and n.mode != "pair_wise":
    raise ValueError("ntm.level_sampling_power chooses the level of ntm.mode='pair_wise'; "
                     "end_to_end trains every level (use ntm.level_weight_power)")


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


def loss(model, batch, rng, *, config, step, num_steps, frozen_fm=None):
  """The mean trajectory NLL per dimension, plus, with frozen_fm (the FM network the NTM started
  from), the mean-alignment loss lambda(step) sum_k ||mu_P - mu_FM||^2 per dimension."""
  reference = None
  if frozen_fm is not None:
    reference = flow_matching.posterior_mean_reference(frozen_fm,
                                                       config.model.predictor.sigma_floor)
  out = nll_terms(model, batch, rng, config, num_steps, config.ntm.cfg_dropout, reference)
  value = jnp.mean(out["objective"]) / model.num_dims
  metrics = nll_metrics(out, model.num_dims, pixels=not latents.enabled(config))
  if config.ntm.get("level_weight_power", 0.0):  # the NLL metrics stay unweighted
    metrics["weighted_objective_per_dim"] = value
  if frozen_fm is not None:
    a = config.init.mean_alignment
    weight = flow_matching.alignment_weight(step, a.weight,
                                            a.decay_steps or config.train.num_steps)
    alignment = jnp.mean(out["mean_alignment"]) / model.num_dims
    value = value + weight * alignment
    metrics.update(mean_alignment_per_dim=alignment, mean_alignment_weight=weight)
  return value, metrics


def eval_metrics(model, batch, rng, *, config, num_steps):
  """Held-out NLL of one batch (no CFG dropout), end-to-end at T = num_steps."""
  images = inputs.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  out = ntm.trajectory_nll(model, images, text, mask, rng, num_steps=num_steps,
                           t_min_range=tuple(config.ntm.t_min_range))
  return nll_metrics(out, model.num_dims, pixels=not latents.enabled(config))


METHOD = base.Method(
    name="ntm", make_model=make_model, loss=loss, eval_metrics=eval_metrics,
    eval_step_counts=lambda config: tuple(config.ntm.num_steps),
    trained_step_counts=lambda config: tuple(config.ntm.num_steps),
    samplers=("full_nf", "full_nf_denoised"), default_sampler="full_nf", distillable=True,
    exact_likelihood=True, validate=validate)
