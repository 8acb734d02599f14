"""Exact inversion and caption editing with a trained NTM (ntm_jax/inversion.py).

Held-out shapes images are inverted to the full-NF sampler's noise under their own captions,
regenerated from that noise with the same caption (the round trip, exact up to float error) and
with the first colour word swapped (the edit). Writes a PNG (rows: original, round trip, edit)
and prints one JSON object with the round-trip error in pixels.

  python bench/edit.py --config=configs/ntm_from_fm.py:shapes_latent --workdir=DIR \
      --set=latent.autoencoder_workdir=AE --out=edit.png
"""

import argparse
import os
import re

import jax
import numpy as np
from flax import nnx

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import config_files
from ntm_jax import grids
from ntm_jax import inversion
from ntm_jax import text as text_lib
from ntm_jax import text_to_image
from ntm_jax.data import pipeline
from ntm_jax.data import shapes
from ntm_jax.data import sources
from ntm_jax.evaluate import shapes_eval
from ntm_jax.runtime import checkpointing

SWAP = {"red": "blue", "blue": "red", "green": "orange", "orange": "green", "yellow": "purple",
        "purple": "yellow"}


def swap_first_colour(caption: str) -> str:
  swapped = re.sub(r"\b(" + "|".join(shapes.COLORS) + r")\b", lambda m: SWAP[m.group(1)],
                   caption, count=1)
  return shapes_eval.agree_articles(swapped)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="FILE.py:PRESET")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--count", type=int, default=8)
  parser.add_argument("--guidance", type=float, default=0.0)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  cli.quiet()
  path, _, preset = args.config.partition(":")
  module = config_files.sibling(path, os.path.splitext(os.path.basename(path))[0])
  config = config_files.apply_overrides(module.get_config(*([preset] if preset else [])),
                                        args.set)
  rt, state = checkpointing.restore_latest(config, args.workdir)
  model = nnx.merge(rt.graphdef, state.ema_params)
  source = sources.make_source(config.data, "eval")
  records = []
  for i in range(len(source)):  # the first held-out images whose caption names a colour
    if len(records) < args.count and set(source[i]["caption"].split()) & set(shapes.COLORS):
      records.append(source[i])
  uint8 = pipeline.to_channels(np.stack([r["image"] for r in records]), config.data.channels)
  captions = [r["caption"] for r in records]
  edits = [swap_first_colour(c) for c in captions]
  tokenizer = text_lib.tokenizer_for(config)
  condition = lambda c: text_to_image.encode_text(model, rt.text_inputs(tokenizer.encode(c)))
  x = rt.model_inputs(uint8)
  num_steps = config.sample.num_steps
  inverted = nnx.jit(inversion.invert, static_argnames=("num_steps", "guidance"))(
      model, x, *condition(captions), jax.random.key(0), num_steps=num_steps,
      guidance=args.guidance)
  regenerate = nnx.jit(inversion.generate, static_argnames=("guidance",))
  back = regenerate(model, inverted["top"], inverted["noise"], *condition(captions),
                    guidance=args.guidance)
  edited = regenerate(model, inverted["top"], inverted["noise"], *condition(edits),
                      guidance=args.guidance)
  decode = (lambda z: rt.codec.decode(z)) if rt.codec is not None else (lambda z: z)
  reference, back_images = np.asarray(decode(x)), np.asarray(decode(back))
  rows = [pipeline.to_rgb(u) for u in (uint8, pipeline.to_uint8(back_images),
                                       pipeline.to_uint8(decode(edited)))]
  grids.save_png(args.out, grids.make_grid(np.concatenate(rows), len(records)), scale=4)
  cli.print_json("edit", {"workdir": args.workdir, "step": int(state.step), "T": num_steps,
      "guidance": args.guidance, "captions": captions, "edits": edits,
      "round_trip_max_abs_error": float(np.abs(back - x).max()),
      "round_trip_pixel_max_abs_error": float(np.abs(back_images - reference).max()),
      "figure": args.out})


if __name__ == "__main__":
  main()
