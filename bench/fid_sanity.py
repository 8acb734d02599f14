"""FID / KID sanity on a real dataset: two disjoint random halves of the real images (near the
floor at that size) against uniform noise images (huge).

  python bench/fid_sanity.py --preset=emoji_latent [--noise_images=200]

Reads the real features from the FID cache (computed and cached on first use) and prints JSON.
"""

import os

import numpy as np
from absl import app
from absl import flags

import cli  # bench/cli.py
from ntm_jax import config_files
from ntm_jax.data import sources
from ntm_jax.evaluate import fid
from ntm_jax.evaluate import inception

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "emoji_latent", "configs/t2i.py preset whose data is scored")
flags.DEFINE_string("split", "train", "data split: 'train' or 'eval'")
flags.DEFINE_integer("noise_images", 200, "uniform-noise images scored against the real set")


def main(argv):
  del argv
  configs_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "configs")
  config = config_files.sibling(os.path.join(configs_dir, "t2i.py"), "t2i").get_config(
      FLAGS.preset)
  extractor = inception.FeatureExtractor()
  real = fid.cached_features(fid.default_cache_dir(), fid.reference_key(config.data, FLAGS.split),
                             lambda: sources.make_source(config.data, FLAGS.split).images,
                             extractor)
  order = np.random.default_rng(0).permutation(len(real))
  half = len(real) // 2
  size = config.data.image_size
  noise = np.random.default_rng(1).integers(0, 256, (FLAGS.noise_images, size, size, 3),
                                            dtype=np.uint8)
  cli.print_json("fid_sanity", {
      "data": fid.reference_key(config.data, FLAGS.split),
      "real_vs_real_halves": fid.scores(real[order[:half]], real[order[half:2 * half]]),
      "real_vs_noise": fid.scores(real, extractor(noise)),
  })


if __name__ == "__main__":
  app.run(main)
