"""What every text-to-image model here shares: images <-> tokens, and the text condition.

NTM (ntm.py) and the flow-matching baseline (flow_matching.py) both subclass TextToImageModel,
so the data pipeline, the text encoder, classifier-free guidance's null condition and the
FM -> NTM initialization see the same attributes in both.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ntm_jax import patching
from ntm_jax import text as text_lib


class TextToImageModel(nnx.Module):
  """Image geometry, the learned CFG null text and the optional built-in text encoder."""

  def _init_geometry(self, config: ml_collections.ConfigDict):
    """config: the `model` section with image_shape (see configs/t2i.py)."""
    self.image_shape = tuple(config.image_shape)
    self.patch_size = config.patch_size
    patching.validate_image_shape(self.image_shape, self.patch_size)
    self.grid_shape = patching.grid_shape(self.image_shape, self.patch_size)
    self.num_tokens = self.grid_shape[0] * self.grid_shape[1]
    self.channels = patching.token_channels(self.image_shape, self.patch_size)
    self.num_dims = int(np.prod(self.image_shape))
    self.text_dim = config.text_dim
    self.dtype = jnp.dtype(config.dtype)

  def _init_text(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs):
    self.null_text = nnx.Param(jnp.zeros((self.text_dim,), jnp.float32))
    # The trainable text module (text.py); without a text_encoder section the caller supplies
    # text embeddings directly.
    encoder = config.get("text_encoder")
    self.text_encoder = text_lib.make_encoder(encoder, self.text_dim, self.dtype,
                                              rngs) if encoder else None

  def tokens(self, images):
    patching.check_images(images, self.image_shape)
    return patching.patchify(images.astype(jnp.float32), self.patch_size)

  def images(self, tokens):
    return patching.unpatchify(tokens, self.image_shape, self.patch_size)

  def null_condition(self, batch: int, length: int):
    """The CFG null condition: the learned null embedding as the only visible text token."""
    text = jnp.broadcast_to(self.null_text[...], (batch, length, self.text_dim))
    mask = jnp.zeros((batch, length), bool).at[:, 0].set(True)
    return text, mask


def encode_text(model: TextToImageModel, text_input):
  """The text input (token ids [batch, length], or frozen token states: text.py) -> (text,
  mask); captions with no tokens get the null condition."""
  text, mask = model.text_encoder(text_input)
  return null_if_empty(model, text, mask)


def null_if_empty(model: TextToImageModel, text, text_mask):
  """Replaces examples with no visible text token (empty captions) by the null condition."""
  null_text, null_mask = model.null_condition(*text.shape[:2])
  empty = ~text_mask.any(axis=1)
  return (jnp.where(empty[:, None, None], null_text, text),
          jnp.where(empty[:, None], null_mask, text_mask))


def drop_condition(model: TextToImageModel, rng, text, text_mask, rate: float):
  """Replaces each example's text by the null condition with probability `rate`."""
  null_text, null_mask = model.null_condition(*text.shape[:2])
  drop = jax.random.bernoulli(rng, rate, (text.shape[0],))
  return (jnp.where(drop[:, None, None], null_text, text),
          jnp.where(drop[:, None], null_mask, text_mask))
