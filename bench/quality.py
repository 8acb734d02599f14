"""Sample quality and likelihood of trained runs: NTM at 4 steps with each of its samplers vs
the flow-matching baseline at 4 and 50 Euler steps, on the likelihood report and on ShapesEval
(shapes presets) or class accuracy + Frechet distance of the in-repo classifier (MNIST-family),
and Inception FID / KID on held-out captions (eval.fid.images of them; 0 turns it off).

  python bench/quality.py --preset=tiny --ntm_workdir=DIR [--fm_workdir=DIR] [--per_kind=100]
  python bench/quality.py --preset=mnist_tiny --ntm_workdir=DIR --fm_workdir=DIR
  python bench/quality.py --preset=fashion_mnist_tiny ... --set=data.fashion_mnist_dir=DIR
  python bench/quality.py --preset=shapes_latent --ntm_workdir=DIR --fm_workdir=DIR \
      --ntm_from_fm_workdir=DIR --set=latent.autoencoder_workdir=AE_DIR
  python bench/quality.py --preset=emoji_latent ... (Inception FID / KID and retrieval)

--ntm_from_fm_workdir adds an NTM trained with configs/ntm_from_fm.py. --set overrides apply to
every run, --ntm_set / --ntm_from_fm_set / --fm_set to one (sampling settings chosen per model,
e.g. --ntm_set=sample.guidance=6.0). --run=NAME:CONFIG:WORKDIR adds a named row (CONFIG: t2i,
ntm_from_fm or fm; repeatable, e.g. the variants of an ablation), with --run_set=NAME:KEY=VALUE
overrides of its own. Any of the runs may be
left out (e.g. --fm_workdir alone, for points of a training curve, with --step=N to score
checkpoint N instead of the latest); --fm_rows picks the FM
samplers and step counts. Without --ntm_samplers, the NTM's fast sampler is added when its workdir
holds a distilled denoiser; --ntm_samplers lists exactly the NTM rows (e.g. fast alone).
All runs are scored by one classifier (--classifier_dir, default FIRST_WORKDIR/classifier;
trained on first use). Prints one JSON object whose "markdown" entry is the results table (docs/results/).
"""

import argparse
import os


import cli  # bench/cli.py
from ntm_jax import config_files
from ntm_jax import text as text_lib
from ntm_jax.evaluate import reports
from ntm_jax.evaluate import suite
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import denoiser
from ntm_jax.runtime import held_out



GENERATORS = ("t2i", "ntm_from_fm", "fm")  # the config files whose runs sample images


def _rows(args, parser) -> list:
  """(name, config file, workdir, overrides) of every run to score, in table order."""
  rows = [(name, config_name, workdir, overrides) for name, config_name, workdir, overrides in (
      ("ntm", "t2i", args.ntm_workdir, args.ntm_set),
      ("ntm_from_fm", "ntm_from_fm", args.ntm_from_fm_workdir, args.ntm_from_fm_set)) if workdir]
  extra = []
  for spec in args.run:
    name, config_name, workdir = (spec.split(":", 2) + ["", ""])[:3]
    if config_name not in GENERATORS or not workdir:
      parser.error(f"--run={spec}: expected NAME:CONFIG:WORKDIR with CONFIG one of "
                   f"{GENERATORS}")
    overrides = [o.split(":", 1)[1] for o in args.run_set if o.split(":", 1)[0] == name]
    extra.append((name, config_name, workdir, overrides))
  fm = [("fm", "fm", args.fm_workdir, args.fm_set)] if args.fm_workdir else []
  rows += extra + fm
  names = [row[0] for row in rows]
  if len(set(names)) != len(names):
    parser.error(f"run names must differ, got {names}")
  return rows


def _config(get_config, args, run_overrides):
  """The preset's config with the --set KEY=VALUE overrides, then the run's own (values as
  Python literals or strings)."""
  return config_files.apply_overrides(get_config(args.preset), args.set + run_overrides)


def _run(config, workdir: str, samplers, args) -> dict:
  config.eval.update(per_kind=args.per_kind, samples_per_prompt=args.samples_per_prompt,
                     samples_per_class=args.samples_per_class)
  config.eval.classifier.dir = args.classifier_dir
  rt, state = checkpointing.restore_latest(config, workdir, step=args.step)
  tokenizer = text_lib.tokenizer_for(config)
  result = {"step": int(state.step),
            "likelihood": held_out.evaluate(rt, state.ema_params, config, tokenizer,
                                              int(state.step)),
            **suite.sample_quality(config, workdir, rt, state.ema_params, samplers)}
  if rt.codec is not None:
    result["latent"] = suite.latent_note(rt, config, tokenizer)
  return result


