"""One prepared accelerator run (one GPU or a TPU host), about 8 minutes; prints one JSON object.

  bash bench/accelerator.sh                 # on the accelerator (see the script for set-up)
  python bench/accelerator.py --smoke       # every section on the micro preset, on a CPU

Sections, each timed and recorded even when a later one fails:
  mfu       the NTM train step in bf16 at the largest candidate (--mfu_candidates, preset:batch,
            largest first) that compiles and fits: the step's model matmul FLOPs (counted on
            its jaxpr with remat off, bench/flops.py; XLA's cost_analysis() counts a scanned
            layer stack once) over its measured time (median of --repeats after a compiling
            call), against the chip's dense bf16 peak (PEAK_TFLOPS by device kind; null when
            unknown). A candidate that runs out of memory is recorded and the next one tried.
  samplers  images/s of full_nf, full_nf_denoised, fast and FM Euler on --sampler_preset, with
            their ratios (bench/samplers.py's measurement).
  train     the --train_preset NTM and FM (on all local chips, the preset's mesh), each trained
            for as many steps as --train_s seconds allow at its measured step time (compile
            excluded; --smoke: 3 steps, uncalibrated), then ShapesEval of the NTM's full-NF
            sampler and FM's Euler sampler at the preset's T (suite.sample_quality).
"""

import argparse
import os
import tempfile
import time

import jax
from absl import logging

BENCH = os.path.dirname(os.path.abspath(__file__))
# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
import samplers as samplers_bench
import train_step as train_step_bench
from ntm_jax import methods
from ntm_jax.evaluate import suite
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import runtime
from ntm_jax.train import loop

fm_configs = cli.config_module("fm")
t2i = cli.config_module("t2i")

# Dense bf16 peak per chip in TFLOP/s (vendor figures), matched on jax.Device.device_kind.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0,
               "TPU v6 lite": 918.0, "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v4": 275.0}


def peak_tflops(device_kind: str):
  matches = [peak for name, peak in PEAK_TFLOPS.items() if name in device_kind]
  return matches[0] if matches else None


def _first_batch(rt, config):
  return rt.global_batch(train_step_bench.first_batch(config))


def _one_device(config):
  config.mesh.update(data=1, fsdp=1)
  return runtime.build(config, jax.devices()[:1])


def mfu(preset: str, batch_size: int, repeats: int) -> dict:
  """Model FLOP utilization of one bf16 NTM train step on one chip."""
  config = t2i.get_config(preset)
  config.model.dtype = "bfloat16"
  config.train.batch_size = batch_size
  rt = _one_device(config)
  batch, state = _first_batch(rt, config), rt.create_state()
  num_steps = config.ntm.num_steps[0]
  start = time.perf_counter()
  compiled = rt.lowered_train_step(num_steps, state, batch).compile()
  compile_s = time.perf_counter() - start
  flops = train_step_bench.step_flops(config, state, batch, num_steps)
  _, step_s = train_step_bench.median_step_seconds(
      lambda s: compiled(s, batch, rt.fm_params), state, repeats)
  achieved = flops / step_s / 1e12
  peak = peak_tflops(jax.devices()[0].device_kind)
  memory = compiled.memory_analysis()
  return {"preset": preset or "default", "batch": batch_size, "T": num_steps,
          "mode": config.ntm.mode, "params_m": round(rt.num_params / 1e6, 2),
          "compile_s": round(compile_s, 1), "step_s": round(step_s, 4),
          "step_tflop": float(f"{flops / 1e12:.4g}"),
          "achieved_tflops": float(f"{achieved:.4g}"),
          "peak_tflops": peak, "mfu": round(achieved / peak, 4) if peak else None,
          "temp_gib": round(memory.temp_size_in_bytes / 2**30, 2) if memory else None}


def _out_of_memory(err: Exception) -> bool:
  text = str(err)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def mfu_section(candidates: list, repeats: int) -> dict:
  tried = []
  for preset, batch_size in candidates:
    try:
      return {"result": mfu(preset, batch_size, repeats), "out_of_memory": tried}
    except Exception as err:  # pylint: disable=broad-except
      if not _out_of_memory(err):
        raise
      tried.append(f"{preset or 'default'}:{batch_size}")
  return {"result": None, "out_of_memory": tried}


