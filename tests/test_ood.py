"""AUROC of the likelihood OOD detector (evaluate/ood.py) against hand and brute-force counts."""

import numpy as np

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
