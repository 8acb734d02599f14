"""Zero-shot caption ranking on shapes: does a trained NTM's likelihood prefer the true caption of
a clean render over its near misses (one colour, shape, count or relation changed)?

For every ShapesEval prompt, --renders clean images of it are scored against the true caption
and each near miss with ntm_jax/evaluate/zero_shot.py (K trajectories shared by all captions).
Per category: how often the true caption has the lowest NLL of all, and per kind of edit how
often it beats that near miss.

  python bench/zero_shot_shapes.py --config=ntm_from_fm --workdir=DIR \
      --set=latent.autoencoder_workdir=AE [--per_kind=20] [--trajectories=4]
"""

import argparse
import json
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
from ntm_jax.evaluate import zero_shot
from ntm_jax.train import checkpointing
from ntm_jax.train import loop

CONFIGS = {"t2i": t2i.get_config, "ntm_from_fm": ntm_from_fm.get_config}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="shapes_latent")
  parser.add_argument("--config", default="t2i", choices=sorted(CONFIGS))
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--per_kind", type=int, default=20)
  parser.add_argument("--renders", type=int, default=4)
  parser.add_argument("--trajectories", type=int, default=4)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)
  config = config_files.apply_overrides(CONFIGS[args.config](args.preset), args.set)
  rt, state = checkpointing.restore_latest(config, args.workdir)
  model = nnx.merge(rt.graphdef, state.ema_params)
  suite = zero_shot.near_miss_suite(
      rt, model, loop.tokenizer_for(config), image_size=config.data.image_size,
      held_out_combinations=config.data.held_out_combinations, per_kind=args.per_kind,
      renders=args.renders, num_steps=config.ntm.num_steps[0], trajectories=args.trajectories,
      seed=0)
  top, pair = suite["ranked_first"], suite["beats_near_miss"]
  rows = ["| split / category | true caption ranked first | | split / edit | true beats the edit |",
          "|---|---|---|---|---|"]
  left, right = list(top.items()), list(pair.items())
  for n in range(max(len(left), len(right))):
    a = left[n] if n < len(left) else ("", "")
    b = right[n] if n < len(right) else ("", "")
    rows.append(f"| {a[0]} | {a[1]} | | {b[0]} | {b[1]} |")
  print(json.dumps({"bench": "zero_shot_shapes", "workdir": args.workdir,
                    "step": int(state.step), "prompts": suite["prompts"], "renders": args.renders,
                    "trajectories": args.trajectories, "ranked_first": top,
                    "beats_near_miss": pair, "markdown": "\n".join(rows)}, indent=1))


if __name__ == "__main__":
  main()
