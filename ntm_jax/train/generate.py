"""--mode=sample and --mode=eval: load the latest checkpoint and use its EMA parameters."""

import json
import os

import ml_collections
from absl import logging

from ntm_jax.evaluate import likelihood
from ntm_jax.train import checkpointing
from ntm_jax.train import distill
from ntm_jax.train import grids
from ntm_jax.train import loop
from ntm_jax.train import state as state_lib

def resolve_sampler(config: ml_collections.ConfigDict, workdir: str) -> str:
  """config.sample.sampler, with 'auto' resolved: for the NTM the fast sampler once a distilled
  denoiser exists, else full NF; for flow matching Euler."""
  name, method = config.sample.sampler, config.method
  allowed = ("auto",) + state_lib.MODEL_SAMPLERS[method] + (("fast",) if method == "ntm" else ())
  if name not in allowed:
    raise ValueError(f"sample.sampler must be one of {allowed} for method {method!r}, got "
                     f"{name!r}")
  if name != "auto":
    return name
  if method == "flow_matching":
    return "euler"
  return "fast" if distill.has_denoiser(workdir) else "full_nf"


def sample(config: ml_collections.ConfigDict, workdir: str, prompts=None) -> str:
  """Samples every prompt sample.per_prompt times; writes a PNG grid and a JSON of settings."""
  s = config.sample.copy_and_resolve_references()
  s.sampler = resolve_sampler(config, workdir)
  prompts = grids.read_prompts(prompts or s.prompts, s.prompts_file)
  rt, state = checkpointing.restore_latest(config, workdir)
  step = int(state.step)
  settings = {"checkpoint_step": step}
  if s.sampler == "fast":
    drt, denoiser_state = distill.restore_denoiser(config, workdir, rt)
    sampler = drt.fast_sampler(s, denoiser_state.ema_params)
    settings["denoiser_step"] = int(denoiser_state.step)
  else:
    sampler = rt.sampler(s)
  images = grids.sample_prompts(sampler, state.ema_params, loop.tokenizer_for(config), prompts,
                                per_prompt=s.per_prompt, seed=s.seed, batch_size=s.batch_size)
  stem = os.path.join(workdir, "samples", f"sample_step{step}_{s.sampler}_T{s.num_steps}_"
                      f"w{s.guidance:g}_seed{s.seed}")
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  grids.save_png(stem + ".png", grids.make_grid(images, s.per_prompt),
                 scale=max(1, 128 // images.shape[1]))
  settings.update({"prompts": prompts, "per_prompt": s.per_prompt, "num_steps": s.num_steps,
                   "guidance": s.guidance, "t_min": s.t_min, "temperature": s.temperature,
                   "seed": s.seed, "batch_size": s.batch_size, "sampler": s.sampler,
                   "grid": "one row per prompt, one column per sample"})
  with open(stem + ".json", "w", encoding="utf-8") as f:
    json.dump(settings, f, indent=1)
  logging.info("Wrote %s.png and .json", stem)
  return stem + ".png"


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Held-out likelihood report of the latest checkpoint's EMA parameters, as JSON."""
  rt, state = checkpointing.restore_latest(config, workdir)
  step = int(state.step)
  results = likelihood.evaluate(rt, state.ema_params, config, loop.tokenizer_for(config), step)
  path = likelihood.write_report(results, workdir, step)
  logging.info("Likelihood report: %s", json.dumps(results, indent=1, sort_keys=True))
  return path
