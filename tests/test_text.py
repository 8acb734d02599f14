"""Tokenizer and text encoder; empty captions become the CFG null condition."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import build, tiny_model_config
from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax import text


def test_tokenizer_is_deterministic_pads_and_truncates():
  tokenizer = text.HashedWordTokenizer(vocab_size=512, max_length=4)
  ids = tokenizer.encode(["A red circle", "a red circle", "", "one two three four five"])
  np.testing.assert_array_equal(ids[0], ids[1])
  assert (ids[0][:3] > 0).all() and ids[0][3] == text.PAD
  assert (ids[2] == text.PAD).all()
  assert (ids[3] > 0).all() and ids.shape == (4, 4)


def test_empty_caption_is_the_null_condition_and_others_are_not():
  config = tiny_model_config(**{"text_dim": 16})
  config.text_encoder = {"vocab_size": 64, "max_length": 5, "depth": 1, "num_heads": 2}
  model = build(ntm.NTM, config)
  model.null_text[...] = jnp.arange(16.0)  # distinguishable from any encoder output
  tokens = jnp.asarray(text.HashedWordTokenizer(64, 5).encode(["a red circle", ""]))
  embeddings, mask = jax.jit(lambda t: text_to_image.encode_text(model, t))(tokens)
  null_text, null_mask = model.null_condition(2, 5)
  np.testing.assert_array_equal(embeddings[1], null_text[1])
  np.testing.assert_array_equal(mask[1], null_mask[1])
  np.testing.assert_array_equal(mask[0], [True, True, True, False, False])
  assert np.isfinite(embeddings).all() and not np.allclose(embeddings[0, 0], null_text[0, 0])
