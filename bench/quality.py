"""Sample quality and likelihood of trained runs: NTM at 4 steps with each of its samplers vs
the flow-matching baseline at 4 and 50 Euler steps, on the likelihood report and on ShapesEval
(shapes presets) or class accuracy + Frechet distance of the in-repo classifier (MNIST-family).

  python bench/quality.py --preset=tiny --ntm_workdir=DIR [--fm_workdir=DIR] [--per_kind=100]
  python bench/quality.py --preset=mnist_tiny --ntm_workdir=DIR --fm_workdir=DIR
  python bench/quality.py --preset=fashion_mnist_tiny ... --set=data.fashion_mnist_dir=DIR

The NTM's fast sampler is included when --ntm_workdir holds a distilled denoiser. Both runs are
scored by one classifier (--classifier_dir, default NTM_WORKDIR/classifier; trained on first
use). Prints one JSON object whose "markdown" entry is the BENCHMARKS.md table.
"""

import argparse
import json
import os
import sys

import jax
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/
from configs import fm as fm_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import t2i
from ntm_jax import config_files
from ntm_jax.evaluate import likelihood
from ntm_jax.evaluate import reports
from ntm_jax.train import checkpointing
from ntm_jax.train import distill
from ntm_jax.train import generate
from ntm_jax.train import loop


def _config(get_config, args):
  """The preset's config with the --set KEY=VALUE overrides (values as Python literals or
  strings)."""
  return config_files.apply_overrides(get_config(args.preset), args.set)


def _run(config, workdir: str, samplers, args) -> dict:
  config.eval.update(per_kind=args.per_kind, samples_per_prompt=args.samples_per_prompt,
                     samples_per_class=args.samples_per_class)
  config.eval.classifier.dir = args.classifier_dir or os.path.join(args.ntm_workdir, "classifier")
  rt, state = checkpointing.restore_latest(config, workdir)
  return {"step": int(state.step),
          "likelihood": likelihood.evaluate(rt, state.ema_params, config,
                                            loop.tokenizer_for(config), int(state.step)),
          **generate.sample_quality(config, workdir, rt, state.ema_params, samplers)}


def _tables(runs: dict) -> list:
  """Markdown: the sample-quality table of every run's samplers, then the NTM likelihood."""
  renamed = lambda entries, name: [dict(e, sampler=f"{name} {e['sampler']}") for e in entries]
  tables = []
  if "shapes_eval" in runs["ntm"]:
    entries = [e for name, run in runs.items() for e in renamed(run["shapes_eval"], name)]
    for split in ("seen", "held_out"):
      tables += [f"ShapesEval, {split}:", "", *reports.shapes_eval_table(entries, split), ""]
  if "class_metrics" in runs["ntm"]:
    entries = [e for name, run in runs.items()
               for e in renamed(run["class_metrics"]["samplers"], name)]
    tables += [reports.classifier_note(runs["ntm"]["class_metrics"]), "",
               *reports.class_metrics_table(entries), ""]
  return tables + ["NTM held-out likelihood:", "",
                   *reports.likelihood_table(runs["ntm"]["likelihood"])]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--ntm_workdir", required=True)
  parser.add_argument("--fm_workdir", default="")
  parser.add_argument("--per_kind", type=int, default=100)
  parser.add_argument("--samples_per_prompt", type=int, default=4)
  parser.add_argument("--samples_per_class", type=int, default=100)
  parser.add_argument("--classifier_dir", default="")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override for both runs, e.g. data.fashion_mnist_dir=DIR")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  logging.set_verbosity(logging.WARNING)
  ntm_samplers = [("full_nf", 4), ("full_nf_denoised", 4)]
  if distill.has_denoiser(args.ntm_workdir):
    ntm_samplers.append(("fast", 4))
  runs = {"ntm": _run(_config(t2i.get_config, args), args.ntm_workdir, ntm_samplers, args)}
  if args.fm_workdir:
    runs["fm"] = _run(_config(fm_configs.get_config, args), args.fm_workdir,
                      [("euler", 4), ("euler", 50)], args)
  print(json.dumps({"bench": "quality", "backend": jax.default_backend(), "preset": args.preset,
                    "runs": runs, "markdown": "\n".join(_tables(runs))}, indent=1))


if __name__ == "__main__":
  main()
