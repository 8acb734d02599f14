"""The evaluation classifier and its metrics: the Frechet distance against an independent
matrix square root, a classifier that learns separable classes, storage and reuse, and metrics
that separate real images from noise."""

import os

import numpy as np
import pytest
import scipy.linalg

from configs import t2i
from helpers import write_synthetic_mnist
from ntm_jax.data import sources
from ntm_jax.evaluate import classifier
from ntm_jax.evaluate import fid


def _scipy_frechet(a, b):
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov_a @ cov_b).real
  return np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root)


def test_frechet_distance_matches_the_matrix_square_root_formula():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
  b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.5
  distance = fid.frechet_distance(a, b)
  np.testing.assert_allclose(distance, _scipy_frechet(a, b), rtol=1e-9)
  np.testing.assert_allclose(distance, fid.frechet_distance(b, a), rtol=1e-9)
  assert abs(fid.frechet_distance(a, a)) < 1e-9
  shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])  # a shift adds exactly its squared norm
  np.testing.assert_allclose(fid.frechet_distance(a, a + shift), shift @ shift, rtol=1e-9)
  with pytest.raises(ValueError, match="equal d"):
    fid.frechet_distance(a, b[:, :5])


@pytest.fixture(scope="module")
def mnist_config(tmp_path_factory):
  directory = tmp_path_factory.mktemp("mnist")
  config = t2i.get_config("micro")
  config.data.update(source="mnist", image_size=8,
                     mnist_path=write_synthetic_mnist(directory / "mnist.pkl.gz"))
  config.eval.samples_per_class = 5
  config.eval.classifier.update(steps=40, batch_size=32, dir=str(directory / "classifier"))
  return config


@pytest.fixture(scope="module")
def judge(mnist_config):
  return classifier.make_judge(mnist_config, "unused")


def test_classifier_learns_separable_classes_and_is_stored_for_reuse(mnist_config, judge):
  assert judge.description["test_accuracy"] > 0.95 and judge.description["test_images"] == 300
  assert judge.reference.shape == (50, classifier.FEATURE_DIM)
  assert judge.captions[7] == "a handwritten seven"
  again = classifier.make_judge(mnist_config, "unused")  # restored, not retrained
  assert again.description == judge.description
  np.testing.assert_allclose(again.reference, judge.reference, atol=1e-6)
  changed = mnist_config.copy_and_resolve_references()
  changed.eval.classifier.steps = 10
  with pytest.raises(ValueError, match="was trained for"):
    classifier.make_judge(changed, "unused")
  # Interrupted after the parameters were saved: retrained over them, to the same classifier.
  os.remove(os.path.join(mnist_config.eval.classifier.dir, "classifier.json"))
  retrained = classifier.make_judge(mnist_config, "unused")
  assert retrained.description == judge.description


def test_class_metrics_separate_real_images_from_noise(mnist_config, judge):
  images, labels = sources.make_source(mnist_config.data, "train").arrays(np.arange(200))
  real = classifier.class_metrics(judge.model, images, labels, judge.reference)
  assert real["class_accuracy"] > 0.95
  noise = np.random.default_rng(0).integers(0, 256, images.shape).astype(np.uint8)
  fake = classifier.class_metrics(judge.model, noise, labels, judge.reference)
  assert fake["class_accuracy"] < 0.3
  assert fake["frechet_distance"] > 10 * max(real["frechet_distance"], judge.real_floor)
  assert set(real["per_class_accuracy"]) == set(range(10))


def test_class_metrics_need_class_labelled_data():
  with pytest.raises(ValueError, match="class-labelled"):
    classifier.make_judge(t2i.get_config("micro"), "unused")


def test_eval_mode_on_class_labelled_data_writes_the_class_metrics(mnist_config, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from ntm_jax.evaluate import suite  # pylint: disable=g-import-not-at-top
  from ntm_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = mnist_config.copy_and_resolve_references()
  config.train.num_steps = 10
  loop.train_and_evaluate(config, str(tmp_path))
  with open(suite.evaluate(config, str(tmp_path)), encoding="utf-8") as f:
    report = json.load(f)
  metrics = report["class_metrics"]
  assert "shapes_eval" not in report and metrics["reference_images"] == 50
  (entry,) = metrics["samplers"]
  assert entry["sampler"] == "full_nf" and entry["samples_per_class"] == 5
  assert 0.0 <= entry["class_accuracy"] <= 1.0 and np.isfinite(entry["frechet_distance"])
  assert entry["frechet_distance"] > metrics["real_floor"]  # 10 steps learn no digits
  (markdown,) = (tmp_path / "eval").glob("report_step_00000010_*.md")
  with open(markdown, encoding="utf-8") as f:
    text = f.read()
  assert "## Class metrics (5 samples per class" in text and "on mnist (40 steps)" in text
  assert "| full_nf | 4 |" in text
