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
import collections
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from absl import logging
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/
# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import ntm_from_fm
from configs import t2i
from ntm_jax import config_files
from ntm_jax import text_to_image
from ntm_jax.data import shapes
from ntm_jax.evaluate import shapes_eval
from ntm_jax.evaluate import zero_shot
from ntm_jax.train import checkpointing
from ntm_jax.train import loop

CONFIGS = {"t2i": t2i.get_config, "ntm_from_fm": ntm_from_fm.get_config}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _swap_first(caption: str, words, replacement) -> str | None:
  pattern = r"\b(" + "|".join(map(re.escape, words)) + r")\b"
  if not re.search(pattern, caption):
    return None
  return shapes_eval.agree_articles(re.sub(pattern, replacement, caption, count=1))


def near_misses(caption: str) -> list:
  """[(edit kind, caption)]: the first colour, shape (number kept) or count word changed to
  each other value, or the relation reversed."""
  misses = []
  colours, numbers = list(shapes.COLORS), list(shapes.NUMBERS.values())
  for colour in colours:
    misses.append(("colour", _swap_first(caption, colours, colour)))
  for shape in shapes.SHAPES:
    misses.append(("shape", _swap_first(caption, shapes.SHAPES + tuple(shapes.PLURALS.values()),
                                        lambda m, s=shape: shapes.PLURALS[s]
                                        if m.group(1).endswith("s") else s)))
  for number in numbers:
    misses.append(("count", _swap_first(caption, numbers, number)))
  misses.append(("relation", _swap_first(caption, list(OPPOSITE),
                                         lambda m: OPPOSITE[m.group(1)])))
  return sorted({(kind, c) for kind, c in misses if c and c != caption})


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
  tokenizer = loop.tokenizer_for(config)
  score = nnx.jit(zero_shot.caption_scores, static_argnames=("num_steps", "trajectories"))
  suite = shapes_eval.prompt_suite(tuple(map(tuple, config.data.held_out_combinations)),
                                   per_kind=args.per_kind)
  rng = np.random.default_rng(0)
  best = collections.defaultdict(list)
  beats = collections.defaultdict(list)
  for i, prompt in enumerate(suite):
    misses = near_misses(prompt.caption)
    captions = [prompt.caption] + [c for _, c in misses]
    renders = np.stack([shapes_eval.render_prompt(prompt, config.data.image_size, rng)
                        for _ in range(args.renders)])
    x = rt.model_inputs(renders)
    text, mask = text_to_image.encode_text(model, rt.text_inputs(tokenizer.encode(captions)))
    nll = score(model, x, text, mask, jax.random.key(i), num_steps=config.ntm.num_steps[0],
                trajectories=args.trajectories)["trajectory_nll"].mean(-1)  # [renders, captions]
    split = "held_out" if prompt.held_out else "seen"
    best[(split, prompt.kind)] += list(np.asarray(jnp.argmin(nll, axis=1) == 0))
    for j, (kind, _) in enumerate(misses):
      beats[(split, kind)] += list(np.asarray(nll[:, 0] < nll[:, j + 1]))
  mean = lambda d: {f"{s} {k}": round(float(np.mean(v)), 3) for (s, k), v in sorted(d.items())}
  top, pair = mean(best), mean(beats)
  rows = ["| split / category | true caption ranked first | | split / edit | true beats the edit |",
          "|---|---|---|---|---|"]
  left, right = list(top.items()), list(pair.items())
  for n in range(max(len(left), len(right))):
    a = left[n] if n < len(left) else ("", "")
    b = right[n] if n < len(right) else ("", "")
    rows.append(f"| {a[0]} | {a[1]} | | {b[0]} | {b[1]} |")
  print(json.dumps({"bench": "zero_shot_shapes", "workdir": args.workdir,
                    "step": int(state.step), "prompts": len(suite), "renders": args.renders,
                    "trajectories": args.trajectories, "ranked_first": top,
                    "beats_near_miss": pair, "markdown": "\n".join(rows)}, indent=1))


if __name__ == "__main__":
  main()
