"""The launch scripts: valid bash, and every ntm_jax.main flag they pass exists."""

import os
import re
import subprocess

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
