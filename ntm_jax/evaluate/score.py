"""--mode=score: zero-shot classification of a trained NTM by its exact likelihood.

  * class data (MNIST family): the first config.score.examples held-out images, classified among
    the class captions; accuracy against the number of trajectories K;
  * shapes data: clean renders of the ShapesEval prompts ranked against near-miss captions;
  * --images with --prompts: the given image files against the given captions, per image the
    NLL under every caption and p(caption | image) by Bayes' rule with equal priors.

Writes workdir/eval/score_step_N_TAG (held-out suites) or score_images_step_N_TAG (--images),
.json and .md, from the latest checkpoint's EMA parameters; TAG hashes the score settings, images
and prompts, so another call never overwrites this one.
"""

import glob
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from PIL import Image

from ntm_jax import errors
from ntm_jax import files
from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.evaluate import zero_shot
from ntm_jax.runtime import checkpointing

POSITIVE = ("trajectories", "examples", "per_kind", "renders", "batch_size")


def validate(config: ml_collections.ConfigDict, images=None, prompts=None) -> None:
  """Refuses what --mode=score cannot do, before anything is built."""
  method = methods.get(config)
  if not method.exact_likelihood:
    raise ValueError(f"--mode=score needs an exact likelihood: method 'ntm', not "
                     f"{method.name!r}")
  for name in POSITIVE:
    value = config.score[name]
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"score.{name} must be a positive integer, got {value!r}")
  if bool(images) != bool(prompts):
    raise ValueError("--images and --prompts go together: the image files and the captions to "
                     "score them against")
  if images and len(prompts) < 2:
    raise ValueError("--mode=score --images needs at least two --prompts to choose between")
  if not images and config.data.source not in sources.CLASS_SOURCES + ("shapes",):
    raise ValueError(f"--mode=score on data.source={config.data.source!r} has no held-out "
                     "captions to rank: pass --images=GLOB and --prompts=CAPTION,CAPTION")


def read_images(patterns, image_size: int, channels: int):
  """uint8 images [n, image_size, image_size, channels] from files matching the glob patterns
  (resized with Lanczos where their size differs), their paths, and how many were resized."""
  paths = sorted({p for pattern in patterns for p in glob.glob(os.path.expanduser(pattern))})
  if not paths:
    raise errors.BadInputError(f"--images matched no files: {list(patterns)}")
  images, resized = [], 0
  for path in paths:
    try:
      image = Image.open(path).convert("RGB")
    except (OSError, Image.UnidentifiedImageError) as err:
      raise errors.BadInputError(f"--images: cannot read {path} as an image ({err})") from None
    if image.size != (image_size, image_size):
      image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
      resized += 1
    images.append(np.asarray(image))
  return pipeline.to_channels(np.stack(images), channels), paths, resized


def image_scores(rt, model, config, images, prompts, tokenizer) -> dict:
  s = config.score
  uint8, paths, resized = read_images(images, config.data.image_size, config.data.channels)
  scores = zero_shot.score_images(rt, model, uint8, tokenizer.encode(list(prompts)),
                                  jax.random.key(s.seed), num_steps=config.ntm.num_steps[0],
                                  trajectories=s.trajectories, batch_size=s.batch_size)
  dimension = int(np.prod(latents.model_image_shape(config)))
  result = zero_shot.caption_posteriors(scores["importance_weighted_nll"][..., -1], dimension)
  return {"captions": list(prompts), "resized": resized, "dimension": dimension,
          "images": [{"path": path, "nll_nats_per_dim": [round(float(v), 4) for v in nll],
                      "best": prompts[best], "posterior": [round(float(p), 4) for p in post]}
                     for path, nll, best, post in zip(paths, result["nll_nats_per_dim"],
                                                      result["best"], result["posterior"])]}


