"""--mode=eval: the held-out likelihood (or velocity error) of the latest checkpoint's EMA
parameters, and the sample quality of every sampler in config.eval.samplers: Inception FID / KID
on held-out captions, with ShapesEval on the shapes data, class accuracy and Frechet distance on
class-labelled data, retrieval by name on emoji."""

import os
import time

import ml_collections
import numpy as np
from absl import logging

from ntm_jax import files
from ntm_jax import grids
from ntm_jax import latents
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.data import sources
from ntm_jax.evaluate import classifier
from ntm_jax.evaluate import emoji_eval
from ntm_jax.evaluate import fid
from ntm_jax.evaluate import inception
from ntm_jax.evaluate import reconstruction
from ntm_jax.evaluate import reports
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.evaluate import shapes_eval
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import held_out


def shapes_eval_report(config, workdir: str, rt, params, sampler_name: str, num_steps=None,
                       paraphrased: bool = False) -> dict:
  """ShapesEval of one sampler (settings from config.sample, T = num_steps if given); with
  paraphrased, on the suite's paraphrases (words never seen in training, same specs)."""
  sampler, settings = sample_lib.evaluated_sampler(config, workdir, rt, sampler_name, num_steps)
  e = config.eval
  suite = shapes_eval.prompt_suite(tuple(map(tuple, config.data.held_out_combinations)),
                                   per_kind=e.per_kind)
  if paraphrased:
    suite = shapes_eval.paraphrase_suite(suite)
  images = grids.sample_prompts(sampler, params, text_lib.tokenizer_for(config),
                                [p.caption for p in suite], per_prompt=e.samples_per_prompt,
                                seed=settings["seed"], batch_size=settings["batch_size"])
  version = shapes_eval.PARAPHRASE_VERSION if paraphrased else shapes_eval.SUITE_VERSION
  return {"suite": version, "prompts": len(suite), "samples_per_prompt": e.samples_per_prompt,
          **settings, **shapes_eval.score(suite, images, e.samples_per_prompt)}


def class_metrics_report(config, workdir: str, rt, params, sampler_name: str,
                         judge: classifier.Judge, num_steps=None,
                         keep_images: bool = False) -> dict:
  """Class accuracy and Frechet distance of one sampler's samples, eval.samples_per_class per
  class caption (with keep_images, the uint8 samples too, class-major, under "images")."""
  sampler, settings = sample_lib.evaluated_sampler(config, workdir, rt, sampler_name, num_steps)
  per_class = config.eval.samples_per_class
  images = grids.sample_prompts(sampler, params, text_lib.tokenizer_for(config), judge.captions,
                                per_prompt=per_class, seed=settings["seed"],
                                batch_size=settings["batch_size"])
  prompted = np.repeat(np.arange(len(judge.captions)), per_class)
  report = {"samples_per_class": per_class, **settings,
            **classifier.class_metrics(judge.model, images, prompted, judge.reference)}
  return dict(report, images=images) if keep_images else report


def fid_report(config, workdir: str, rt, params, sampler_name: str, judge,
               num_steps=None) -> dict:
  """Inception FID / KID of one sampler: one sample per caption of the first eval.fid.images
  held-out examples, against those real images."""
  sampler, settings = sample_lib.evaluated_sampler(config, workdir, rt, sampler_name, num_steps)
  extractor, captions, reference = judge
  images = grids.sample_prompts(sampler, params, text_lib.tokenizer_for(config), captions,
                                per_prompt=1, seed=settings["seed"],
                                batch_size=settings["batch_size"])
  return {**settings, **fid.scores(reference, extractor(images), min_images=len(captions))}


_JUDGES = {}


def _memoized(kind: str, config, make):
  """One judge per process, data config and eval config: every run a bench scores shares it."""
  key = (kind, repr(sorted(config.data.items())), repr(sorted(config.eval.items())))
  if key not in _JUDGES:
    _JUDGES[key] = make()
  return _JUDGES[key]


def _extractor(config):
  return _memoized("inception", config,
                   lambda: inception.FeatureExtractor(batch_size=config.eval.fid.batch_size))


def fid_judge(config):
  """(Inception extractor, held-out captions, their real images' features)."""
  def make():
    count, extractor = config.eval.fid.images, _extractor(config)
    images, captions = fid.held_out_examples(config.data, count)
    reference = fid.cached_features(config.eval.fid.cache_dir or fid.default_cache_dir(),
                                    fid.held_out_key(config.data, count), lambda: images,
                                    extractor)
    return extractor, captions, reference
  return _memoized("fid", config, make)


