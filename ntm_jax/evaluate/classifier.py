"""Class metrics of conditional samples on class-labelled data (MNIST-family sources).

A small CNN trained in this repository on the real training images judges generated ones:
  class accuracy    the fraction of samples prompted with class c that it classifies as c;
  Frechet distance  ||mu_g - mu_r||^2 + tr(S_g + S_r - 2 (S_g S_r)^1/2) between Gaussians fitted to
                    its penultimate features of generated and of held-out real images.
This is a domain metric, not FID: the features are this classifier's, not Inception's, and
distances are comparable only between runs scored by the same classifier checkpoint (hence one
shared classifier directory per data domain). Like FID it is biased upwards at small sample
counts, so reports carry the distance between two real sets of the same size as its floor.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from ntm_jax import errors
from ntm_jax import files
from ntm_jax import records
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.evaluate import fid

FEATURE_DIM = 128


class Classifier(nnx.Module):
  """Three 3x3 convolutions (the last two strided), global average pooling, a FEATURE_DIM
  feature layer and a linear class head. Input: float [-1, 1] [batch, H, W, 3]."""

  def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
    self.convs = nnx.List([nnx.Conv(3, 32, (3, 3), rngs=rngs),
                           nnx.Conv(32, 64, (3, 3), strides=2, rngs=rngs),
                           nnx.Conv(64, 128, (3, 3), strides=2, rngs=rngs)])
    self.feature = nnx.Linear(128, FEATURE_DIM, rngs=rngs)
    self.head = nnx.Linear(FEATURE_DIM, num_classes, rngs=rngs)

  def features(self, images: jax.Array) -> jax.Array:
    """[batch, FEATURE_DIM]."""
    x = images
    for conv in self.convs:
      x = nnx.gelu(conv(x))
    return nnx.gelu(self.feature(x.mean(axis=(1, 2))))

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.head(self.features(images))


def _train_step(graphdef, tx):
  @jax.jit
  def step(params, opt_state, images, labels):
    def loss_fn(params):
      logits = nnx.merge(graphdef, params)(pipeline.normalize_images(images))
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def train(images: np.ndarray, labels: np.ndarray, num_classes: int, *, steps: int,
          batch_size: int, learning_rate: float, seed: int) -> Classifier:
  """Trains on uint8 [n, H, W, 3] images with integer labels; minibatches drawn with a fixed
  seed, so the result is a pure function of the data and the settings on a given backend."""
  graphdef, params = nnx.split(Classifier(num_classes, rngs=nnx.Rngs(seed)))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state, step = tx.init(params), _train_step(graphdef, tx)
  order = np.random.default_rng(seed)
  for i in range(steps):
    index = order.integers(0, len(labels), batch_size)
    params, opt_state, loss = step(params, opt_state, images[index], labels[index])
    if (i + 1) % max(1, steps // 5) == 0:
      logging.info("classifier step %d/%d: loss %.4f", i + 1, steps, float(loss))
  return nnx.merge(graphdef, params)


@nnx.jit
def _logits_and_features(model: Classifier, images: jax.Array):
  features = model.features(pipeline.normalize_images(images))
  return model.head(features), features


def logits_and_features(model: Classifier, images: np.ndarray, batch_size: int = 500):
  """(logits [n, classes], features [n, FEATURE_DIM]) as float64 numpy, batched over uint8
  images (the last batch is padded so everything runs in one compiled shape)."""
  logits, features = [], []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    padded = np.pad(chunk, ((0, batch_size - len(chunk)),) + ((0, 0),) * 3)
    out = _logits_and_features(model, jnp.asarray(padded))
    logits.append(np.asarray(out[0], np.float64)[:len(chunk)])
    features.append(np.asarray(out[1], np.float64)[:len(chunk)])
  return np.concatenate(logits), np.concatenate(features)


def accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
  return float((logits_and_features(model, images)[0].argmax(-1) == labels).mean())


def _description(data: ml_collections.ConfigDict, settings: ml_collections.ConfigDict) -> dict:
  """What a stored classifier was trained for; a different one is never silently reused."""
  return {"source": data.source, "image_size": data.image_size, "steps": settings.steps,
          "batch_size": settings.batch_size, "learning_rate": settings.learning_rate,
          "seed": settings.seed}


def load_or_train(directory: str, data: ml_collections.ConfigDict,
                  settings: ml_collections.ConfigDict, train_source, test_source):
  """The classifier stored in `directory` (orbax params + classifier.json), or one trained on
  train_source's images and saved there. Returns (model, description), the description holding
  its accuracy on all of test_source."""
  directory = files.path(directory)
  meta_path = directory / "classifier.json"
  wanted = _description(data, settings)
  num_classes = len(train_source.class_captions)
  if meta_path.exists():
    stored = files.read_json(meta_path)
    if records.differing_keys(stored, wanted, keys=wanted):
      raise errors.RunMismatchError(
          f"the classifier in {directory} was trained for {stored}, not {wanted}: "
                       "point eval.classifier.dir elsewhere or delete it")
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Classifier(num_classes,
                                                                     rngs=nnx.Rngs(0))))
    with ocp.StandardCheckpointer() as checkpointer:
      params = checkpointer.restore(directory / "params", abstract)
    return nnx.merge(graphdef, params), stored
  logging.info("Training the evaluation classifier (%d steps) into %s", settings.steps, directory)
  model = train(*train_source.arrays(), num_classes, steps=settings.steps,
                batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                seed=settings.seed)
  description = dict(wanted, num_classes=num_classes,
                     test_accuracy=accuracy(model, *test_source.arrays()),
                     test_images=len(test_source))
  with ocp.StandardCheckpointer() as checkpointer:
    # force: parameters left by a run interrupted before classifier.json was written
    checkpointer.save(directory / "params", nnx.state(model), force=True)
  files.write_json(meta_path, description)
  logging.info("Evaluation classifier: %.4f held-out accuracy", description["test_accuracy"])
  return model, description


def class_metrics(model: Classifier, images: np.ndarray, prompted: np.ndarray,
                  reference_features: np.ndarray) -> dict:
  """Accuracy (overall and per class) of samples against the class they were prompted with, and
  their Frechet distance to the reference (real held-out) features."""
  logits, features = logits_and_features(model, images)
  correct = logits.argmax(-1) == prompted
  classes = np.unique(prompted)
  return {"class_accuracy": float(correct.mean()),
          "per_class_accuracy": {int(c): float(correct[prompted == c].mean()) for c in classes},
          "frechet_distance": fid.frechet_distance(features, reference_features)}


@dataclasses.dataclass
class Judge:
  """What scoring samples of one data domain needs, prepared once for every sampler."""
  model: Classifier
  description: dict  # training settings and held-out accuracy of the classifier
  captions: list  # the caption of each class, by label
  reference: np.ndarray  # features of real held-out images [n, FEATURE_DIM]
  real_floor: float  # Frechet distance of n real training images to the reference


def make_judge(config: ml_collections.ConfigDict, workdir: str) -> Judge:
  """The classifier of config.eval.classifier (trained on first use) and the reference features
  of samples_per_class x classes real held-out images, drawn with the classifier's seed."""
  if config.data.source not in sources.CLASS_SOURCES:
    raise ValueError(f"class metrics need class-labelled data {sources.CLASS_SOURCES}, got "
                     f"data.source={config.data.source!r}")
  settings = config.eval.classifier
  train_source = sources.make_source(config.data, "train")
  test_source = sources.make_source(config.data, "eval")
  model, description = load_or_train(settings.dir or os.path.join(workdir, "classifier"),
                                     config.data, settings, train_source, test_source)
  count = config.eval.samples_per_class * len(train_source.class_captions)
  if count > min(len(train_source), len(test_source)):
    raise ValueError(f"eval.samples_per_class x classes = {count} exceeds the real images "
                     f"available ({len(train_source)} train, {len(test_source)} held out)")
  rng = np.random.default_rng(settings.seed)

  def real_features(source):
    images, _ = source.arrays(np.sort(rng.choice(len(source), count, replace=False)))
    return logits_and_features(model, images)[1]

  reference = real_features(test_source)
  return Judge(model, description, train_source.class_captions, reference,
               fid.frechet_distance(real_features(train_source), reference))
