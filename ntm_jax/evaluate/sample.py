"""--mode=sample, and the sampler a trained run resolves to (also for --mode=eval): the latest
checkpoint's EMA parameters, with the distilled denoiser's for the fast sampler."""

import os

import ml_collections
from absl import logging

from ntm_jax import files
from ntm_jax import grids
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.methods import sampling
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import denoiser


def resolve_sampler(config: ml_collections.ConfigDict, workdir: str, name=None) -> str:
  """A sampler name (default config.sample.sampler) with 'auto' resolved: for the NTM the fast
  sampler once a distilled denoiser exists, else full NF; for flow matching Euler."""
  method = methods.get(config)
  return sampling.resolve(method, name or config.sample.sampler,
                          method.distillable and denoiser.has_denoiser(workdir))


def make_sampler(config, workdir: str, rt, sample_config):
  """(params, tokens, rng) -> images for a sample section whose sampler is resolved, and the
  settings it adds to reports (the denoiser's step for the fast sampler)."""
  if sample_config.sampler == "fast":
    drt, denoiser_state = denoiser.restore_denoiser(config, workdir, rt)
    return (drt.fast_sampler(sample_config, denoiser_state.ema_params),
            {"denoiser_step": int(denoiser_state.step)})
  return rt.sampler(sample_config), {}


def sample_config(config, workdir: str, sampler=None,
                  num_steps=None) -> ml_collections.ConfigDict:
  """config.sample with the sampler resolved (and T = num_steps if given), checked."""
  s = config.sample.copy_and_resolve_references()
  s.sampler = resolve_sampler(config, workdir, sampler)
  if num_steps:
    s.num_steps = num_steps
  sampling.validate_settings(config, s)
  return s


def sample(config: ml_collections.ConfigDict, workdir: str, prompts=None) -> str:
  """Samples every prompt sample.per_prompt times; writes a PNG grid and a JSON of settings."""
  if not methods.get(config).generator:
    raise ValueError("an autoencoder has no sampler: --mode=eval writes its reconstruction grid "
                     "and report")
  s = sample_config(config, workdir)
  prompts = grids.read_prompts(prompts or s.prompts, s.prompts_file)
  rt, state = checkpointing.restore_latest(config, workdir)
  step = int(state.step)
  sampler, extra = make_sampler(config, workdir, rt, s)
  images = grids.sample_prompts(sampler, state.ema_params, text_lib.tokenizer_for(config), prompts,
                                per_prompt=s.per_prompt, seed=s.seed, batch_size=s.batch_size)
  settings = {"checkpoint_step": step, **extra, "prompts": prompts, "per_prompt": s.per_prompt,
              **sampling.report_settings(s),
              "grid": "one row per prompt, one column per sample"}
  stem = os.path.join(workdir, "samples", f"sample_step{step}_{s.sampler}_T{s.num_steps}_"
                      f"w{s.guidance:g}_seed{s.seed}_{files.settings_tag(settings)}")
  grids.save_png(stem + ".png", grids.make_grid(images, s.per_prompt),
                 scale=max(1, 128 // images.shape[1]))
  files.write_json(stem + ".json", settings)
  logging.info("Wrote %s.png and .json", stem)
  return stem + ".png"


def evaluated_sampler(config, workdir: str, rt, sampler_name: str, num_steps=None):
  """(sampler, the settings a report records) for one sampler, T = num_steps if given."""
  s = sample_config(config, workdir, sampler_name, num_steps)
  sampler, extra = make_sampler(config, workdir, rt, s)
  return sampler, {**sampling.report_settings(s), **extra}
