"""An independent float64 numpy BERT for all-MiniLM-L6-v2, from the Hugging Face formulas and
the raw checkpoint: the reference tests/test_text.py and bench/minilm_checks.py compare the
Flax encoder with."""

import numpy as np
import scipy.special

CAPTIONS = ["a red circle", "a crimson circle", "three blue squares", "",
            "a yellow circle left of a purple square"]


def numpy_bert(weights: dict, tokens: np.ndarray) -> np.ndarray:
  """BERT written from the Hugging Face formulas, in float64 numpy, from the raw checkpoint."""
  w = {k: v.astype(np.float64) for k, v in weights.items()}
  dense = lambda x, name: x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

  def layer_norm(x, name):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]

  length = tokens.shape[1]
  x = (w["embeddings.word_embeddings.weight"][tokens]
       + w["embeddings.position_embeddings.weight"][:length]
       + w["embeddings.token_type_embeddings.weight"][0])
  x = layer_norm(x, "embeddings.LayerNorm")
  bias = np.where(tokens != 0, 0.0, -1e30)[:, None, None, :]
  split = lambda y: y.reshape(y.shape[0], length, 12, 32).transpose(0, 2, 1, 3)
  for i in range(6):
    p = f"encoder.layer.{i}"
    q, k, v = (split(dense(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(32) + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    x = layer_norm(x + dense(context, f"{p}.attention.output.dense"),
                   f"{p}.attention.output.LayerNorm")
    hidden = dense(x, f"{p}.intermediate.dense")
    hidden = 0.5 * hidden * (1 + scipy.special.erf(hidden / np.sqrt(2)))
    x = layer_norm(x + dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
  return x
