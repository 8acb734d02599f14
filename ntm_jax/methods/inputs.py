"""What a generator models, from a global batch, and its model config."""

import ml_collections

from ntm_jax import latents
from ntm_jax.data import pipeline


def model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `model` section completed with the shape of what it models: the data's images, or
  their autoencoder latents (latent.autoencoder_workdir)."""
  model = ml_collections.ConfigDict(config.model.to_dict())
  model.image_shape = latents.model_image_shape(config)
  return model


def model_inputs(batch):
  """What the generator models, from a global batch: its latents when the runtime encoded them
  (Runtime.global_batch), else its images in [-1, 1]."""
  if "latents" in batch:
    return batch["latents"]
  return pipeline.normalize_images(batch["image"])