def _tables(runs: dict) -> list:
  """Markdown: the sample-quality table of every run's samplers, then each NTM's likelihood."""
  def renamed(entries, name):  # the run's name, and the denoiser's step for the fast sampler
    return [dict(e, sampler=f"{name} {e['sampler']}" + (
        f" (denoiser step {e['denoiser_step']})" if "denoiser_step" in e else ""))
            for e in entries]

  tables = []
  first = next(iter(runs.values()))
  if "fid" in first:
    entries = [e for name, run in runs.items() for e in renamed(run["fid"]["samplers"], name)]
    tables += ["Inception FID / KID on held-out captions:", "", *reports.fid_table(entries), ""]
  if "shapes_eval" in first:
    entries = [e for name, run in runs.items() for e in renamed(run["shapes_eval"], name)]
    for split in ("seen", "held_out"):
      tables += [f"ShapesEval, {split}:", "", *reports.shapes_eval_table(entries, split), ""]
  if "emoji" in first:
    entries = [e for name, run in runs.items() for e in renamed(run["emoji"]["samplers"], name)]
    for split in ("seen", "held_out"):
      tables += [f"Emoji, {split} names:", "", *reports.emoji_table(entries, split), ""]
    tables += ["Retrieval judge bounds:", "",
               *reports.emoji_bounds_lines(first["emoji"]["retrieval_bounds"]), ""]
  if "class_metrics" in first:
    entries = [e for name, run in runs.items()
               for e in renamed(run["class_metrics"]["samplers"], name)]
    tables += [reports.classifier_note(first["class_metrics"]), "",
               *reports.class_metrics_table(entries), ""]
  for name, run in runs.items():
    if run["config"] != "fm":
      tables += [f"{name} held-out likelihood:", "",
                 *(reports.latent_lines(run["latent"]) if "latent" in run else []),
                 *reports.likelihood_table(run["likelihood"]), ""]
  return tables


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--ntm_workdir", default="")
  parser.add_argument("--fm_workdir", default="")
  parser.add_argument("--ntm_from_fm_workdir", default="")
  parser.add_argument("--fm_rows", default="euler:4,euler:50",
                      help="FM rows as SAMPLER:T (euler, heun, posterior)")
  parser.add_argument("--ntm_samplers", default="",
                      help="NTM samplers at T = 4, exactly these (default: full_nf, "
                           "full_nf_denoised, and fast when a denoiser exists)")
  parser.add_argument("--step", type=int, default=None,
                      help="score every run's checkpoint of this step instead of its latest "
                           "(a point of a training curve)")
  parser.add_argument("--per_kind", type=int, default=100)
  parser.add_argument("--samples_per_prompt", type=int, default=4)
  parser.add_argument("--samples_per_class", type=int, default=100)
  parser.add_argument("--classifier_dir", default="")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override for every run, e.g. data.fashion_mnist_dir=DIR")
  parser.add_argument("--run", action="append", default=[], metavar="NAME:CONFIG:WORKDIR",
                      help="a further run to score, named NAME (CONFIG: t2i, ntm_from_fm, fm)")
  parser.add_argument("--run_set", action="append", default=[], metavar="NAME:KEY=VALUE",
                      help="config override for the --run named NAME only, after --set")
  for run in ("ntm", "ntm_from_fm", "fm"):
    parser.add_argument(f"--{run}_set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"config override for the {run} run only, after --set")
  args = parser.parse_args()
  cli.quiet()
  rows = _rows(args, parser)
  if not rows:
    parser.error("give at least one of --ntm_workdir, --fm_workdir, --ntm_from_fm_workdir, --run")
  args.classifier_dir = args.classifier_dir or os.path.join(rows[0][2], "classifier")

  def ntm_samplers(workdir):
    if args.ntm_samplers:
      return [(name, 4) for name in args.ntm_samplers.split(",")]
    return [(name, 4) for name in ("full_nf", "full_nf_denoised")] + (
        [("fast", 4)] if denoiser.has_denoiser(workdir) else [])

  fm_samplers = [(name, int(t)) for name, t in (row.split(":") for row in args.fm_rows.split(","))]
  runs = {}
  for name, config_name, workdir, overrides in rows:
    samplers = fm_samplers if config_name == "fm" else ntm_samplers(workdir)
    runs[name] = {"config": config_name, **_run(
        _config(cli.config_module(config_name).get_config, args, overrides), workdir, samplers,
        args)}
  cli.print_json("quality", {"preset": args.preset,
                    "runs": runs, "markdown": "\n".join(_tables(runs))})


if __name__ == "__main__":
  main()
