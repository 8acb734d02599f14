"""The frozen MiniLM text encoder against the hashed one: two runs of one method and preset that
differ only in model.text_encoder.kind, scored on ShapesEval and on its paraphrase suite (every
colour, shape and number said with a word no training caption contains: "a crimson ball",
"a pair of golden boxes"), judged against the meaning they paraphrase.

  python bench/text_encoders.py --preset=shapes_latent --method=flow_matching \
      --hashed_workdir=DIR --minilm_workdir=DIR --rows=euler:4,euler:50 \
      --set=latent.autoencoder_workdir=AE_DIR [--minilm_embeddings_workdir=DIR]

Paraphrases run up to 13 WordPiece tokens; the MiniLM run reads them at --minilm_max_length
(its adapter has no position table, so the padding length is free), the hashed run at its
trained length (its paraphrases are at most 10 words). Prints one JSON object whose "markdown"
entry holds the results table (docs/results/)s.
"""

import argparse


# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import config_files
from ntm_jax.evaluate import reports
from ntm_jax.evaluate import suite
from ntm_jax.runtime import checkpointing

fm_configs = cli.config_module("fm")
ntm_from_fm = cli.config_module("ntm_from_fm")
t2i = cli.config_module("t2i")

CONFIGS = {"ntm": t2i.get_config, "flow_matching": fm_configs.get_config,
           "ntm_from_fm": ntm_from_fm.get_config}
SUITES = {"ShapesEval": False, "Paraphrase suite": True}


# --NAME_workdir -> (model.text_encoder.kind, states) of that run.
ENCODERS = {"hashed": ("hashed", None), "minilm": ("minilm", "final"),
            "minilm_embeddings": ("minilm", "final+embeddings")}


def score_run(args, name: str, workdir: str) -> dict:
  """{suite name: [one report per row]} of one run."""
  config = config_files.apply_overrides(CONFIGS[args.method](args.preset), args.set)
  kind, states = ENCODERS[name]
  config.model.text_encoder.kind = kind
  if kind == "minilm":
    config.model.text_encoder.update(states=states, max_length=args.minilm_max_length)
  config.eval.update(per_kind=args.per_kind, samples_per_prompt=args.samples_per_prompt)
  rt, state = checkpointing.restore_latest(config, workdir)
  rows = [(name, int(t)) for name, t in (row.split(":") for row in args.rows.split(","))]
  return {"step": int(state.step), **{
      suite_name: [suite.shapes_eval_report(config, workdir, rt, state.ema_params, name, steps,
                                            paraphrased=paraphrased) for name, steps in rows]
      for suite_name, paraphrased in SUITES.items()}}


def tables(runs: dict) -> list:
  lines = []
  for suite_name in SUITES:
    entries = [dict(e, sampler=f"{kind} {e['sampler']}") for kind, run in runs.items()
               for e in run[suite_name]]
    for split in ("seen", "held_out"):
      lines += [f"{suite_name}, {split}:", "", *reports.shapes_eval_table(entries, split), ""]
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="shapes_latent")
  parser.add_argument("--method", default="flow_matching", choices=sorted(CONFIGS))
  parser.add_argument("--hashed_workdir", required=True)
  parser.add_argument("--minilm_workdir", required=True)
  parser.add_argument("--minilm_embeddings_workdir", default="",
                      help="optional third run: text_encoder.states=final+embeddings")
  parser.add_argument("--rows", default="euler:4,euler:50",
                      help="rows as SAMPLER:T (for NTM runs e.g. full_nf:4)")
  parser.add_argument("--per_kind", type=int, default=100)
  parser.add_argument("--samples_per_prompt", type=int, default=4)
  parser.add_argument("--minilm_max_length", type=int, default=16)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override for both runs, e.g. latent.autoencoder_workdir=DIR")
  args = parser.parse_args()
  cli.quiet()
  runs = {name: score_run(args, name, getattr(args, f"{name}_workdir")) for name in ENCODERS
          if getattr(args, f"{name}_workdir")}
  cli.print_json("text_encoders", {"preset": args.preset, "method": args.method, "runs": runs,
                    "markdown": "\n".join(tables(runs))})


if __name__ == "__main__":
  main()
