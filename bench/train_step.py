"""Training-step cost of the NTM against flow matching with the same predictor, printed as JSON.

Per preset, with freshly initialized states (step time does not depend on parameter values):
  * seconds per step of the NTM in both training modes and of the FM baseline (median after a
    compiling call), and per trajectory pair: end-to-end trains all T pairs of every example per
    step, pair-wise one, an FM step one (x_t, t) pair; "ntm_over_fm_step_time" is the NTM's time
    per pair over FM's (goal <= 1.35), and "ntm_over_fm_flops" the same ratio of matmul FLOPs
    (counted on the jaxpr, bench/flops.py): what the architecture costs, against what the
    implementation adds;
  * compile time of the NTM step (end-to-end) against predictor depth: the layers are scanned,
    so it should stay flat;
  * XLA's memory analysis of each compiled step (arguments, outputs, temporaries: the peak the
    compiler plans, in MiB).

  python bench/train_step.py [--presets=tiny,small] [--repeats=5] [--depths=1,2,4,8]
      [--batch_size=N]   # e.g. small on a CPU, whose preset batch does not fit in host memory
"""

import argparse
import functools
import time

import jax
import numpy as np
from flax import nnx

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
import flops
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import runtime
from ntm_jax.runtime import state as state_lib

fm_configs = cli.config_module("fm")
t2i = cli.config_module("t2i")


def median_step_seconds(run, state, repeats: int) -> tuple:
  """(state, median seconds of `repeats` calls of run(state) -> (state, metrics, _)) after
  one compiling or warm-up call."""
  times = []
  for i in range(repeats + 1):
    start = time.perf_counter()
    state, metrics, _ = run(state)
    jax.block_until_ready(metrics)
    if i:
      times.append(time.perf_counter() - start)
  return state, float(np.median(times))


def first_batch(config):
  """The first training batch of the config's data (numpy, this process)."""
  loader = loaders.train_loader(config, text_lib.tokenizer_for(config), config.train.batch_size)
  return next(iter(loader))


def _compiled(rt, state, batch, num_steps: int):
  step = functools.partial(state_lib.train_step, graphdef=rt.graphdef, tx=rt.tx,
                           config=rt.config, num_steps=num_steps, fm_graphdef=rt.fm_graphdef)
  start = time.perf_counter()
  compiled = jax.jit(step).lower(state, batch, rt.fm_params).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  mib = lambda n: round(n / 2**20, 2)
  return seconds, {"argument_mib": mib(memory.argument_size_in_bytes),
                   "output_mib": mib(memory.output_size_in_bytes),
                   "temp_mib": mib(memory.temp_size_in_bytes)}


def step_flops(config, state, batch, num_steps: int) -> float:
  """Model matmul FLOPs of one train step from scratch, traced with remat off, so that a
  rematerialized forward pass is not counted twice (bench/flops.py)."""
  plain = config.copy_and_resolve_references()
  plain.model.remat = False
  graphdef, _ = nnx.split(state_lib.abstract_model(plain))
  step = functools.partial(state_lib.train_step, graphdef=graphdef,
                           tx=state_lib.make_optimizer(plain.optim, plain.train.num_steps),
                           config=plain, num_steps=num_steps)
  return flops.matmul_flops(step, state, batch)["flops"]


def measure(config, repeats: int) -> dict:
  """Seconds per step (median of `repeats` after a compiling call), compile seconds, memory."""
  rt = runtime.build(config)
  num_steps = config.ntm.num_steps[0]
  batch = rt.global_batch(first_batch(config))
  state = rt.create_state()
  compile_s, memory = _compiled(rt, state, batch, num_steps)
  gflop = step_flops(config, state, batch, num_steps) / 1e9
  step = rt.train_step(num_steps)
  _, step_s = median_step_seconds(lambda s: step(s, batch), state, repeats)
  return {"step_s": round(step_s, 4), "compile_s": round(compile_s, 2),
          "memory": memory, "step_gflop": float(f"{gflop:.4g}")}


def _config(get_config, preset: str, batch_size: int):
  config = get_config(preset)
  if batch_size:
    config.train.batch_size = batch_size
  return config


def bench_preset(preset: str, repeats: int, batch_size: int = 0) -> dict:
  ntm_config = _config(t2i.get_config, preset, batch_size)
  batch, num_steps = ntm_config.train.batch_size, ntm_config.ntm.num_steps[0]
  fm = measure(_config(fm_configs.get_config, preset, batch_size), repeats)
  fm_per_pair, fm_flop_per_pair = fm["step_s"] / batch, fm["step_gflop"] / batch
  rows = {"flow_matching": {**fm, "pairs_per_step": batch, "s_per_pair": fm_per_pair}}
  ratios, flop_ratios = {}, {}
  for mode, pairs in (("end_to_end", num_steps), ("pair_wise", 1)):
    config = _config(t2i.get_config, preset, batch_size)
    config.ntm.mode = mode
    row = measure(config, repeats)
    row.update(pairs_per_step=batch * pairs, s_per_pair=row["step_s"] / (batch * pairs))
    rows[f"ntm_{mode}"] = row
    ratios[mode] = round(row["s_per_pair"] / fm_per_pair, 3)
    flop_ratios[mode] = round(row["step_gflop"] / (batch * pairs) / fm_flop_per_pair, 3)
  return {"preset": preset, "batch": batch, "T": num_steps, "steps": rows,
          "ntm_over_fm_step_time": ratios, "ntm_over_fm_flops": flop_ratios}


def compile_against_depth(preset: str, depths) -> list:
  rows = []
  for depth in depths:
    config = t2i.get_config(preset)
    config.model.predictor.depth = depth
    config.ntm.mode = "end_to_end"
    rt = runtime.build(config)
    seconds, _ = _compiled(rt, rt.create_state(), rt.global_batch(first_batch(config)),
                           config.ntm.num_steps[0])
    rows.append({"predictor_depth": depth, "compile_s": round(seconds, 2)})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="tiny,small")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--depths", default="1,2,4,8")
  parser.add_argument("--depth_preset", default="tiny")
  parser.add_argument("--batch_size", type=int, default=0,
                      help="train.batch_size for every preset (0: the preset's)")
  args = parser.parse_args()
  cli.quiet()
  results = [bench_preset(p, args.repeats, args.batch_size) for p in args.presets.split(",")]
  depth_rows = compile_against_depth(args.depth_preset,
                                     [int(d) for d in args.depths.split(",") if d])
  cli.print_json("train_step", {"devices": jax.device_count(), "results": results,
                    "compile_against_predictor_depth": {"preset": args.depth_preset,
                                                        "rows": depth_rows}})


if __name__ == "__main__":
  main()
