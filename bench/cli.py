"""What every bench script shares: the config files and presets, --set overrides, the restore
of a trained run, absl's setup and the JSON it prints. Imports nothing heavy at module level (a
bench may set XLA flags before jax loads).

  import cli
  t2i = cli.config_module("t2i")                       # configs/t2i.py, loaded by path
  parser = cli.trained_run_parser(__doc__, preset="mnist_tiny")  # --preset --config --workdir --set
  config, rt, state, model = cli.load_trained_run(parser.parse_args())
  cli.print_json("my_bench", preset=..., results=...)
"""

import argparse
import importlib.util
import json
import os

from ntm_jax import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("t2i", "fm", "ntm_from_fm", "autoencoder")


def config_module(name: str):
  """configs/NAME.py as a module (its get_config(preset))."""
  if name not in CONFIGS:
    raise ValueError(f"config must be one of {CONFIGS}, got {name!r}")
  return config_files.sibling(os.path.join(ROOT, "configs", "t2i.py"), name)


def module_at(path: str, name: str):
  """A Python file of this repository (e.g. a test's reference implementation) as a module."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(name: str, preset: str = "", overrides=()):
  """configs/NAME.py:PRESET with KEY=VALUE overrides applied."""
  module = config_module(name)
  return config_files.apply_overrides(module.get_config(*([preset] if preset else [])),
                                      list(overrides))


def quiet() -> None:
  """absl as the benches need it: flags marked parsed (grain reads them), warnings only."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)


def add_set_flag(parser: argparse.ArgumentParser, name: str = "set", help_text: str = "") -> None:
  parser.add_argument(f"--{name}", action="append", default=[], metavar="KEY=VALUE",
                      help=help_text or "config override, e.g. sample.guidance=6.0")


def trained_run_parser(doc: str, preset: str) -> argparse.ArgumentParser:
  """An argument parser with a trained run's flags; the bench adds its own."""
  result = argparse.ArgumentParser(description=doc.split("\n")[0])
  result.add_argument("--preset", default=preset)
  result.add_argument("--config", default="t2i", choices=sorted(CONFIGS))
  result.add_argument("--workdir", required=True)
  add_set_flag(result)
  return result


def load_trained_run(args):
  """(config, runtime, state, model with the EMA parameters) of the run's latest checkpoint."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from ntm_jax.runtime import checkpointing  # pylint: disable=g-import-not-at-top
  quiet()
  config = get_config(args.config, args.preset, args.set)
  rt, state = checkpointing.restore_latest(config, args.workdir)
  return config, rt, state, nnx.merge(rt.graphdef, state.ema_params)


def print_json(bench: str, fields: dict) -> None:
  """One JSON object on stdout: the bench's name, the JAX backend, then its fields."""
  import jax  # pylint: disable=g-import-not-at-top
  print(json.dumps({"bench": bench, "backend": jax.default_backend(), **fields}, indent=1))
