"""The figures BENCHMARKS.md quotes about the frozen MiniLM encoder itself: parameter count, the
agreement of the Flax BERT with the float64 numpy BERT of tests/test_text.py on padded captions,
and cosine similarities of mean-pooled states. Prints one JSON object.

  python bench/minilm_checks.py
"""

import json
import os
import sys

import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # configs/, and the test's numpy reference
# pylint: disable=g-import-not-at-top,wrong-import-position
import test_text
from ntm_jax import minilm


def main():
  weights = minilm.read_weights()
  bert = minilm.load()
  tokens = minilm.WordPieceTokenizer(12).encode(test_text.CAPTIONS)
  ours = np.asarray(bert(jnp.asarray(tokens)))
  reference = test_text.numpy_bert(weights, tokens)
  visible = tokens != minilm.PAD
  pairs = {"crimson circle ~ red circle": ("a crimson circle", "a red circle"),
           "crimson circle ~ three blue squares": ("a crimson circle", "three blue squares"),
           "... left of ... ~ ... right of ...": ("a red circle left of a blue square",
                                                  "a red circle right of a blue square")}
  cosines = {}
  for name, captions in pairs.items():
    ids = jnp.asarray(minilm.WordPieceTokenizer(12).encode(list(captions)))
    a, b = np.asarray(minilm.pooled(bert(ids), ids))
    cosines[name] = round(float(a @ b), 4)
  print(json.dumps({
      "bench": "minilm_checks",
      "parameters": int(sum(v.size for k, v in weights.items() if k != "embeddings.position_ids")),
      "captions": list(test_text.CAPTIONS), "padded_length": 12,
      "max_abs_error_vs_numpy_float64": float(np.abs(ours - reference)[visible].max()),
      "max_abs_state": float(np.abs(reference[visible]).max()),
      "pooled_cosine": cosines}, indent=1))


if __name__ == "__main__":
  main()
