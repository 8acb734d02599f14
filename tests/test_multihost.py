"""Two real processes joined by jax.distributed on localhost (CPU, 2 devices each, gloo),
running tests/multihost_job.py.

* Three (data=2, fsdp=2) steps over both processes equal the same steps on one device (in the
  test's own process): losses to 1e-5 relative, parameters to 1e-6.
* A SIGTERM to one process stops both at the same step with a checkpoint; the run resumes.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import multihost_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "tests", "multihost_job.py")
pytestmark = pytest.mark.multihost


def _port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(*args) -> list:
  """Starts the two processes of one job, 2 CPU devices each. Their output goes to files: a
  pipe nobody reads can stall a process inside the job's shutdown barrier while the other
  waits there for it."""
  env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") +
         " --xla_force_host_platform_device_count=2"}
  port = str(_port())
  procs = []
  for pid in range(2):
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    procs.append((subprocess.Popen([sys.executable, JOB, "2", str(pid), port, *map(str, args)],
                                   cwd=ROOT, env=env, stdout=out, stderr=err, text=True),
                  out, err))
  return procs


def _results(procs: list, timeout: float = 240) -> list:
  results = []
  for proc, out, err in procs:
    proc.wait(timeout=timeout)
    out.seek(0)
    err.seek(0)
    assert proc.returncode == 0, err.read()[-3000:]
    results.append(json.loads(out.read().split("RESULT")[-1]))
  return results


def test_two_processes_equal_one_device_and_stop_together_on_sigterm(tmp_path):
  workdir = str(tmp_path / "run")
  two = _launch(workdir, 2)  # process 1: SIGTERM after step 2 of the loop
  single = multihost_job.three_steps(multihost_job.micro_config(data=1, fsdp=1), 0, 1)
  first, second = _results(two)

  assert not first["addressable"]  # the kernel really is spread over both processes
  for process in (first, second):
    np.testing.assert_allclose(process["losses"], single["losses"], rtol=1e-5)
    np.testing.assert_allclose(process["kernel"], single["kernel"], atol=1e-6)
    np.testing.assert_allclose(process["samples"], single["samples"], atol=1e-4)

  assert first["step"] == second["step"] and 2 <= first["step"] < 8
  checkpoints = [int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()]
  assert checkpoints == [first["step"]]
  resumed = _results(_launch(workdir, -1))  # no steps of part 1, no signal
  assert [r["step"] for r in resumed] == [8, 8]
