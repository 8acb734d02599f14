"""Ablations: train config variants and the flow-matching baseline, then score them in one run.

  python bench/ablate.py --root=DIR --variants=fm,ntm,ntm_grey,... [--jobs=2] [--knobs=ntm_grey]

Every variant is a preset plus --config overrides (VARIANTS below). Training runs one
`python -m ntm_jax.main` per variant in DIR/NAME, each pinned to one core (`taskset`), --jobs at a
time; a finished run (DIR/NAME/train_time.json with rc 0) is reused, an interrupted one resumes
from its checkpoint. The budget is stated per variant: its step count, and the wall-clock its
training took on one core (train_time.json, compile, periodic evaluation and grids included;
summed over the segments of a resumed run).

Scoring, after all training: one classifier (DIR/classifier, trained on first use) for every
run; per row the class accuracy and Frechet distance of 100 samples per class, the held-out NLL
in nats/dim (the NTM's exact trajectory NLL at its T; D = the data dimension, which
data.channels changes), the training time and the sampler's images/s. --knobs=NAME adds a
sampling sweep (temperature, guidance, t_min, the last step's temperature, trajectory
denoising) of one trained NTM; --sample_set=sample.seed=1 scores every row on other noise.
--figure=PNG writes 8 samples per class of the chosen rows side by side (--figure_rows).

Prints one JSON object; its "markdown" entry holds the tables for docs/results/.
"""

import argparse
import os
import subprocess
import sys
import time

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
import jax
import numpy as np
from absl import logging

from ntm_jax import config_files
from ntm_jax import files
from ntm_jax import grids
from ntm_jax import methods
from ntm_jax import text as text_lib
from ntm_jax.evaluate import classifier
from ntm_jax.evaluate import reports
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.evaluate import suite
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import held_out

fm_configs = cli.config_module("fm")
ntm_from_fm = cli.config_module("ntm_from_fm")
t2i = cli.config_module("t2i")

CONFIGS = {"t2i": t2i, "fm": fm_configs, "ntm_from_fm": ntm_from_fm}
GREY, RGB = ("data.channels=1",), ("data.channels=3",)
# name -> (config file, overrides, the variant whose run it starts from or None). "{root}" in an
# override is --root. The MNIST-family presets: 3,000 steps of batch 64 unless a step count says.
VARIANTS = {
    "fm": ("fm", RGB, None),
    "ntm": ("t2i", RGB, None),
    "fm_grey": ("fm", GREY, None),
    "fm_grey_long": ("fm", GREY + ("train.num_steps=5600",), None),  # NTM's wall-clock
    "ntm_grey": ("t2i", GREY, None),
    "fm_grey_1k": ("fm", GREY + ("train.num_steps=1000",), None),
    "ntm_grey_1k": ("t2i", GREY + ("train.num_steps=1000",), None),
    "fm_grey_10k": ("fm", GREY + ("train.num_steps=10000",), None),
    "ntm_grey_10k": ("t2i", GREY + ("train.num_steps=10000",), None),
    "ntm_grey_posterior": ("t2i", GREY + ("model.predictor.parametrization=posterior",
                                          "model.predictor.data_variance=0.5"), None),
    "ntm_grey_no_transporter": ("t2i", GREY + ("model.transporter.num_blocks=0",), None),
    "ntm_grey_transporter_4x1": ("t2i", GREY + ("model.transporter.num_blocks=4",
                                                "model.predictor.depth=1"), None),
    "ntm_grey_mixing": ("t2i", GREY + ("model.transporter.channel_mixing=True",), None),
    "ntm_grey_minilm": ("t2i", GREY + ("model.text_encoder.kind=minilm",), None),
    "ntm_grey_end_to_end": ("t2i", GREY + ("ntm.mode=end_to_end", "train.num_steps=1200"),
                            None),
    "ntm_grey_T1": ("t2i", GREY + ("ntm.num_steps=(1,)", "sample.num_steps=1"), None),
    "ntm_grey_T2": ("t2i", GREY + ("ntm.num_steps=(2,)", "sample.num_steps=2"), None),
    "ntm_grey_T8": ("t2i", GREY + ("ntm.num_steps=(8,)", "sample.num_steps=8"), None),
    # The paper's recipe at equal total wall-clock: fm_grey's 3,000 steps + 1,400 NTM steps.
    "ntm_grey_from_fm": ("ntm_from_fm", GREY + ("init.fm_workdir={root}/fm_grey",
                                                "train.num_steps=1400"), "fm_grey"),
}
# (sample overrides) of the --knobs sweep, each scored with the full NF sampler.
KNOBS = (
    *[(f"sample.temperature={v}",) for v in (1.0, 0.9, 0.8, 0.7)],
    *[(f"sample.guidance={v}",) for v in (0.0, 1.0, 2.0, 5.0)],
    *[(f"sample.t_min={v}",) for v in (0.0, 0.02)],
    *[(f"sample.final_temperature={v}",) for v in (0.0, 0.5)],
    *[(f"sample.temperature={v}",) for v in (0.6, 0.5)],
    ("sample.temperature=0.8", "sample.final_temperature=0.0"),
    ("sample.temperature=0.7", "sample.final_temperature=0.0"),
    ("sample.temperature=0.7", "sample.guidance=4.0"),
)
DENOISED_KNOBS = ((), ("sample.temperature=0.7",))


