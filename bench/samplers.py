"""Images per second of the samplers, on the shapes presets, as ratios to the fastest baseline.

  full_nf            T predictor steps + the KV-cached autoregressive transporter inverse
  full_nf_denoised   full_nf + T - 1 more inversions + one backward pass (trajectory denoising)
  fast               T predictor steps + one pass of the learned denoiser (no inversion)
  fm_euler           flow matching's Euler sampler, T steps, on the same backbone and preset

Speed does not depend on parameter values, so the models are freshly initialized; the denoiser
is the preset's distill.model (a quarter of the predictor's depth at its width).

With --workdir (a trained NTM plus its distilled denoiser, i.e. after --mode=train and
--mode=distill), it instead measures the agreement of the three samplers on the same noise: MSE
and PSNR (images in [-1, 1], peak-to-peak 2) between the saved 8-bit samples of the config's
prompts, and writes the three grids side by side (full NF | full NF + denoising | fast).
Prints one JSON object.

  python bench/samplers.py [--presets=tiny,small] [--batch=16] [--repeats=3]
  python bench/samplers.py --presets=tiny --workdir=DIR [--grid=PATH]
"""

import argparse
import os
import time

import jax
import ml_collections
import numpy as np
from absl import flags
from flax import nnx

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import denoise
from ntm_jax import flow_matching
from ntm_jax import grids
from ntm_jax import ntm
from ntm_jax import text as text_lib
from ntm_jax import text_to_image
from ntm_jax.methods import denoiser as denoiser_method
from ntm_jax.methods import inputs
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import denoiser as denoiser_lib
from ntm_jax.runtime import state as state_lib

fm_configs = cli.config_module("fm")
t2i = cli.config_module("t2i")


def _images_per_second(fn, batch: int, repeats: int) -> dict:
  start = time.perf_counter()
  jax.block_until_ready(fn(jax.random.key(0)))
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(repeats):
    jax.block_until_ready(fn(jax.random.key(i + 1)))
  seconds = (time.perf_counter() - start) / repeats
  return {"images_per_s": round(batch / seconds, 2), "s_per_batch": round(seconds, 4),
          "first_call_s": round(compile_s, 2)}


def bench_preset(preset: str, batch: int, repeats: int) -> dict:
  config = t2i.get_config(preset)
  model = ntm.NTM(inputs.model_config(config), rngs=nnx.Rngs(0))
  denoiser = denoiser_method.make_denoiser(config, nnx.Rngs(1))
  tokens = text_lib.tokenizer_for(config).encode(["a red circle"] * batch)
  text, mask = text_to_image.encode_text(
      model, text_lib.text_inputs(config.model.text_encoder)(tokens))
  kwargs = dict(num_steps=config.sample.num_steps, guidance=config.sample.guidance,
                t_min=config.sample.t_min)
  fm = state_lib.make_model(fm_configs.get_config(preset), nnx.Rngs(0))
  fm_text, fm_mask = text_to_image.encode_text(
      fm, text_lib.text_inputs(config.model.text_encoder)(tokens))
  samplers = {
      "full_nf": lambda r: ntm.sample(model, r, text, mask, **kwargs),
      "full_nf_denoised": lambda r: denoise.sample_denoised(model, r, text, mask, **kwargs),
      "fast": lambda r: denoise.sample_fast(model, denoiser, r, text, mask, **kwargs),
      "fm_euler": lambda r: flow_matching.sample_euler(fm, r, fm_text, fm_mask,
                                                       num_steps=kwargs["num_steps"],
                                                       guidance=kwargs["guidance"]),
  }
  rows = {name: _images_per_second(jax.jit(fn), batch, repeats) for name, fn in samplers.items()}
  base, fm_rate = rows["full_nf_denoised"]["images_per_s"], rows["fm_euler"]["images_per_s"]
  for row in rows.values():
    row["speedup_vs_full_nf_denoised"] = round(row["images_per_s"] / base, 2)
    row["cost_over_fm_euler"] = round(fm_rate / row["images_per_s"], 2)
  return {"preset": preset, "batch": batch, "tokens": model.num_tokens, "T": kwargs["num_steps"],
          "guidance": kwargs["guidance"], "samplers": rows}


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
  to_float = lambda x: x.astype(np.float64) / 127.5 - 1.0
  mse = float(np.mean(np.square(to_float(a) - to_float(b))))
  return {"mse": round(mse, 6), "psnr_db": round(10.0 * np.log10(4.0 / mse), 2)}


def agreement(preset: str, workdir: str, grid_path: str) -> dict:
  """The three samplers of a trained NTM + denoiser on the same prompts and noise."""
  config = t2i.get_config(preset)
  s = config.sample
  rt, state = checkpointing.restore_latest(config, workdir)
  drt, denoiser_state = denoiser_lib.restore_denoiser(config, workdir, rt)
  samplers = {name: rt.sampler(ml_collections.ConfigDict({**s.to_dict(), "sampler": name}))
              for name in ("full_nf", "full_nf_denoised")}
  samplers["fast"] = drt.fast_sampler(s, denoiser_state.ema_params)
  images = {name: grids.sample_prompts(fn, state.ema_params, text_lib.tokenizer_for(config),
                                       list(s.prompts), per_prompt=s.per_prompt, seed=s.seed,
                                       batch_size=s.batch_size)
            for name, fn in samplers.items()}
  grids.save_png(grid_path, grids.side_by_side(
      {name: grids.make_grid(images[name], s.per_prompt) for name in samplers},
      scale=max(1, 128 // images["fast"].shape[1])))
  pairs = [("fast", "full_nf_denoised"), ("full_nf", "full_nf_denoised"), ("fast", "full_nf")]
  return {"preset": preset, "checkpoint_step": int(state.step),
          "denoiser_step": int(denoiser_state.step), "images": len(images["fast"]),
          "T": s.num_steps, "guidance": s.guidance, "t_min": s.t_min, "grid": grid_path,
          "agreement": {f"{a}_vs_{b}": _agreement(images[a], images[b]) for a, b in pairs}}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--presets", default="tiny,small")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--workdir", default="", help="measure agreement on these checkpoints")
  parser.add_argument("--grid", default="", help="side-by-side grid (default: in --workdir)")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  if args.workdir:
    if "," in args.presets:
      parser.error("--workdir measures one preset: pass --presets=NAME")
    grid = args.grid or os.path.join(args.workdir, "samples", "samplers_side_by_side.png")
    os.makedirs(os.path.dirname(os.path.abspath(grid)), exist_ok=True)
    results = [agreement(args.presets, args.workdir, grid)]
  else:
    results = [bench_preset(p, args.batch, args.repeats) for p in args.presets.split(",")]
  cli.print_json("samplers", {"device": str(jax.devices()[0]), "results": results})


if __name__ == "__main__":
  main()
