"""The flow-matching baseline: the NTM's backbone trained on the velocity-regression loss."""

import jax.numpy as jnp

from ntm_jax import flow_matching
from ntm_jax import text_to_image
from ntm_jax.methods import base
from ntm_jax.methods import inputs


def make_model(config, rngs):
  return flow_matching.FlowMatching(inputs.model_config(config), rngs=rngs)


def loss(model, batch, rng, *, config, step, num_steps, frozen_fm=None):
  """The mean squared velocity error (with CFG dropout of the caption)."""
  del step, num_steps, frozen_fm
  images = inputs.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  value = jnp.mean(flow_matching.loss(model, images, text, mask, rng,
                                      cfg_dropout=config.ntm.cfg_dropout))
  return value, {"fm_loss": value}


def eval_metrics(model, batch, rng, *, config, num_steps):
  """The held-out velocity error of one batch (no T: num_steps unused)."""
  del config, num_steps
  images = inputs.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  return {"fm_loss": jnp.mean(flow_matching.loss(model, images, text, mask, rng))}


METHOD = base.Method(name="flow_matching", make_model=make_model, loss=loss,
                     eval_metrics=eval_metrics, samplers=flow_matching.SAMPLERS,
                     default_sampler="euler")
