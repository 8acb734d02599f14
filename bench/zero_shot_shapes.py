"""Zero-shot caption ranking on shapes: does a trained NTM's likelihood prefer the true caption of
a clean render over its near misses (one colour, shape, count or relation changed)?

For every ShapesEval prompt, --renders clean images of it are scored against the true caption
and each near miss with ntm_jax/evaluate/zero_shot.py (K trajectories shared by all captions).
Per category: how often the true caption has the lowest NLL of all, and per kind of edit how
often it beats that near miss.

  python bench/zero_shot_shapes.py --config=ntm_from_fm --workdir=DIR \
      --set=latent.autoencoder_workdir=AE [--per_kind=20] [--trajectories=4]
"""


import cli  # bench/cli.py
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from ntm_jax import text as text_lib
from ntm_jax.evaluate import zero_shot


def main():
  parser = cli.trained_run_parser(__doc__, preset="shapes_latent")
  parser.add_argument("--per_kind", type=int, default=20)
  parser.add_argument("--renders", type=int, default=4)
  parser.add_argument("--trajectories", type=int, default=4)
  args = parser.parse_args()
  config, rt, state, model = cli.load_trained_run(args)
  suite = zero_shot.near_miss_suite(
      rt, model, text_lib.tokenizer_for(config), image_size=config.data.image_size,
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
  cli.print_json("zero_shot_shapes", {"workdir": args.workdir,
                    "step": int(state.step), "prompts": suite["prompts"], "renders": args.renders,
                    "trajectories": args.trajectories, "ranked_first": top,
                    "beats_near_miss": pair, "markdown": "\n".join(rows)})


if __name__ == "__main__":
  main()
