"""Zero-shot classification of held-out class images by a trained NTM's exact likelihood
(ntm_jax/evaluate/zero_shot.py), accuracy against the number of trajectories K, beside the
in-repo CNN classifier on the same images.

  python bench/zero_shot.py --preset=mnist_tiny --workdir=NTM_DIR [--classifier_dir=DIR] \
      [--set=KEY=VALUE ...] [--examples=500] [--trajectories=8]

Prints one JSON object whose "markdown" entry is the BENCHMARKS.md table.
"""

import argparse
import json
import os
import sys
import time

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
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.evaluate import classifier
from ntm_jax.evaluate import zero_shot
from ntm_jax.train import checkpointing
from ntm_jax.train import loop

CONFIGS = {"t2i": t2i.get_config, "ntm_from_fm": ntm_from_fm.get_config}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="mnist_tiny")
  parser.add_argument("--config", default="t2i", choices=sorted(CONFIGS))
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--classifier_dir", default="")
  parser.add_argument("--examples", type=int, default=500)
  parser.add_argument("--trajectories", type=int, default=8)
  parser.add_argument("--batch_size", type=int, default=50)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)
  config = config_files.apply_overrides(CONFIGS[args.config](args.preset), args.set)
  if config.data.source not in sources.CLASS_SOURCES:
    parser.error(f"zero-shot classification needs class data {sources.CLASS_SOURCES}")
  rt, state = checkpointing.restore_latest(config, args.workdir)
  model = nnx.merge(rt.graphdef, state.ema_params)
  source = sources.make_source(config.data, "eval")
  rgb, labels = source.arrays(np.arange(args.examples))
  uint8 = pipeline.to_channels(rgb, config.data.channels)
  tokens = loop.tokenizer_for(config).encode(list(source.class_captions))
  text, mask = text_to_image.encode_text(model, rt.text_inputs(tokens))
  score = nnx.jit(zero_shot.caption_scores, static_argnames=("num_steps", "trajectories"))
  start = time.perf_counter()
  parts = []
  for i in range(0, args.examples, args.batch_size):
    parts.append(score(model, rt.model_inputs(uint8[i:i + args.batch_size]), text, mask, jax.random.key(i), num_steps=config.ntm.num_steps[0],
                       trajectories=args.trajectories))
  scores = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
  seconds = time.perf_counter() - start
  accuracy = zero_shot.accuracy_against_trajectories(scores, jnp.asarray(labels))
  judge_dir = args.classifier_dir or os.path.join(args.workdir, "classifier")
  cnn, description = classifier.load_or_train(judge_dir, config.data, config.eval.classifier,
                                              sources.make_source(config.data, "train"), source)
  cnn_accuracy = float(np.mean(np.argmax(classifier.logits_and_features(cnn, rgb)[0], 1)
                               == labels))
  rows = ["| K trajectories | mean trajectory NLL (= bound ranking) | importance-weighted |",
          "|---|---|---|"]
  rows += [f"| {k + 1} | {accuracy['mean_trajectory_nll'][k]:.3f} | "
           f"{accuracy['importance_weighted_nll'][k]:.3f} |" for k in range(args.trajectories)]
  rows.append(f"| CNN classifier (same images) | {cnn_accuracy:.3f} | |")
  print(json.dumps({
      "bench": "zero_shot", "workdir": args.workdir, "step": int(state.step),
      "preset": args.preset, "examples": args.examples, "classes": len(source.class_captions),
      "T": config.ntm.num_steps[0], "seconds": round(seconds, 1),
      "accuracy": {k: [round(float(a), 4) for a in v] for k, v in accuracy.items()},
      "cnn_accuracy": cnn_accuracy, "cnn": description, "markdown": "\n".join(rows)}, indent=1))


if __name__ == "__main__":
  main()
