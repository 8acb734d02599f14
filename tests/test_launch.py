"""The launch scripts: valid bash, every ntm_jax.main flag they pass exists, and the XManager
launcher's dry run."""

import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from ntm_jax import main  # pylint: disable=unused-import  (defines the flags)

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")


@pytest.mark.parametrize("script", ["on_host.sh", "slurm_gpu.sbatch"])
def test_launch_script_parses_and_passes_existing_flags(script):
  path = os.path.join(LAUNCH, script)
  subprocess.run(["bash", "-n", path], check=True)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  command = text[text.rindex("python -m ntm_jax.main"):]
  passed = set(re.findall(r"--([a-z_]+)[= ]", command))
  assert {"config", "workdir", "distributed"} <= passed
  assert passed <= set(flags.FLAGS), passed - set(flags.FLAGS)


def test_tpu_pod_script_starts_each_host_detached():
  path = os.path.join(LAUNCH, "tpu_pod.sh")
  subprocess.run(["bash", "-n", path], check=True)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert "nohup bash launch/on_host.sh" in text and "launch" in text.split("tpu scp")[1]


def test_xmanager_dry_run_prints_one_job_per_sweep_point():
  """The XManager launcher's dry run (no xmanager package, no credentials): the sweep is a grid,
  every unit trains into its own workdir, and every argument is a flag ntm_jax.main accepts."""
  result = subprocess.run(
      [sys.executable, os.path.join(LAUNCH, "xm_launch.py"), "--config=configs/t2i.py:micro",
       "--workdir=gs://bucket/ntm", "--accelerator=h100=8", "--replicas=2",
       "--config.train.num_steps=7", "--sweep=optim.peak_lr=[1e-4, 3e-4]",
       "--sweep=ntm.mode=['pair_wise', 'end_to_end']", "--dry_run"],
      cwd=os.path.dirname(LAUNCH), check=True, capture_output=True, text=True)
  spec = json.loads(result.stdout)
  assert spec["requirements"] == {"resources": {"h100": 8}, "replicas": 2}
  assert spec["executable"]["entrypoint"] == "ntm_jax.main"
  jobs = spec["jobs"]
  assert [job["hyperparameters"] for job in jobs] == [
      {"optim.peak_lr": lr, "ntm.mode": mode}
      for lr in (1e-4, 3e-4) for mode in ("pair_wise", "end_to_end")]
  assert len({job["args"]["workdir"] for job in jobs}) == 4
  for job in jobs:
    args = job["args"]
    assert args["config.train.num_steps"] == "7" and args["distributed"] is True
    assert args["workdir"] == f"gs://bucket/ntm/{job['work_unit']}"
    assert {k for k in args if not k.startswith("config.")} <= set(flags.FLAGS)


def test_xmanager_sweep_over_a_missing_key_fails_before_launch():
  result = subprocess.run(
      [sys.executable, os.path.join(LAUNCH, "xm_launch.py"), "--config=configs/t2i.py:micro",
       "--workdir=/tmp/unused", "--sweep=optim.peak_lrr=[1e-4]", "--dry_run"],
      cwd=os.path.dirname(LAUNCH), capture_output=True, text=True)
  assert result.returncode != 0 and not result.stdout
  assert 'Did you mean "peak_lr"' in result.stderr
