"""AUROC of the likelihood OOD detector (evaluate/ood.py) against hand and brute-force counts."""

import numpy as np
import pytest

from ntm_jax.evaluate import ood


def test_auroc_by_hand_and_with_ties():
  # Pairs (in, out): out wins 5 of 6 (only 3 > 2.5 loses).
  assert abs(ood.auroc([1.0, 2.0, 3.0], [2.5, 4.0]) - 5 / 6) < 1e-12
  assert ood.auroc([1.0, 2.0], [1.0, 2.0]) == 0.5  # ties count half
  assert ood.auroc([0.0], [1.0]) == 1.0 and ood.auroc([1.0], [0.0]) == 0.0


def test_auroc_equals_the_pair_count_on_random_scores():
  rng = np.random.default_rng(0)
  inside = rng.integers(0, 20, 300).astype(float)  # many ties
  outside = rng.integers(5, 25, 200).astype(float)
  wins = (outside[None, :] > inside[:, None]).mean() + 0.5 * (
      outside[None, :] == inside[:, None]).mean()
  np.testing.assert_allclose(ood.auroc(inside, outside), wins, rtol=1e-12)


def test_auroc_interval_covers_the_true_value_and_narrows_with_more_data():
  rng = np.random.default_rng(0)
  true_auroc = 0.760250  # P(out > in) for N(0, 1) against N(1, 1): Phi(1 / sqrt(2))
  widths = []
  for count in (400, 1600):
    inside, outside = rng.normal(size=count), rng.normal(1.0, size=count)
    low, high = ood.auroc_interval(inside, outside, resamples=200)
    assert low < ood.auroc(inside, outside) < high and low < true_auroc < high
    widths.append(high - low)
  assert 0.35 < widths[1] / widths[0] < 0.65  # a standard error falls as 1 / sqrt(n)


def _levels(rng, count, shift=(0.0, 0.0, 0.0), mix=0.0):
  """Per-level NLL vectors with correlated levels; `shift` moves the mean, `mix` the correlation."""
  base = rng.normal(size=(count, 1))
  noise = rng.normal(scale=0.3, size=(count, 3))
  columns = np.concatenate([base, (1 - 2 * mix) * base, base], axis=1) + noise + shift
  return ood.features({f"level_{k}": columns[:, k] for k in range(3)}, "levels")


def test_typicality_flags_foreign_data_whichever_way_its_likelihood_moves():
  """Fitted on in-distribution training vectors only: data with a lower NLL (the failure of raw
  likelihoods), a higher one, or the same NLL but other relations between levels all score as
  atypical, where the total NLL fails the first and the last."""
  rng = np.random.default_rng(0)
  test = ood.fit_typicality(_levels(rng, 2000))
  held_out = _levels(rng, 500)
  total = lambda levels: levels.sum(1)
  # (foreign data, typicality AUROC at least, whether the total NLL separates it too)
  for foreign, least, total_works in ((_levels(rng, 500, shift=(-1.5, 0.0, 0.0)), 0.95, False),
                                      (_levels(rng, 500, shift=(4.0, 4.0, 4.0)), 0.95, True),
                                      (_levels(rng, 500, mix=1.0), 0.8, False)):
    auroc = ood.auroc(ood.typicality(test, held_out), ood.typicality(test, foreign))
    assert auroc > least, auroc
    by_total = ood.auroc(total(held_out), total(foreign))
    assert (by_total > 0.9) == total_works, by_total


def test_token_features_split_each_level_over_positions_without_the_noise_level():
  tokens = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # [batch, T+1 = 3, tokens = 4]
  scores = {"level_tokens": tokens, **{f"level_{k}": tokens[:, k].sum(-1) for k in range(3)}}
  np.testing.assert_array_equal(ood.features(scores, "tokens"), tokens[:, :2].reshape(2, 8))
  np.testing.assert_array_equal(ood.features(scores, "levels"), tokens.sum(-1))


def test_typicality_refuses_too_few_fitting_examples():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="at least 3 fitting examples per feature"):
    ood.fit_typicality(_levels(rng, 5))
  with pytest.raises(ValueError, match="must be one of"):
    ood.features({}, "pixels")
