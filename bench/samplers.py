"""Images per second of the samplers, on the shapes presets, as ratios to the fastest baseline.

  full_nf            T predictor steps + the KV-cached autoregressive transporter inverse
  full_nf_denoised   full_nf + T - 1 more inversions + one backward pass (trajectory denoising)
  fast               T predictor steps + one pass of the learned denoiser (no inversion)

Speed does not depend on parameter values, so the models are freshly initialized; the denoiser
is the default quarter-depth backbone at the predictor's width. Prints one JSON object.

  python bench/samplers.py [--presets=tiny,small] [--batch=16] [--repeats=3]
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for configs/
from configs import t2i  # pylint: disable=g-import-not-at-top,wrong-import-position
from ntm_jax import denoise
from ntm_jax import ntm
from ntm_jax.train import state as state_lib


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
  model = ntm.NTM(state_lib.model_config(config), rngs=nnx.Rngs(0))
  p = config.model.predictor
  denoiser = denoise.Denoiser(
      channels=model.channels, grid_shape=model.predictor.backbone.grid_shape, width=p.width,
      depth=max(1, p.depth // 4), num_heads=p.num_heads, num_kv_heads=p.num_kv_heads,
      text_dim=model.text_dim, rngs=nnx.Rngs(1))
  tokens = jnp.ones((batch, config.model.text_encoder.max_length), jnp.int32)
  text, mask = ntm.encode_text(model, tokens)
  kwargs = dict(num_steps=config.sample.num_steps, guidance=config.sample.guidance,
                t_min=config.sample.t_min)
  samplers = {
      "full_nf": lambda r: ntm.sample(model, r, text, mask, **kwargs),
      "full_nf_denoised": lambda r: denoise.sample_denoised(model, r, text, mask, **kwargs),
      "fast": lambda r: denoise.sample_fast(model, denoiser, r, text, mask, **kwargs),
  }
  rows = {name: _images_per_second(jax.jit(fn), batch, repeats) for name, fn in samplers.items()}
  base = rows["full_nf_denoised"]["images_per_s"]
  for row in rows.values():
    row["speedup_vs_full_nf_denoised"] = round(row["images_per_s"] / base, 2)
  return {"preset": preset, "batch": batch, "tokens": model.num_tokens, "T": kwargs["num_steps"],
          "guidance": kwargs["guidance"], "samplers": rows}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--presets", default="tiny,small")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  results = [bench_preset(p, args.batch, args.repeats) for p in args.presets.split(",")]
  print(json.dumps({"bench": "samplers", "backend": jax.default_backend(),
                    "device": str(jax.devices()[0]), "results": results}, indent=1))


if __name__ == "__main__":
  main()
