"""Text conditioning: a tokenizer on the host and a text encoder in the model.

Interface every encoder implements (a pretrained one plugs in the same way):
  tokenizer.encode(captions) -> int32 [batch, max_length] (0 = padding), on the host;
  encoder(tokens) -> (embeddings [batch, max_length, dim], mask [batch, max_length] bool).

The built-in pair is a hashed word tokenizer (any caption, no vocabulary file, deterministic)
and a small trainable non-causal Transformer. An empty caption has no tokens, so its mask is
all False; the model then uses the learned null condition, exactly as for CFG dropout.
"""

import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import layers

PAD = 0


class HashedWordTokenizer:
  """Lower-cased words hashed (CRC32) into vocab_size - 1 buckets; id 0 is padding."""

  def __init__(self, vocab_size: int, max_length: int):
    if vocab_size < 2 or max_length < 1:
      raise ValueError(f"tokenizer needs vocab_size >= 2 and max_length >= 1, got "
                       f"{vocab_size} and {max_length}")
    self.vocab_size, self.max_length = vocab_size, max_length

  def words(self, caption: str) -> list:
    return re.findall(r"[a-z0-9]+", caption.lower())

  def encode_one(self, caption: str) -> np.ndarray:
    ids = [1 + zlib.crc32(w.encode()) % (self.vocab_size - 1) for w in self.words(caption)]
    out = np.full((self.max_length,), PAD, np.int32)
    ids = ids[:self.max_length]
    out[:len(ids)] = ids
    return out

  def encode(self, captions) -> np.ndarray:
    return np.stack([self.encode_one(c) for c in captions]) if len(captions) else np.zeros(
        (0, self.max_length), np.int32)


class TextEncoder(nnx.Module):
  """Token embedding + learned positions + a small non-causal Transformer."""

  def __init__(self, *, vocab_size: int, max_length: int, width: int, depth: int,
               num_heads: int, dtype=jnp.float32, rngs: nnx.Rngs):
    self.dim = width
    self.embed = nnx.Embed(vocab_size, width, dtype=dtype, rngs=rngs)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (max_length, width)) * 0.02)
    self.transformer = layers.TransformerStack(depth, width, num_heads, num_heads, dtype=dtype,
                                               rngs=rngs)
    self.out_norm = nnx.RMSNorm(width, dtype=dtype, rngs=rngs)

  def __call__(self, tokens):
    """tokens: int32 [batch, max_length] -> (embeddings float32, mask bool)."""
    mask = tokens != PAD
    hidden = self.embed(tokens) + self.position[...]
    # Padding keys are hidden; an all-padding row attends to itself so nothing is NaN.
    keys = mask | ~mask.any(axis=1, keepdims=True)
    hidden = self.transformer(hidden, mask=keys[:, None, None, :])
    return self.out_norm(hidden).astype(jnp.float32), mask
