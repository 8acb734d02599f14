"""What the benches that read one trained run share: its command-line flags and its loading.

  parser = trained_run.parser(__doc__, preset="mnist_tiny")   # --preset --config --workdir --set
  config, rt, state, model = trained_run.load(parser.parse_args())
"""

import argparse
import os
import sys

from absl import flags
from absl import logging
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/
# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import ntm_from_fm
from configs import t2i
from ntm_jax import config_files
from ntm_jax.train import checkpointing

CONFIGS = {"t2i": t2i.get_config, "ntm_from_fm": ntm_from_fm.get_config}


def parser(doc: str, preset: str) -> argparse.ArgumentParser:
  """An argument parser with the run's flags; the bench adds its own."""
  result = argparse.ArgumentParser(description=doc.split("\n")[0])
  result.add_argument("--preset", default=preset)
  result.add_argument("--config", default="t2i", choices=sorted(CONFIGS))
  result.add_argument("--workdir", required=True)
  result.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  return result


def load(args):
  """(config, runtime, state, model with the EMA parameters) of the run's latest checkpoint."""
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)
  config = config_files.apply_overrides(CONFIGS[args.config](args.preset), args.set)
  rt, state = checkpointing.restore_latest(config, args.workdir)
  return config, rt, state, nnx.merge(rt.graphdef, state.ema_params)
