"""--mode=sample and --mode=eval: load the latest checkpoint and use its EMA parameters."""

import json
import os

import ml_collections
from absl import logging

from ntm_jax.evaluate import likelihood
from ntm_jax.train import checkpointing
from ntm_jax.train import grids
from ntm_jax.train import loop
from ntm_jax.train import runtime as runtime_lib


def restore_latest(config: ml_collections.ConfigDict, workdir: str):
  """(runtime, state) from the latest checkpoint in workdir, or a clear error if none."""
  rt = runtime_lib.build(config)
  manager = checkpointing.make_manager(workdir, config, asynchronous=False)
  state = checkpointing.restore(manager, rt.abstract_state)
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: train "
                            "first with --mode=train and the same --config")
  return rt, state


def sample(config: ml_collections.ConfigDict, workdir: str, prompts=None) -> str:
  """Samples every prompt sample.per_prompt times; writes a PNG grid and a JSON of settings."""
  s = config.sample
  prompts = grids.read_prompts(prompts or s.prompts, s.prompts_file)
  rt, state = restore_latest(config, workdir)
  step = int(state.step)
  tokenizer = loop.tokenizer_for(config)
  images = grids.sample_prompts(rt.sampler(s), state.ema_params,
                                tokenizer, prompts, per_prompt=s.per_prompt, seed=s.seed,
                                batch_size=s.batch_size)
  stem = os.path.join(workdir, "samples", f"sample_step{step}_{s.sampler}_T{s.num_steps}_"
                      f"w{s.guidance:g}_seed{s.seed}")
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  grids.save_png(stem + ".png", grids.make_grid(images, s.per_prompt),
                 scale=max(1, 128 // images.shape[1]))
  settings = {"checkpoint_step": step, "prompts": prompts, "per_prompt": s.per_prompt,
              "num_steps": s.num_steps, "guidance": s.guidance, "t_min": s.t_min,
              "temperature": s.temperature,
              "seed": s.seed, "batch_size": s.batch_size, "sampler": s.sampler,
              "grid": "one row per prompt, one column per sample"}
  with open(stem + ".json", "w", encoding="utf-8") as f:
    json.dump(settings, f, indent=1)
  logging.info("Wrote %s.png and .json", stem)
  return stem + ".png"


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Held-out likelihood report of the latest checkpoint's EMA parameters, as JSON."""
  rt, state = restore_latest(config, workdir)
  step = int(state.step)
  results = likelihood.evaluate(rt, state.ema_params, config, loop.tokenizer_for(config), step)
  path = likelihood.write_report(results, workdir, step)
  logging.info("Likelihood report: %s", json.dumps(results, indent=1, sort_keys=True))
  return path
