"""The ShapesEval judge decides exactly: ~100% on renders of the prompt (clean, noisy,
blurred), 0% on noise and blank images, and a near miss is a miss."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from ntm_jax.data import shapes
from ntm_jax.evaluate import shapes_eval


def test_suite_is_fixed_covers_every_category_and_separates_held_out_prompts():
  suite = shapes_eval.prompt_suite()
  assert suite == shapes_eval.prompt_suite()  # deterministic
  assert len(suite) == 100 * len(shapes.KINDS) + 100 * len(shapes.COLOR_KINDS)
  for kind in shapes.KINDS:
    assert sum(p.kind == kind and not p.held_out for p in suite) == 100
  for prompt in suite:
    named = {(i.color, i.shape) for i in prompt.items}
    assert (("purple", "triangle") in named) == prompt.held_out, prompt
  assert suite[0].caption == shapes_eval.prompt_suite(per_kind=1)[0].caption


def test_paraphrases_keep_the_spec_and_use_no_word_of_a_training_caption():
  rng = np.random.default_rng(0)
  sampler = shapes.SceneSampler(32, (("purple", "triangle"),))
  training_words = {w for _ in range(3000) for w in sampler.sample(rng).caption.split()}
  suite = shapes_eval.prompt_suite(per_kind=20)
  paraphrased = shapes_eval.paraphrase_suite(suite)
  content = set(shapes.COLORS) | set(shapes.SHAPES) | set(shapes.PLURALS.values()) | set(
      shapes.NUMBERS.values())
  for original, new in zip(suite, paraphrased):
    assert dataclasses.replace(new, caption=original.caption) == original
    words = new.caption.split()
    assert not content & set(words), new.caption
    for article, following in zip(words, words[1:]):
      if article in ("a", "an"):
        assert (article == "an") == (following[0] in "aeiou"), new.caption
  assert not {w for v in shapes_eval.PARAPHRASES.values() for w in v.split()} & (
      training_words - {"a", "of"})
  assert shapes_eval.paraphrase("two red circles above an orange square") == (
      "a pair of crimson balls over an amber box")


@pytest.mark.parametrize("canvas", [16, 32])
def test_judge_self_test(canvas):
  suite = shapes_eval.prompt_suite(per_kind=12)
  rng = np.random.default_rng(canvas)
  clean = np.stack([shapes_eval.render_prompt(p, canvas, rng) for p in suite])
  noisy = np.clip(clean + rng.normal(0.0, 10.0, clean.shape), 0, 255).astype(np.uint8)
  blurred = ndimage.gaussian_filter(clean.astype(np.float32), (0, 0.5, 0.5, 0))
  noise = rng.integers(0, 256, clean.shape).astype(np.uint8)
  blank = np.full_like(clean, 255)
  accuracy = lambda images: np.mean(
      [shapes_eval.satisfies(image, prompt) for image, prompt in zip(images, suite)])
  assert accuracy(clean) == 1.0
  assert accuracy(noisy) >= 0.97
  assert accuracy(np.round(blurred).astype(np.uint8)) >= 0.97
  assert accuracy(noise) == 0.0
  assert accuracy(blank) == 0.0


def _near_misses(prompt):
  """Prompts the render of `prompt` must fail: wrong count, colour, shape or swapped sides."""
  first = prompt.items[0]
  misses = []
  if first.count:
    misses.append(dataclasses.replace(prompt, items=(
        dataclasses.replace(first, count=first.count + 1),) + prompt.items[1:]))
  if first.color:
    other = next(c for c in shapes.COLORS if c != first.color)
    misses.append(dataclasses.replace(prompt, items=(
        dataclasses.replace(first, color=other),) + prompt.items[1:]))
  if prompt.relation:
    swapped = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    misses.append(dataclasses.replace(prompt, relation=swapped[prompt.relation]))
  other_shape = next(s for s in shapes.SHAPES if s not in {i.shape for i in prompt.items})
  misses.append(dataclasses.replace(prompt, items=(
      dataclasses.replace(first, shape=other_shape),) + prompt.items[1:]))
  return misses


def test_judge_rejects_near_misses():
  suite = shapes_eval.prompt_suite(per_kind=6)
  rng = np.random.default_rng(0)
  checked = 0
  for prompt in suite:
    image = shapes_eval.render_prompt(prompt, 32, rng)
    assert shapes_eval.satisfies(image, prompt)
    for miss in _near_misses(prompt):
      assert not shapes_eval.satisfies(image, miss), (prompt.caption, miss)
      checked += 1
  assert checked > 2 * len(suite)


def test_score_reports_categories_seen_and_held_out():
  suite = shapes_eval.prompt_suite(per_kind=2)
  rng = np.random.default_rng(1)
  images = np.stack([shapes_eval.render_prompt(p, 16, rng) for p in suite for _ in range(2)])
  images[1::2] = 255  # every second sample blank
  report = shapes_eval.score(suite, images, samples_per_prompt=2)
  assert set(report["seen"]["per_category"]) == set(shapes.KINDS)
  assert set(report["held_out"]["per_category"]) == set(shapes.COLOR_KINDS)
  assert report["seen"]["overall"] == pytest.approx(0.5)
  assert report["held_out"]["overall"] == pytest.approx(0.5)
  assert report["seen"]["blank"] == pytest.approx(0.5)
  assert report["held_out"]["blank"] == pytest.approx(0.5)
  assert not any(shapes_eval.is_blank(image) for image in images[::2])  # clean renders
