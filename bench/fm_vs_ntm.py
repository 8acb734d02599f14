"""Flow matching vs NTM at equal training steps: likelihood curves and 4-step samples.

Trains three runs of one preset under --workdir: the FM baseline (configs/fm.py), an NTM from
scratch (configs/t2i.py) and an NTM started from that FM run (configs/ntm_from_fm.py), each for
--steps steps (runs already there are resumed, finished ones reused). Then prints one JSON
object with:
  nll_curves   held-out trajectory NLL (EMA, T = 4, nats/dim, per level too) of both NTMs at
               every checkpoint; the FM-initialized NTM also at step 0, where it is the FM
               posterior sampler
  fm_loss      the FM run's held-out velocity error
and writes one grid (rows: the config's prompts) per sampler: FM Euler 4 and 50 steps, FM
Heun 50, and both NTMs' full-NF 4-step samples, into --workdir/grids/, and the five side by
side, titled, as --workdir/grids/side_by_side.png.

  python bench/fm_vs_ntm.py --preset=tiny --steps=1500 --workdir=/tmp/fm_vs_ntm
"""

import argparse
import os


import cli  # bench/cli.py
from ntm_jax import grids
from ntm_jax import text as text_lib
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import held_out
from ntm_jax.runtime import runtime
from ntm_jax.train import fm_init
from ntm_jax.train import loop

fm_configs = cli.config_module("fm")
ntm_from_fm = cli.config_module("ntm_from_fm")
t2i = cli.config_module("t2i")


def _configure(config, steps: int):
  config.train.update(num_steps=steps, checkpoint_every=max(1, steps // 4), keep_checkpoints=8,
                      sample_every=0, eval_every=0)
  return config


def _nll_curve(config, workdir: str, extra_states=()) -> list:
  """Held-out NLL of the EMA parameters at every kept checkpoint (and of extra (step, state))."""
  rt = runtime.build(config)
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  tokenizer = text_lib.tokenizer_for(config)
  points = list(extra_states) + [
      (step, checkpointing.restore(manager, rt.abstract_state, step=step))
      for step in manager.all_steps()]
  curve = []
  for step, state in points:
    results = held_out.evaluate(rt, state.ema_params, config, tokenizer, 0)
    curve.append({"step": step, **{k.split("/", 1)[1]: round(v, 4) for k, v in results.items()
                                   if "per_dim" in k or "bits" in k}})
  return curve


def _grid(config, workdir: str, sampler: str, num_steps: int, out_dir: str) -> tuple:
  """(path, grid) of one sampler's samples of the config's prompts."""
  s = config.sample.copy_and_resolve_references()
  s.update(sampler=sampler, num_steps=num_steps)
  rt, state = checkpointing.restore_latest(config, workdir)
  images = grids.sample_prompts(rt.sampler(s), state.ema_params, text_lib.tokenizer_for(config),
                                list(s.prompts), per_prompt=s.per_prompt, seed=s.seed,
                                batch_size=s.batch_size)
  path = os.path.join(out_dir, f"{os.path.basename(workdir)}_{sampler}_{num_steps}.png")
  grid = grids.make_grid(images, s.per_prompt)
  grids.save_png(path, grid, scale=4)
  return path, grid


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", default="small")
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  cli.quiet()
  dirs = {name: os.path.join(args.workdir, name) for name in ("fm", "ntm_scratch", "ntm_from_fm")}
  fm = _configure(fm_configs.get_config(args.preset), args.steps)
  scratch = _configure(t2i.get_config(args.preset), args.steps)
  from_fm = _configure(ntm_from_fm.get_config(args.preset), args.steps)
  from_fm.init.fm_workdir = dirs["fm"]
  for config, name in ((fm, "fm"), (scratch, "ntm_scratch"), (from_fm, "ntm_from_fm")):
    loop.train_and_evaluate(config, dirs[name])

  # Step 0 of the FM-initialized NTM: exactly the FM posterior sampler.
  rt, _ = checkpointing.restore_latest(from_fm, dirs["ntm_from_fm"])
  rt = fm_init.attach(rt, from_fm)
  start = fm_init.initial_state(rt, rt.create_state())
  fm_rt, fm_state = checkpointing.restore_latest(fm, dirs["fm"])
  fm_eval = held_out.evaluate(fm_rt, fm_state.ema_params, fm, text_lib.tokenizer_for(fm), 0)

  out_dir = os.path.join(args.workdir, "grids")
  os.makedirs(out_dir, exist_ok=True)
  made = {"FM Euler 4": _grid(fm, dirs["fm"], "euler", 4, out_dir),
          "FM Euler 50": _grid(fm, dirs["fm"], "euler", 50, out_dir),
          "FM Heun 50": _grid(fm, dirs["fm"], "heun", 50, out_dir),
          "NTM scratch, full NF 4": _grid(scratch, dirs["ntm_scratch"], "full_nf", 4, out_dir),
          "NTM from FM, full NF 4": _grid(from_fm, dirs["ntm_from_fm"], "full_nf", 4, out_dir)}
  grid_paths = [path for path, _ in made.values()]
  figure = os.path.join(out_dir, "side_by_side.png")
  grids.save_png(figure, grids.side_by_side({k: grid for k, (_, grid) in made.items()}))
  cli.print_json("fm_vs_ntm", {"preset": args.preset,
      "steps": args.steps, "nll_eval": "held-out, EMA, end-to-end T = 4, nats/dim",
      "nll_curves": {"ntm_scratch": _nll_curve(scratch, dirs["ntm_scratch"]),
                     "ntm_from_fm": _nll_curve(from_fm, dirs["ntm_from_fm"], [(0, start)])},
      "fm_loss": {k: round(v, 4) for k, v in fm_eval.items()},
      "grids": grid_paths, "side_by_side": figure})


if __name__ == "__main__":
  main()
