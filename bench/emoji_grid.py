"""Emoji samples side by side: each trained run's grid of the emoji_latent preset's prompts
(rows: 6 seen names, then 6 held-out names), same noise seed, each at its preset's settings.

  python bench/emoji_grid.py --out=docs/emoji_samples.png --ae=AE_DIR \\
      --run="NTM scratch, full NF 4=t2i:NTM_DIR:full_nf:4" \\
      --run="FM Euler 4=fm:FM_DIR:euler:4" ...

Each --run is TITLE=CONFIG:WORKDIR:SAMPLER:T, CONFIG one of t2i, fm, ntm_from_fm.
"""

import json
import os

from absl import app
from absl import flags

from ntm_jax import config_files
from ntm_jax import text as text_lib
from ntm_jax.evaluate import grids
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.train import checkpointing

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "docs/emoji_samples.png", "the PNG to write")
flags.DEFINE_string("ae", "", "the emoji_latent autoencoder's workdir")
flags.DEFINE_multi_string("run", [], "TITLE=CONFIG:WORKDIR:SAMPLER:T")
flags.DEFINE_integer("per_prompt", 6, "samples per prompt (grid columns)")

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")


def main(argv):
  del argv
  panels = {}
  for run in FLAGS.run:
    title, spec = run.split("=", 1)
    config_name, workdir, sampler_name, steps = spec.split(":")
    config = config_files.sibling(os.path.join(CONFIGS_DIR, "t2i.py"), config_name).get_config(
        "emoji_latent")
    config.latent.autoencoder_workdir = FLAGS.ae
    rt, state = checkpointing.restore_latest(config, workdir)
    sampler, settings = sample_lib.evaluated_sampler(config, workdir, rt, sampler_name,
                                                     int(steps))
    images = grids.sample_prompts(sampler, state.ema_params, text_lib.tokenizer_for(config),
                                  list(config.sample.prompts), per_prompt=FLAGS.per_prompt,
                                  seed=settings["seed"], batch_size=settings["batch_size"])
    panels[title] = grids.make_grid(images, FLAGS.per_prompt)
    print(json.dumps({"title": title, "step": int(state.step), **settings}))
  grids.save_png(FLAGS.out, grids.side_by_side(panels, scale=3))
  print(json.dumps({"wrote": FLAGS.out, "prompts": list(config.sample.prompts)}))


if __name__ == "__main__":
  app.run(main)
