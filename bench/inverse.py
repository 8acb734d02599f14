"""The transporter's two inverses side by side: KV-cached token-by-token decoding against the
parallel Jacobi iteration (all tokens of a block per iteration, exact after at most `tokens`).

Speed: a transporter of the preset's size (2 blocks) at 16, 64 and 256 tokens, parameters
perturbed so the flow is far from the identity; the KV-cached inverse, one Jacobi iteration (a
full causal forward pass) and the break-even: how few iterations Jacobi must need to win.
Iterations: on trained runs (--run=CONFIG:PRESET@WORKDIR, with --set overrides per run as
CONFIG:PRESET@WORKDIR@KEY=VALUE@...), held-out images are mapped to u = f_T(x, t_min) and
inverted back at several tolerances: iterations per block, error against the KV-cached inverse
and the time ratio. Prints one JSON object.

  python bench/inverse.py [--batch=16] [--repeats=5] \
      [--run=ntm_from_fm:mnist_tiny@DIR@data.channels=1@init.fm_workdir=FM]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import config_files
from ntm_jax import transporter
from ntm_jax.data import pipeline
from ntm_jax.data import sources
from ntm_jax.runtime import checkpointing

ntm_from_fm = cli.config_module("ntm_from_fm")
t2i = cli.config_module("t2i")

CONFIGS = {"t2i": t2i.get_config, "ntm_from_fm": ntm_from_fm.get_config}
TOLERANCES = (0.0, 1e-5, 1e-4, 1e-3)


def seconds(fn, *args, repeats: int) -> float:
  """Median wall time of fn(*args) after one compiling call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def speed_row(num_tokens: int, batch: int, repeats: int, preset: str = "tiny") -> dict:
  settings = t2i.get_config(preset).model.transporter
  channels = 48  # 4x4 RGB patches
  model = transporter.Transporter(
      channels=channels, num_tokens=num_tokens, num_blocks=settings.num_blocks,
      depth=settings.depth, width=settings.width, num_heads=settings.num_heads,
      num_kv_heads=settings.num_kv_heads, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(treedef, [p + 0.05 * jax.random.normal(k, p.shape)
                                        for p, k in zip(leaves, keys)])
  model = nnx.merge(graphdef, params, rest)
  x = jax.random.normal(jax.random.key(2), (batch, num_tokens, channels))
  t, steps = jnp.full((batch,), 0.05), jnp.full((batch,), 4.0)
  forward = jax.jit(lambda x: model(x, t, steps)[0])
  u = forward(x)
  kv_cache = jax.jit(lambda u: model.inverse(u, t, steps))
  jacobi = jax.jit(lambda u: model.jacobi_inverse(u, t, steps, 0.0))
  exact, iterations = jacobi(u)
  kv_seconds = seconds(kv_cache, u, repeats=repeats)
  forward_seconds = seconds(forward, x, repeats=repeats)  # one Jacobi iteration per block
  return {"tokens": num_tokens, "batch": batch, "kv_cache_ms": round(1e3 * kv_seconds, 2),
          "jacobi_exact_ms": round(1e3 * seconds(jacobi, u, repeats=repeats), 2),
          "jacobi_iterations_exact": [int(i) for i in iterations],
          "one_iteration_all_blocks_ms": round(1e3 * forward_seconds, 2),
          "break_even_iterations_per_block": round(kv_seconds / forward_seconds, 1),
          "max_error_jacobi_vs_kv_cache": float(jnp.abs(exact - kv_cache(u)).max())}


def trained_rows(run: str, batch: int, repeats: int) -> dict:
  name, workdir, *overrides = run.split("@")
  config_name, preset = name.split(":")
  config = config_files.apply_overrides(CONFIGS[config_name](preset), overrides)
  rt, state = checkpointing.restore_latest(config, workdir)
  model = nnx.merge(rt.graphdef, state.ema_params)
  source = sources.make_source(config.data, "eval")
  rgb = np.stack([source[i]["image"] for i in range(batch)])
  x = model.tokens(rt.model_inputs(pipeline.to_channels(rgb, config.data.channels)))
  t_min = config.sample.t_min
  t, steps = jnp.full((batch,), t_min), jnp.full((batch,), float(config.ntm.num_steps[0]))
  u = jax.jit(lambda x: model.transporter(x, t, steps)[0])(x)
  kv_cache = jax.jit(lambda u: model.transporter.inverse(u, t, steps))
  reference = kv_cache(u)
  kv_seconds = seconds(kv_cache, u, repeats=repeats)
  rows = []
  for tolerance in TOLERANCES:
    jacobi = jax.jit(lambda u, tol=tolerance: model.transporter.jacobi_inverse(u, t, steps, tol))
    x_jacobi, iterations = jacobi(u)
    rows.append({"tolerance": tolerance, "iterations_per_block": [int(i) for i in iterations],
                 "max_error_vs_kv_cache": float(jnp.abs(x_jacobi - reference).max()),
                 "time_over_kv_cache": round(seconds(jacobi, u, repeats=repeats) / kv_seconds,
                                             2)})
  return {"run": f"{name}@{workdir}", "step": int(state.step), "tokens": model.num_tokens,
          "t_min": t_min, "kv_cache_ms": round(1e3 * kv_seconds, 2),
          "max_round_trip_error_kv_cache": float(jnp.abs(reference - x).max()), "jacobi": rows}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--tokens", default="16,64,256")
  parser.add_argument("--run", action="append", default=[])
  args = parser.parse_args()
  cli.quiet()
  speed = [speed_row(int(n), args.batch, args.repeats) for n in args.tokens.split(",")]
  trained = [trained_rows(run, args.batch, args.repeats) for run in args.run]
  cli.print_json("inverse", {"devices": jax.device_count(), "speed": speed, "trained": trained})


if __name__ == "__main__":
  main()
