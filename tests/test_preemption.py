"""A training run survives interruption: resumed after a hard kill (SIGKILL, steps lost since
the last checkpoint), it equals training straight through bit for bit; SIGTERM saves a
checkpoint and exits cleanly."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from helpers import micro_config
from ntm_jax.runtime import checkpointing
from ntm_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


KILL_AT_STEP_8 = """
import os, signal, sys
from absl import flags
flags.FLAGS.mark_as_parsed()
from configs import t2i
from ntm_jax.runtime import checkpointing
from ntm_jax.train import loop
original_save = checkpointing.save
def save_or_die(manager, step, *args):
  if step == 8:  # steps 5-8 are lost: only checkpoint 4 survives the kill
    manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
  original_save(manager, step, *args)
checkpointing.save = save_or_die
config = t2i.get_config("micro")
config.train.update(num_steps=20, checkpoint_every=4)
loop.train_and_evaluate(config, sys.argv[1])
"""


def test_resume_after_a_hard_kill_equals_training_straight_through(tmp_path):
  # The preset's 20 steps: the train step is the one test_train.py's `trained` fixture compiles
  # (the step has the schedule's length baked in), so it can come from the compilation cache.
  config = micro_config(**{"train.checkpoint_every": 4})
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))

  killed_dir = str(tmp_path / "killed")
  proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP_8, killed_dir], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  manager = checkpointing.make_manager(killed_dir, config.train, asynchronous=False)
  assert manager.latest_step() == 4
  resumed = loop.train_and_evaluate(config, killed_dir)

  assert int(resumed.step) == 20
  for name in ("params", "ema_params", "opt_state", "rng"):
    jax.tree.map(np.testing.assert_array_equal, getattr(straight, name), getattr(resumed, name))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen(
      [sys.executable, "-m", "ntm_jax.main", "--config=configs/t2i.py:micro",
       f"--workdir={workdir}", "--config.train.num_steps=100000",
       "--config.train.checkpoint_every=5"], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
  first = os.path.join(workdir, "checkpoints", "5")
  deadline = time.time() + 240
  while not os.path.isdir(first) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, output[-3000:]
  assert "SIGTERM" in output
  stopped = checkpointing.make_manager(workdir, micro_config().train, asynchronous=False).latest_step()
  assert 5 <= stopped < 100000
