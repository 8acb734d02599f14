"""Entry point: python -m ntm_jax.main --config=configs/t2i.py[:preset] --workdir=DIR --mode=...

Modes: train (train or resume), distill (train or resume the learned denoiser of a trained
NTM), sample (PNG grid + JSON from the latest checkpoints), eval (held-out likelihood report plus
ShapesEval or, on MNIST-family data, classifier class metrics; JSON + markdown), score (zero-shot
classification by the exact likelihood: held-out class images or shapes near misses, or --images
against --prompts; JSON + markdown).
Config values are overridden with --config.section.key=value.
"""

import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Configuration file (path[:preset]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "distill", "sample", "eval", "score"],
                  "What to run.")
flags.DEFINE_list("prompts", None, "--mode=sample: comma-separated prompts (default: the "
                  "config's sample.prompts or sample.prompts_file); --mode=score with --images: "
                  "the captions to score the images against.")
flags.DEFINE_list("images", None, "--mode=score: comma-separated image files or globs to "
                  "classify among --prompts (default: the data's held-out suite).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # TensorFlow (pulled in by clu and tfds) must never take accelerator memory.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  if FLAGS.distributed:
    jax.distributed.initialize()
  logging.info("JAX process %d of %d; %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)

  # pylint: disable=g-import-not-at-top
  from ntm_jax.evaluate import sample, score, suite
  from ntm_jax.train import distill, loop
  config = FLAGS.config
  try:  # config mistakes stop here, before anything compiles, with the message alone
    loop.validate(config, config.train.batch_size)
    if FLAGS.mode == "score":
      score.validate(config, FLAGS.images, FLAGS.prompts)
  except ValueError as err:
    sys.exit(f"Invalid configuration: {err}")
  if FLAGS.mode == "train":
    loop.train_and_evaluate(config, FLAGS.workdir)
  elif FLAGS.mode == "distill":
    distill.distill(config, FLAGS.workdir)
  elif FLAGS.mode == "sample":
    sample.sample(config, FLAGS.workdir, FLAGS.prompts)
  elif FLAGS.mode == "eval":
    suite.evaluate(config, FLAGS.workdir)
  else:
    score.score(config, FLAGS.workdir, FLAGS.images, FLAGS.prompts)


if __name__ == "__main__":
  app.run(main)
