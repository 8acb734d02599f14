"""Mistakes a user makes before anything trains: each is one line naming the fix, with no
traceback, and nothing compiles first."""

import os
import subprocess
import sys

import pytest

from configs import t2i
from helpers import micro_config
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.runtime import runtime
from ntm_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args, line", [
    (["--config.train.bogus_key=3"], "--config.train.bogus_key: no such config key 'bogus_key'"),
    (["--config.sample.guidence=2"], 'no such config key \'guidence\'. Did you mean "guidance"'),
    (["--config.sample.guidance=abc"], "--config.sample.guidance=abc: could not convert"),
    (["--config=configs/nope.py"], "--config: no file 'configs/nope.py'"),
    (["--config=configs/t2i.py:bogus"], "unknown preset 'bogus'; use '' (the paper-scale default), 'tiny'"),
    (["--workdir=setup.py"], "--workdir=setup.py is a file"),
])
def test_command_line_mistakes_are_one_line(args, line):
  command = [sys.executable, "-m", "ntm_jax.main", "--config=configs/t2i.py:micro",
             "--workdir=/tmp/unused", *args]
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.startswith("ntm_jax: ")]
  assert len(lines) == 1 and line in lines[0], proc.stderr
  assert "Traceback" not in proc.stderr


def test_unwritable_workdir_fails_before_training(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(PermissionError, match="not writable"):
    loop.train_and_evaluate(micro_config(), str(blocker / "workdir"))


def test_sample_mode_without_checkpoint_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    sample_lib.sample(micro_config(), str(tmp_path))


def test_paper_scale_default_fails_fast_with_the_estimate_and_what_would_fit():
  with pytest.raises(MemoryError, match=r"GiB per device .* --config.mesh.fsdp=\d+"):
    runtime.build(t2i.get_config())
