"""The figures docs/results/text_conditioning.md quotes about the frozen MiniLM encoder itself: parameter count, the
agreement of the Flax BERT with the float64 numpy BERT of tests/minilm_reference.py on padded captions,
and cosine similarities of mean-pooled states. Prints one JSON object.

  python bench/minilm_checks.py
"""


import jax.numpy as jnp
import numpy as np

import cli  # bench/cli.py
from ntm_jax import minilm

reference_lib = cli.module_at("tests/minilm_reference.py", "minilm_reference")


def main():
  weights = minilm.read_weights()
  bert = minilm.load()
  tokens = minilm.WordPieceTokenizer(12).encode(reference_lib.CAPTIONS)
  ours = np.asarray(bert(jnp.asarray(tokens)))
  reference = reference_lib.numpy_bert(weights, tokens)
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
  cli.print_json("minilm_checks", {"parameters": int(sum(v.size for k, v in weights.items() if k != "embeddings.position_ids")),
      "captions": list(reference_lib.CAPTIONS), "padded_length": 12,
      "max_abs_error_vs_numpy_float64": float(np.abs(ours - reference)[visible].max()),
      "max_abs_state": float(np.abs(reference[visible]).max()),
      "pooled_cosine": cosines})


if __name__ == "__main__":
  main()
