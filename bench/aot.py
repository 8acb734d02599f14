"""Paper scale without hardware: the configs/t2i.py default's train step lowered and compiled
ahead of time for a fake N-device CPU mesh (ntm_jax/train/aot.py). Prints one JSON object: the
parameter count, the per-device memory XLA plans (compiled.memory_analysis()), the matmul FLOPs
of one step (bench/flops.py, remat off: model FLOPs), how many activations are held split over
the batch axes (layers.constrain), and the lowering and compile times.

  python bench/aot.py --devices=64 [--mesh=data:1,fsdp:64] [--preset=] [--batch_size=1024]
"""

import argparse
import os
import time


def _parse():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", type=int, default=64, help="fake CPU devices")
  parser.add_argument("--mesh", default="", help="e.g. data:4,fsdp:16 (default: the config's)")
  parser.add_argument("--preset", default="", help="configs/t2i.py preset ('' = paper scale)")
  parser.add_argument("--batch_size", type=int, default=0, help="global batch (0: the config's)")
  parser.add_argument("--no_compile", action="store_true", help="lower only")
  return parser.parse_args()


def main():
  args = _parse()
  # Before jax is imported: the fake devices.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={args.devices}")
  # pylint: disable=g-import-not-at-top
  import jax
  import cli  # bench/cli.py
  import train_step as train_step_bench
  t2i = cli.config_module("t2i")
  from ntm_jax.train import aot
  cli.quiet()
  config = t2i.get_config(args.preset)
  if args.batch_size:
    config.train.batch_size = args.batch_size
  if args.mesh:
    config.mesh.update({k: int(v) for k, v in (a.split(":") for a in args.mesh.split(","))})
  start = time.perf_counter()
  rt, lowered, batch = aot.lower(config)
  lower_s = time.perf_counter() - start
  flops = train_step_bench.step_flops(config, rt.abstract_state, batch, config.ntm.num_steps[0])
  text = lowered.as_text()
  out = {"bench": "aot", "preset": args.preset or "default", "devices": jax.device_count(),
         "mesh": dict(rt.mesh.shape), "batch": config.train.batch_size,
         "dtype": config.model.dtype, "remat": config.model.remat, "T": config.ntm.num_steps[0],
         "mode": config.ntm.mode, "params_b": round(rt.num_params / 1e9, 3),
         "step_tflop_model": round(flops / 1e12, 1), "lower_s": round(lower_s, 1),
         # layers.constrain at work: activations held split over the batch axes
         "batch_sharding_constraints": sum('sharding_constraint' in line and
                                           '{"data", "fsdp"}' in line
                                           for line in text.splitlines())}
  if not args.no_compile:
    start = time.perf_counter()
    memory = lowered.compile().memory_analysis()
    gib = lambda n: round(n / 2**30, 2)
    out.update(compile_s=round(time.perf_counter() - start, 1), per_device_gib={
        "arguments": gib(memory.argument_size_in_bytes),
        "outputs": gib(memory.output_size_in_bytes),
        "temporaries": gib(memory.temp_size_in_bytes),
        "generated_code": gib(memory.generated_code_size_in_bytes)})
  cli.print_json("aot", out)


if __name__ == "__main__":
  main()