def _steps_for(config, seconds: float, repeats: int) -> tuple:
  """(train steps that fit in `seconds`, measured seconds per step) on the training mesh."""
  rt = runtime.build(config)
  batch = _first_batch(rt, config)
  step = rt.train_step(config.ntm.num_steps[0])
  _, step_s = train_step_bench.median_step_seconds(lambda s: step(s, batch),
                                                   rt.create_state(), repeats)
  return max(2, int(seconds / step_s)), step_s


def train_and_score(get_config, preset: str, sampler: str, seconds: float, repeats: int,
                    workdir: str, smoke: bool, fixed_steps: int = 0) -> dict:
  """Trains the preset for as many steps as `seconds` allow (or `fixed_steps`, without the
  calibration: the loop's step has the schedule's length baked in, so calibrating compiles a
  second step), then scores its samples."""
  config = get_config(preset)
  num_steps, step_s = ((fixed_steps, None) if fixed_steps else
                       _steps_for(config, seconds, repeats))
  config.train.update(num_steps=num_steps, checkpoint_every=num_steps, sample_every=0,
                      eval_every=0)
  config.optim.warmup_steps = min(config.optim.warmup_steps, max(1, num_steps // 10))
  if smoke:
    config.eval.update(per_kind=1, samples_per_prompt=1)
  start = time.perf_counter()
  loop.train_and_evaluate(config, workdir)
  train_s = time.perf_counter() - start
  rt, state = checkpointing.restore_latest(config, workdir)
  quality = suite.sample_quality(config, workdir, rt, state.ema_params, [(sampler, None)])
  report = quality["shapes_eval"][0] if quality else {}
  return {"preset": preset, "method": methods.get(config).name, "train_steps": num_steps,
          "step_s": step_s and round(step_s, 4), "train_s_with_compile": round(train_s, 1),
          "sampler": sampler, "T": config.sample.num_steps,
          "shapes_eval": {k: v for k, v in report.items() if k in ("seen", "held_out",
                                                                   "prompts", "suite")}}


def _timed(name: str, fn, out: dict) -> None:
  start = time.perf_counter()
  try:
    out[name] = fn()
  except Exception as err:  # pylint: disable=broad-except
    logging.exception("section %s failed", name)
    out[name] = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
  out.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--smoke", action="store_true", help="micro preset, seconds, on a CPU")
  parser.add_argument("--mfu_candidates", default=":64,small:256",
                      help="preset:batch, largest first ('' = the paper-scale default)")
  parser.add_argument("--sampler_preset", default="small")
  parser.add_argument("--sampler_batch", type=int, default=64)
  parser.add_argument("--train_preset", default="small")
  parser.add_argument("--train_s", type=float, default=75.0, help="training seconds per model")
  parser.add_argument("--train_steps", type=int, default=0,
                      help="train this many steps instead of calibrating to --train_s")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--workdir", default="", help="the two training runs (default: a temp dir)")
  parser.add_argument("--sections", default="mfu,samplers,train")
  args = parser.parse_args()
  if args.smoke:
    args.mfu_candidates, args.sampler_preset, args.train_preset = "micro:8", "micro", "micro"
    args.sampler_batch, args.train_steps, args.repeats = 4, 3, 2
  cli.quiet()
  candidates = [(c.split(":")[0], int(c.split(":")[1])) for c in args.mfu_candidates.split(",")]
  workdir = args.workdir or tempfile.mkdtemp(prefix="ntm_accelerator_")
  device = jax.devices()[0]
  out = {"bench": "accelerator", "backend": jax.default_backend(), "device_kind":
         device.device_kind, "devices": jax.device_count(), "smoke": args.smoke}
  sections = args.sections.split(",")
  if "mfu" in sections:
    _timed("mfu", lambda: mfu_section(candidates, args.repeats), out)
  if "samplers" in sections:
    _timed("samplers", lambda: samplers_bench.bench_preset(
        args.sampler_preset, args.sampler_batch, args.repeats), out)
  if "train" in sections:
    for name, get_config, sampler in (("train_ntm", t2i.get_config, "full_nf"),
                                      ("train_fm", fm_configs.get_config, "euler")):
      _timed(name, lambda g=get_config, s=sampler, n=name: train_and_score(
          g, args.train_preset, s, args.train_s, args.repeats, os.path.join(workdir, n),
          args.smoke, args.train_steps), out)
  cli.print_json("accelerator", out)


if __name__ == "__main__":
  main()