def held_out_scores(rt, model, config, tokenizer) -> dict:
  s, num_steps = config.score, config.ntm.num_steps[0]
  if config.data.source == "shapes":
    return {"near_misses": zero_shot.near_miss_suite(
        rt, model, tokenizer, image_size=config.data.image_size,
        held_out_combinations=config.data.held_out_combinations, per_kind=s.per_kind,
        renders=s.renders, num_steps=num_steps, trajectories=s.trajectories, seed=s.seed)}
  return {"classes": zero_shot.class_suite(
      rt, model, sources.make_source(config.data, "eval"), tokenizer,
      channels=config.data.channels, examples=s.examples, num_steps=num_steps,
      trajectories=s.trajectories, batch_size=s.batch_size, seed=s.seed)}


def markdown(report: dict) -> str:
  lines = [f"# Zero-shot scores at step {report['step']} (T = {report['T']}, K = "
           f"{report['trajectories']} trajectories shared by all captions)", ""]
  if "classes" in report:
    c = report["classes"]
    lines += [f"Held-out images classified among {c['classes']} class captions by argmin NLL "
              f"({c['examples']} images). The mean trajectory NLL ranks captions as the "
              "marginal bound does; the importance-weighted estimate is the tighter bound.", "",
              "| K | accuracy, mean trajectory NLL | accuracy, importance-weighted |",
              "|---|---|---|"]
    lines += [f"| {k + 1} | {a:.3f} | {b:.3f} |" for k, (a, b) in enumerate(zip(
        c["accuracy"]["mean_trajectory_nll"], c["accuracy"]["importance_weighted_nll"]))]
  if "near_misses" in report:
    n = report["near_misses"]
    lines += [f"Clean renders ({n['renders']} per prompt, {n['prompts']} prompts) scored against "
              "their caption and its near misses (one colour, shape or count word changed, or "
              "the relation reversed).", "", "| split / category | true caption ranked first |",
              "|---|---|", *[f"| {k} | {v:.3f} |" for k, v in n["ranked_first"].items()], "",
              "| split / edit | true caption beats the edit |", "|---|---|",
              *[f"| {k} | {v:.3f} |" for k, v in n["beats_near_miss"].items()]]
  if "images" in report:
    r = report["images"]
    lines += [f"Importance-weighted NLL in nats/dim (D = {r['dimension']}) under each caption, "
              "and p(caption | image) of the best with equal priors"
              + (f"; {r['resized']} images resized to the model's size" if r["resized"] else "")
              + ".", "", "| image | " + " | ".join(r["captions"]) + " | best | p(best) |",
              "|---|" + "---|" * (len(r["captions"]) + 2)]
    lines += [f"| {os.path.basename(e['path'])} | " + " | ".join(f"{v:.3f}" for v in
              e["nll_nats_per_dim"]) + f" | {e['best']} | {max(e['posterior']):.3f} |"
              for e in r["images"]]
  return "\n".join(lines) + "\n"


def score(config: ml_collections.ConfigDict, workdir: str, images=None, prompts=None) -> str:
  """Runs the zero-shot suite of the run's data (or --images against --prompts) on the latest
  checkpoint; writes the JSON and markdown reports and returns the JSON path."""
  validate(config, images, prompts)
  rt, state = checkpointing.restore_latest(config, workdir)
  model = nnx.merge(rt.graphdef, state.ema_params)
  tokenizer = text_lib.tokenizer_for(config)
  step = int(state.step)
  report = {"step": step, "T": config.ntm.num_steps[0],
            "trajectories": config.score.trajectories}
  if images:
    report["images"] = image_scores(rt, model, config, images, prompts, tokenizer)
  else:
    report.update(held_out_scores(rt, model, config, tokenizer))
  tag = files.settings_tag([config.score.to_dict(), images, prompts])
  stem = os.path.join(workdir, "eval",
                      f"score{'_images' if images else ''}_step_{step:08d}_{tag}")
  files.write_json(stem + ".json", report)
  files.write_text(stem + ".md", markdown(report))
  logging.info("Zero-shot scores: %s.md", stem)
  return stem + ".json"
