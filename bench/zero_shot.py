"""Zero-shot classification of held-out class images by a trained NTM's exact likelihood
(ntm_jax/evaluate/zero_shot.py), accuracy against the number of trajectories K, beside the
in-repo CNN classifier on the same images.

  python bench/zero_shot.py --preset=mnist_tiny --workdir=NTM_DIR [--classifier_dir=DIR] \
      [--set=KEY=VALUE ...] [--examples=500] [--trajectories=8]

Prints one JSON object whose "markdown" entry is the results table (docs/results/).
"""

import os
import time

import numpy as np

import cli  # bench/cli.py
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from ntm_jax import text as text_lib
from ntm_jax.data import sources
from ntm_jax.evaluate import classifier
from ntm_jax.evaluate import zero_shot


def main():
  parser = cli.trained_run_parser(__doc__, preset="mnist_tiny")
  parser.add_argument("--classifier_dir", default="")
  parser.add_argument("--examples", type=int, default=500)
  parser.add_argument("--trajectories", type=int, default=8)
  parser.add_argument("--batch_size", type=int, default=50)
  args = parser.parse_args()
  config, rt, state, model = cli.load_trained_run(args)
  if config.data.source not in sources.CLASS_SOURCES:
    parser.error(f"zero-shot classification needs class data {sources.CLASS_SOURCES}")
  source = sources.make_source(config.data, "eval")
  start = time.perf_counter()
  suite = zero_shot.class_suite(rt, model, source, text_lib.tokenizer_for(config),
                                channels=config.data.channels, examples=args.examples,
                                num_steps=config.ntm.num_steps[0],
                                trajectories=args.trajectories, batch_size=args.batch_size,
                                seed=0)
  seconds = time.perf_counter() - start
  accuracy = suite["accuracy"]
  rgb, labels = source.arrays(np.arange(suite["examples"]))
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
  cli.print_json("zero_shot", {"workdir": args.workdir, "step": int(state.step),
      "preset": args.preset, "examples": suite["examples"], "classes": suite["classes"],
      "T": config.ntm.num_steps[0], "seconds": round(seconds, 1), "accuracy": accuracy,
      "cnn_accuracy": cnn_accuracy, "cnn": description, "markdown": "\n".join(rows)})


if __name__ == "__main__":
  main()
