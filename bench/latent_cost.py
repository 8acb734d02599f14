"""What modelling autoencoder latents costs per training step: the encoder's share.

A generator on latents (configs/t2i.py:shapes_latent, configs/fm.py:shapes_latent) encodes every
training batch on the device (runtime.global_batch). This times, on one batch, the encoder alone
and the NTM and FM training steps on already-encoded latents, so the share a latent cache could
save is a measured ratio. Prints one JSON object.

  python bench/latent_cost.py --autoencoder_workdir=DIR [--preset=shapes_latent]
"""

import argparse
import time

import jax

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import runtime as runtime_lib

fm_configs = cli.config_module("fm")
t2i = cli.config_module("t2i")


def seconds_per_call(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def step_seconds(config, batch, repeats: int) -> tuple:
  """(seconds per training step on an already-encoded batch, the runtime)."""
  rt = runtime_lib.build(config)
  state, step = rt.create_state(), rt.train_step(max(config.ntm.num_steps))
  encoded = rt.global_batch(dict(batch))

  def call():
    nonlocal state
    state, metrics, _ = step(state, encoded)
    return metrics["loss"]
  return seconds_per_call(call, repeats), rt


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--autoencoder_workdir", required=True)
  parser.add_argument("--preset", default="shapes_latent")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  result = {"preset": args.preset, "devices": jax.device_count(),
            "platform": jax.devices()[0].platform}
  for name, get_config in (("ntm", t2i.get_config), ("fm", fm_configs.get_config)):
    config = get_config(args.preset)
    config.latent.autoencoder_workdir = args.autoencoder_workdir
    batch = next(iter(loaders.train_loader(config, text_lib.tokenizer_for(config),
                                             config.train.batch_size)))
    seconds, rt = step_seconds(config, batch, args.repeats)
    result[f"{name}_step_s"] = round(seconds, 4)
    device_images = jax.device_put(batch["image"], rt.batch_sharding)
    encode_s = seconds_per_call(lambda: rt.codec.encode(device_images), args.repeats)
    result["encode_s"] = round(encode_s, 4)
    result[f"encode_over_{name}_step"] = round(encode_s / seconds, 3)
  result["batch_size"] = config.train.batch_size
  cli.print_json("latent_cost", result)


if __name__ == "__main__":
  main()