def emoji_report(config, workdir: str, rt, params, sampler_name: str, gallery, extractor,
                 num_steps=None) -> dict:
  """FID / KID and retrieval of one sampler on the seen and held-out emoji names."""
  sampler, settings = sample_lib.evaluated_sampler(config, workdir, rt, sampler_name, num_steps)
  per_name = config.eval.emoji.samples_per_name
  prompt_sets = emoji_eval.prompt_sets(config)
  images, prompts, seconds = {}, {}, {}
  for name, names in prompt_sets.items():  # seen first: the held-out pass runs compiled
    start = time.perf_counter()
    images[name] = grids.sample_prompts(
        sampler, params, text_lib.tokenizer_for(config), names, per_prompt=per_name,
        seed=settings["seed"], batch_size=settings["batch_size"])
    seconds[name] = time.perf_counter() - start
    prompts[name] = list(np.repeat(names, per_name))
  return {"samples_per_name": per_name, **settings,
          "images_per_s": len(images["held_out"]) / seconds["held_out"],
          **emoji_eval.score(gallery, extractor, images, prompts)}


def emoji_judge(config):
  """(Inception extractor, real-emoji gallery, retrieval bounds)."""
  def make():
    extractor = _extractor(config)
    gallery = emoji_eval.Gallery(config, extractor,
                                 config.eval.fid.cache_dir or fid.default_cache_dir())
    return extractor, gallery, emoji_eval.retrieval_bounds(
        gallery, extractor, config.data.image_size, config.eval.emoji.noise_images)
  return _memoized("emoji", config, make)


def sample_quality(config, workdir: str, rt, params, samplers) -> dict:
  """The sample-quality part of a report for [(sampler name, T or None)]: Inception FID / KID
  on held-out captions (eval.fid.images > 0), and the domain's own judge: ShapesEval on the
  shapes data, class metrics on class-labelled data, FID and retrieval by name on emoji."""
  if config.data.source == "emoji":
    extractor, gallery, bounds = emoji_judge(config)
    return {"emoji": {
        "judge": "FID Inception pool3: FID / KID, nearest-neighbour retrieval",
        "retrieval_bounds": bounds,
        "samplers": [emoji_report(config, workdir, rt, params, name, gallery, extractor, steps)
                     for name, steps in samplers]}}
  quality = {}
  if config.eval.fid.images > 0:
    judge = fid_judge(config)
    quality["fid"] = {
        "judge": "FID Inception pool3 on held-out captions, one sample each",
        "samplers": [fid_report(config, workdir, rt, params, name, judge, steps)
                     for name, steps in samplers]}
  if config.data.source == "shapes" and config.eval.shapes_eval:
    quality["shapes_eval"] = [shapes_eval_report(config, workdir, rt, params, name, steps)
                              for name, steps in samplers]
  if config.data.source in sources.CLASS_SOURCES and config.eval.class_metrics:
    judge = classifier.make_judge(config, workdir)
    quality["class_metrics"] = {
        "classifier": judge.description, "reference_images": len(judge.reference),
        "real_floor": judge.real_floor,
        "samplers": [class_metrics_report(config, workdir, rt, params, name, judge, steps)
                     for name, steps in samplers]}
  return quality


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The evaluation suite on the latest checkpoint's EMA parameters: the held-out likelihood
  report (flow matching: velocity error) and, with every sampler of config.eval.samplers,
  ShapesEval on shapes data or class accuracy + Frechet distance on class-labelled data. On
  latents it names the autoencoder and its held-out reconstruction error; an autoencoder run
  reports its reconstruction error and ShapesEval ceiling instead.
  Writes workdir/eval/report_step_N_TAG.json and .md, TAG a hash of the eval and sample
  settings (another evaluation never overwrites this one); returns the JSON path."""
  rt, state = checkpointing.restore_latest(config, workdir)
  step = int(state.step)
  method = methods.get(config)
  report = {"step": step, "method": method.name}
  if not method.generator:  # the autoencoder
    report.update(reconstruction.evaluation_report(rt, state.ema_params, config, workdir, step))
  else:
    tokenizer = text_lib.tokenizer_for(config)
    report.update(likelihood=held_out.evaluate(rt, state.ema_params, config, tokenizer, step),
                  **sample_quality(config, workdir, rt, state.ema_params,
                                   [(name, None) for name in config.eval.samplers]))
    if rt.codec is not None:
      report["latent"] = latent_note(rt, config, tokenizer)
  tag = files.settings_tag([config.eval.to_dict(), config.sample.to_dict()])
  path = reports.write(report, os.path.join(workdir, "eval", f"report_step_{step:08d}_{tag}"))
  logging.info("Evaluation report: %s", path)
  return path


def latent_note(rt, config, tokenizer) -> dict:
  """Which autoencoder a latent model's report is about, and its held-out reconstruction error
  (over the same held-out batches as the likelihood)."""
  record = rt.codec.record
  images = np.concatenate([b["image"] for b in loaders.held_out_local_batches(
      config, tokenizer, config.train.batch_size, config.train.eval_batches)])
  return {"autoencoder_workdir": record["autoencoder_workdir"],
          "autoencoder_step": record["checkpoint_step"],
          "latent_shape": list(latents.model_image_shape(config)),
          **latents.reconstruction_report(rt.codec, images)}
