"""Entry point: python -m ntm_jax.main --config=configs/t2i.py[:preset] --workdir=DIR --mode=...

Modes: train (train or resume), distill (train or resume the learned denoiser of a trained
NTM), sample (PNG grid + JSON from the latest checkpoints), eval (held-out likelihood report plus
ShapesEval or, on MNIST-family data, classifier class metrics; JSON + markdown), score (zero-shot
classification by the exact likelihood: held-out class images or shapes near misses, or --images
against --prompts; JSON + markdown).
Config values are overridden with --config.section.key=value.

A mistake on the command line (a missing config file, an unknown preset or key, a value of the
wrong type, a workdir that is a file) stops with one line naming the flag and the fix, before
anything heavy imports; --debug shows the full traceback instead.
"""

import ast
import logging as std_logging
import os
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ntm_jax import errors

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
flags.DEFINE_bool("debug", False,
                  "Show full tracebacks for command-line, config and input mistakes.")


# Libraries whose INFO lines (orbax: a dozen per checkpoint; clu: every metric of every log step
# and its own progress notes, which the training loop's progress line replaces) bury the run's
# own; shown again with --verbosity=1. TensorBoard gets every metric either way.
_CHATTY = ("/orbax/", "/grain/", "/jax/_src/xla_bridge.py", "/clu/metric_writers/",
           "/clu/platform/")


class _QuietLibraries(std_logging.Filter):
  def filter(self, record):
    return record.levelno > std_logging.INFO or not any(p in record.pathname for p in _CHATTY)


def quiet_library_logs() -> None:
  if FLAGS.verbosity < 1:
    logging.get_absl_handler().addFilter(_QuietLibraries())


def _message(err: Exception) -> str:
  """An exception's text on one line (ConfigDict wraps its key errors in quoted reprs)."""
  text = str(err.args[0]) if isinstance(err, AttributeError) and err.args else str(err)
  if text[:1] in "'\"":
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      pass
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):  # config_flags embeds the config's
    return lines[-1]  # own traceback: its last line is the error the config file raised
  return " ".join(lines)


def _config_file_error(argv) -> str | None:
  """Checks --config's file before absl loads it (its own error is a multi-line traceback)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  values += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
  if not values:
    return None  # absl reports a missing --config (or prints --help)
  path = values[-1].split(":", 1)[0]
  if not os.path.isfile(path):
    return (f"--config: no file {path!r} (from {os.getcwd()}); run from the repository root "
            "or give the path of configs/t2i.py, fm.py, ntm_from_fm.py or autoencoder.py")
  return None


def parse_flags(argv):
  """absl's parsing, plus the config file loaded with its overrides; a mistake is one line."""
  debug = any(a in ("--debug", "--debug=true", "--debug=True") for a in argv)
  try:
    problem = _config_file_error(argv)
    if problem:
      raise ValueError(problem)
    rest = FLAGS(argv)
    if FLAGS.config is None:  # loads the file and applies the overrides now
      raise ValueError("--config is required: e.g. --config=configs/t2i.py:tiny")
    if not FLAGS.workdir:
      raise ValueError("--workdir is required: the directory for checkpoints, metrics, samples")
    if os.path.exists(FLAGS.workdir) and not os.path.isdir(FLAGS.workdir):
      raise ValueError(f"--workdir={FLAGS.workdir} is a file, not a directory: pass a directory")
    return rest
  except Exception as err:  # pylint: disable=broad-except  # the command line is user input
    if debug:
      raise
    message = _message(err)
    key = message.split()[0].strip("'\"") if isinstance(err, (AttributeError, KeyError)) else None
    flag = next((a for a in argv if key and a.startswith("--config.") and key in a), None)
    if flag:  # an override of a key the config does not have
      hint = message.split(" ", 1)[1] if " " in message else ""
      message = f"{flag.split('=')[0]}: no such config key {key!r}. {hint}".strip()
    sys.exit(f"ntm_jax: {message} (--debug for the traceback)")


def import_tensorflow_quietly():
  """TensorFlow, imported with its C++ start-up chatter ("Could not find cuda drivers", CPU
  feature notes) kept off stderr unless --verbosity >= 1; an import error still raises."""
  if FLAGS.verbosity >= 1:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf
  saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 2)
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  finally:
    os.dup2(saved, 2)
    os.close(null)
    os.close(saved)
  return tf


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  tf = import_tensorflow_quietly()
  if jax.default_backend() == "gpu":
    # TensorFlow (pulled in by clu and tfds) must never take accelerator memory. (On a
    # machine without GPUs this probe only logs a CUDA error that reads like a failure.)
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
  modes = {"train": lambda: loop.train_and_evaluate(config, FLAGS.workdir),
           "distill": lambda: distill.distill(config, FLAGS.workdir),
           "sample": lambda: sample.sample(config, FLAGS.workdir, FLAGS.prompts),
           "eval": lambda: suite.evaluate(config, FLAGS.workdir),
           "score": lambda: score.score(config, FLAGS.workdir, FLAGS.images, FLAGS.prompts)}
  try:
    modes[FLAGS.mode]()
  except errors.UserError as err:  # the user's to fix: the message alone; bugs keep tracebacks
    if FLAGS.debug:
      raise
    sys.exit(f"ntm_jax: {err} (--debug for the traceback)")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
