"""The shapes domain as a tensorflow-datasets dataset in ArrayRecord format.

  from ntm_jax.data import shapes_tfds
  builder = shapes_tfds.ShapesT2i(config="16px", data_dir=DIR, file_format="array_record")
  builder.download_and_prepare()
  source = tfds.data_source("shapes_t2i/16px", data_dir=DIR)   # random access, no tf.data

Records are identical to ShapesSource (same seed, same index): split 'train' uses the data seed,
'test' seed + 1 with seen combinations, 'held_out' seed + 1 with held-out combinations, exactly
as the in-memory sources of configs/t2i.py do.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from ntm_jax.data import shapes


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  canvas: int = 16
  seed: int = 0
  num_train: int = 50_000
  num_test: int = 2_000
  held_out_combinations: tuple = (("purple", "triangle"),)


class ShapesT2i(tfds.core.GeneratorBasedBuilder):
  """Coloured shapes with GenEval-style captions (procedural, no download)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      ShapesConfig(name="16px", canvas=16),
      ShapesConfig(name="32px", canvas=32),
      ShapesConfig(name="64px", canvas=64),
      ShapesConfig(name="8px_smoke", canvas=8, num_train=24, num_test=8),  # for quick checks
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(c.canvas, c.canvas, 3)),
            "caption": tfds.features.Text(),
            "kind": tfds.features.Text(),
            "index": tfds.features.Scalar(np.int64),  # the (seed, index) it was made from
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # procedural: nothing to download
    c = self.builder_config
    return {
        "train": self._generate_examples(c.seed, c.num_train, held_out=False),
        "test": self._generate_examples(c.seed + 1, c.num_test, held_out=False),
        "held_out": self._generate_examples(c.seed + 1, c.num_test, held_out=True),
    }

  def _generate_examples(self, seed: int, count: int, held_out: bool):
    c = self.builder_config
    sampler = shapes.SceneSampler(c.canvas, c.held_out_combinations)
    for index in range(count):
      yield index, {"index": index, **shapes.example(seed, index, c.canvas, sampler, held_out)}