def _overrides(name: str, root: str) -> tuple:
  if name not in VARIANTS:
    raise ValueError(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
  return tuple(o.replace("{root}", root) for o in VARIANTS[name][1])


def variant_config(name: str, preset: str, root: str):
  config = CONFIGS[VARIANTS[name][0]].get_config(preset)
  return config_files.apply_overrides(config, _overrides(name, root))


def _finished(workdir: str) -> bool:
  path = os.path.join(workdir, "train_time.json")
  return os.path.exists(path) and files.read_json(path).get("rc") == 0


def _launch(name: str, args, core: int) -> dict:
  workdir = os.path.join(args.root, name)
  os.makedirs(workdir, exist_ok=True)
  command = ["taskset", "-c", str(core), sys.executable, "-m", "ntm_jax.main",
             f"--config=configs/{VARIANTS[name][0]}.py:{args.preset}", f"--workdir={workdir}",
             *[f"--config.{o}" for o in _overrides(name, args.root)]]
  with open(os.path.join(workdir, "train.log"), "a", encoding="utf-8") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  logging.warning("training %s on core %d", name, core)
  return {"name": name, "workdir": workdir, "core": core, "process": process,
          "started": time.time(), "earlier": _earlier_segments(workdir)}


def _earlier_segments(workdir: str) -> list:
  """Seconds of the segments an interrupted run already trained (a resume adds one)."""
  path = os.path.join(workdir, "train_time.json")
  if not os.path.exists(path):
    return []
  timing = files.read_json(path)
  return timing.get("segments", [timing["train_seconds"]])


def _record_time(job: dict, rc) -> None:
  """Written every poll, so a session that dies mid-run keeps the time its run has trained."""
  segments = job["earlier"] + [time.time() - job["started"]]
  path = os.path.join(job["workdir"], "train_time.json")
  files.write_json(path + ".tmp", {"train_seconds": sum(segments), "segments": segments,
                                   "rc": rc})
  os.replace(path + ".tmp", path)  # a kill mid-write leaves the previous record whole


def train_all(names: list, args) -> None:
  """Trains every unfinished variant, --jobs at a time, one core each, parents first."""
  done = lambda name: _finished(os.path.join(args.root, name))
  pending = [n for n in names if not done(n)]
  running, cores = [], list(range(os.cpu_count() or 1))
  while pending or running:
    for job in [j for j in running if j["process"].poll() is not None]:
      running.remove(job)
      cores.append(job["core"])
      rc = job["process"].returncode
      _record_time(job, rc)
      if rc:
        raise RuntimeError(f"training {job['name']} failed; see its train.log")
    ready = [n for n in pending if VARIANTS[n][2] is None or done(VARIANTS[n][2])]
    while ready and len(running) < args.jobs:
      name = ready.pop(0)
      pending.remove(name)
      running.append(_launch(name, args, cores.pop(0)))
    if pending and not ready and not running:
      raise RuntimeError(f"{pending} wait on variants that are not in --variants")
    for job in running:
      _record_time(job, None)
    time.sleep(5)


def _images_per_second(sampler, params, tokenizer, caption: str, batch_size: int) -> float:
  """One batch of one caption, timed over 3 calls after a compiling one."""
  tokens = tokenizer.encode([caption] * batch_size)
  jax.block_until_ready(sampler(params, tokens, jax.random.key(0)))
  start = time.perf_counter()
  for i in range(3):
    jax.block_until_ready(sampler(params, tokens, jax.random.key(i + 1)))
  return 3 * batch_size / (time.perf_counter() - start)


def _rows_of(name: str, config, samplers, args, judge, samples: dict) -> list:
  workdir = os.path.join(args.root, name)
  rt, state = checkpointing.restore_latest(config, workdir)
  nll = held_out.evaluate(rt, state.ema_params, config, text_lib.tokenizer_for(config),
                            int(state.step))
  timing = files.read_json(os.path.join(workdir, "train_time.json"))
  rows = []
  for sampler_name, num_steps, sample_overrides in samplers:
    sample_config = config_files.apply_overrides(config.copy_and_resolve_references(),
                                                 sample_overrides)
    metrics = suite.class_metrics_report(sample_config, workdir, rt, state.ema_params,
                                            sampler_name, judge, num_steps, keep_images=True)
    sampler, _ = sample_lib.evaluated_sampler(sample_config, workdir, rt, sampler_name, num_steps)
    key = f"{name} {sampler_name} {metrics['num_steps']} {' '.join(sample_overrides)}".strip()
    samples[key] = metrics.pop("images")
    rows.append({
        "variant": name, "method": methods.get(config).name, "sampler": sampler_name,
        "num_steps": metrics["num_steps"], "sample_overrides": list(sample_overrides),
        "class_accuracy": metrics["class_accuracy"],
        "frechet_distance": metrics["frechet_distance"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "nll_nats_per_dim": nll.get(f"eval_T{config.sample.num_steps}/nll_nats_per_dim"),
        "fm_velocity_mse": nll.get("eval/fm_loss"),
        "data_dims": config.data.image_size**2 * config.data.channels,
        "train_steps": int(state.step), "train_minutes": timing["train_seconds"] / 60,
        "images_per_second": _images_per_second(sampler, state.ema_params,
                                                text_lib.tokenizer_for(config), judge.captions[0],
                                                config.sample.batch_size),
        "guidance": metrics["guidance"], "t_min": metrics["t_min"]})
  return rows


def _samplers(config, knobs: bool) -> list:
  if methods.get(config) is methods.FLOW_MATCHING:  # posterior: what an NTM started from this run is at step 0
    return [("euler", 4, ()), ("euler", 50, ()), ("posterior", 4, ())]
  rows = [("full_nf", None, ())]
  if knobs:
    rows += [("full_nf", None, k) for k in KNOBS]
    rows += [("full_nf_denoised", None, k) for k in DENOISED_KNOBS]
  return rows


def table(rows: list) -> list:
  header = ("variant", "sampler", "T", "sampling", "class accuracy", "Frechet distance",
            "NLL nats/dim (D)", "train steps", "train min (1 core)", "images/s")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in rows:
    nll = (f"{r['nll_nats_per_dim']:.3f} ({r['data_dims']})" if r["nll_nats_per_dim"]
           is not None else f"FM MSE {r['fm_velocity_mse']:.3f}")
    sampling = ", ".join(o.removeprefix("sample.") for o in r["sample_overrides"]) or "preset"
    lines.append(f"| {r['variant']} | {r['sampler']} | {r['num_steps']} | {sampling} | "
                 f"{r['class_accuracy']:.3f} | {r['frechet_distance']:.2f} | {nll} | "
                 f"{r['train_steps']} | {r['train_minutes']:.1f} | "
                 f"{r['images_per_second']:.0f} |")
  return lines


def figure(path: str, samples: dict, keys: list, per_class: int, columns: int = 8) -> None:
  """Blocks of `columns` samples per class (rows = classes), one block per key, titled."""
  panels = {}
  for key in keys:
    images = samples[key]
    classes = len(images) // per_class
    chosen = np.concatenate([images[c * per_class:c * per_class + columns]
                             for c in range(classes)])
    panels[key] = grids.make_grid(chosen, columns)
  grids.save_png(path, grids.side_by_side(panels))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="mnist_tiny")
  parser.add_argument("--root", required=True, help="one workdir per variant under it")
  parser.add_argument("--variants", required=True, help="comma-separated names of VARIANTS")
  parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one core each")
  parser.add_argument("--knobs", default="", help="a variant to sweep sampling settings on")
  parser.add_argument("--samples_per_class", type=int, default=100)
  parser.add_argument("--sample_set", action="append", default=[],
                      help="sample.KEY=VALUE for every scored row, e.g. sample.seed=1 to read "
                           "knobs again on noise they were not chosen on (repeatable)")
  parser.add_argument("--train_only", action="store_true")
  parser.add_argument("--figure", default="", help="PNG of samples side by side")
  parser.add_argument("--figure_rows", default="", help="comma-separated row keys for --figure")
  args = parser.parse_args()
  cli.quiet()
  names = args.variants.split(",")
  if any(not o.startswith("sample.") for o in args.sample_set):
    parser.error("--sample_set takes sample.KEY=VALUE overrides")
  for name in names + [p for p in (args.knobs,) if p]:
    variant_config(name, args.preset, args.root)  # unknown names and bad overrides fail now
  train_all(names, args)
  if args.train_only:
    return
  judge_config = variant_config(names[0], args.preset, args.root)
  judge_config.eval.update(samples_per_class=args.samples_per_class)
  judge_config.eval.classifier.dir = os.path.join(args.root, "classifier")
  judge = classifier.make_judge(judge_config, args.root)
  rows, samples = [], {}
  for name in names:
    config = config_files.apply_overrides(variant_config(name, args.preset, args.root),
                                          args.sample_set)
    config.eval.update(samples_per_class=args.samples_per_class)
    rows += _rows_of(name, config, _samplers(config, name == args.knobs), args, judge, samples)
  if args.figure:
    keys = args.figure_rows.split(",") if args.figure_rows else list(samples)
    figure(args.figure, samples, keys, args.samples_per_class)
  note = reports.classifier_note({"classifier": judge.description,
                                  "reference_images": len(judge.reference),
                                  "real_floor": judge.real_floor})
  markdown = [note, "", *table(rows)]
  cli.print_json("ablate", {"preset": args.preset, "backend": jax.default_backend(),
                    "rows": rows, "markdown": "\n".join(markdown)})


if __name__ == "__main__":
  main()
