"""Out-of-distribution detection by a trained NTM's likelihood (ntm_jax/evaluate/ood.py): AUROC
of held-out in-distribution images against another dataset's, for the trajectory NLL, its bound,
each level, and the typicality tests of the per-level factors and of the per-position factors
(fitted on --fit_examples images of the model's training split only), with histograms of
the NLL and of the per-position test.

  python bench/ood.py --preset=mnist_tiny --config=ntm_from_fm --workdir=DIR \
      --other_source=fashion_mnist [--figure=ood.png] [--scores_out=scores.npz]

Prints one JSON object whose "markdown" entry is the results table (docs/results/).
"""


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image
from PIL import ImageDraw

import cli  # bench/cli.py
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.evaluate import ood


def scores_of(model, rt, config, source_name: str, args, split: str = "eval",
              examples: int = 0) -> dict:
  """Per-image scores of the first `examples` (default --examples) images of a split."""
  examples = examples or args.examples
  data = config.data.copy_and_resolve_references()
  data.source = source_name
  rgb, _ = sources.make_source(data, split).arrays(np.arange(examples))
  uint8 = pipeline.to_channels(rgb, config.data.channels)
  score = nnx.jit(ood.unconditional_scores, static_argnames=("num_steps", "trajectories"))
  parts = []
  for i in range(0, examples, args.batch_size):
    chunk = uint8[i:i + args.batch_size]
    parts.append(score(model, rt.model_inputs(chunk), jax.random.key(i), num_steps=config.ntm.num_steps[0],
                       trajectories=args.trajectories))
  per_dim = lambda a: np.asarray(a) / model.num_dims
  return jax.tree.map(lambda *a: per_dim(jnp.concatenate(a)), *parts)


def histogram(in_values, out_values, labels, title: str, bins: int = 60,
              size=(600, 260)) -> Image.Image:
  """Step curves of two histograms: in-distribution blue, foreign orange."""
  lo, hi = np.percentile(np.concatenate([in_values, out_values]), [0.5, 99.5])
  edges = np.linspace(lo, hi, bins + 1)
  counts = [np.histogram(np.clip(v, lo, hi), edges)[0] for v in (in_values, out_values)]
  top, base, width = max(c.max() for c in counts), size[1] - 22, size[0] / bins
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  for c, colour, label, y in zip(counts, ((40, 80, 220), (245, 130, 30)), labels, (4, 18)):
    points = []
    for i, n in enumerate(c):
      height = base - (base - 36) * n / top
      points += [(i * width, height), ((i + 1) * width, height)]
    draw.line([(0, base)] + points + [(size[0] - 1, base)], fill=colour, width=2)
    draw.text((size[0] - 170, y), label, fill=colour)
  draw.text((4, base + 6), f"{lo:.2f}", fill="black")
  draw.text((size[0] - 40, base + 6), f"{hi:.2f}", fill="black")
  draw.text((size[0] // 2 - 3 * len(title), base + 6), title, fill="black")
  return image


def figure(path: str, inside: dict, outside: dict, labels, aurocs: dict) -> None:
  """The NLL's histograms above those of the per-position typicality test (log10 of its
  squared Mahalanobis distance), each titled with its AUROC."""
  log10 = lambda scores: np.log10(scores["typicality_tokens"])
  panels = [histogram(inside["nll"], outside["nll"], labels,
                      f"NLL nats/dim: AUROC {aurocs['nll']:.3f}"),
            histogram(log10(inside), log10(outside), labels,
                      f"log10 per-position typicality: AUROC {aurocs['typicality_tokens']:.3f}")]
  image = Image.new("RGB", (panels[0].width, sum(p.height for p in panels) + 8), "white")
  for i, panel in enumerate(panels):
    image.paste(panel, (0, i * (panel.height + 8)))
  image.save(path)


def main():
  parser = cli.trained_run_parser(__doc__, preset="mnist_tiny")
  parser.add_argument("--other_source", default="fashion_mnist", choices=sources.CLASS_SOURCES)
  parser.add_argument("--examples", type=int, default=1000)
  # 16 trajectories and 5,000 fitting images: the setting at which the per-position typicality
  # test passes 0.95 in both MNIST <-> Fashion directions (docs/results/beyond_the_paper.md).
  parser.add_argument("--fit_examples", type=int, default=5000,
                      help="training images the typicality tests are fitted on (0: --examples)")
  parser.add_argument("--trajectories", type=int, default=16)
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--figure", default="")
  parser.add_argument("--scores_out", default="",
                      help="an .npz of every image's scores (in_NAME, out_NAME, train_NAME)")
  args = parser.parse_args()
  config, rt, state, model = cli.load_trained_run(args)
  inside = scores_of(model, rt, config, config.data.source, args)
  outside = scores_of(model, rt, config, args.other_source, args)
  # The typicality tests, fitted on the model's own training split only.
  train = scores_of(model, rt, config, config.data.source, args, "train", args.fit_examples)
  for kind in ood.FEATURES:
    test = ood.fit_typicality(ood.features(train, kind))
    for scores in (inside, outside):
      scores[f"typicality_{kind}"] = ood.typicality(test, ood.features(scores, kind))
  result = {name: {"auroc": ood.auroc(inside[name], outside[name]),
                   "auroc_95": ood.auroc_interval(inside[name], outside[name]),
                   "in_mean": float(np.mean(inside[name])),
                   "out_mean": float(np.mean(outside[name]))}
            for name in inside if name != "level_tokens"}
  if args.scores_out:
    np.savez(args.scores_out, **{f"{split}_{name}": np.asarray(values)
                                 for split, scores in (("in", inside), ("out", outside),
                                                       ("train", train))
                                 for name, values in scores.items()})
  if args.figure:
    figure(args.figure, inside, outside, (f"in: {config.data.source}", f"out: {args.other_source}"),
           {name: r["auroc"] for name, r in result.items()})
  rows = [f"In: {config.data.source} held-out; out: {args.other_source} held-out; "
          f"{args.examples} images each, unconditional, K = {args.trajectories}; typicality "
          f"fitted on {len(train['nll'])} training images.", "",
          "| score (nats/dim; typicality_*: squared Mahalanobis distance) | in mean | out mean | "
          "AUROC (out scores higher) | 95% bootstrap interval |", "|---|---|---|---|---|"]
  rows += [f"| {name} | {r['in_mean']:.3f} | {r['out_mean']:.3f} | {r['auroc']:.3f} | "
           f"[{r['auroc_95'][0]:.3f}, {r['auroc_95'][1]:.3f}] |" for name, r in result.items()]
  cli.print_json("ood", {"workdir": args.workdir, "step": int(state.step),
                    "in": config.data.source, "out": args.other_source, "scores": result,
                    "markdown": "\n".join(rows)})


if __name__ == "__main__":
  main()
