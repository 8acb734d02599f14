"""Two real processes joined by jax.distributed on localhost (CPU, 2 devices each, gloo).

* Three (data=2, fsdp=2) steps over both processes equal the same steps in one 4-device
  process: losses to 1e-5 relative, parameters to 1e-6.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.multihost

JOB = """
import os, signal, sys, json
processes, pid, port, workdir, kill_at = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                          sys.argv[4], int(sys.argv[5]))
import jax
if processes > 1:
  jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=pid)
from absl import flags
flags.FLAGS.mark_as_parsed()
import numpy as np
from clu import periodic_actions
from jax.experimental import multihost_utils
from configs import t2i
from ntm_jax import text
from ntm_jax.train import aot, loop, runtime
config = t2i.get_config("micro")
config.mesh.update(data=2, fsdp=2, min_shard_size=1)
config.train.update(num_steps=40, checkpoint_every=1000, log_every=5)

# Compile the train step into the persistent cache the tests share, then meet at the
# coordination service's barrier: gloo gives a process 30 s to join the first collective, less
# than a compile can take on a busy CI core.
aot.lower(config)[1].compile()
if processes > 1:
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  distributed.global_state.client.wait_at_barrier("compiled", 600_000)
out = {}

if kill_at >= 0:  # 1. three steps on a fixed global batch, this process feeding its rows
  rt = runtime.build(config)
  state, step = rt.create_state(), rt.train_step(4)
  rng = np.random.default_rng(0)
  tokens = text.tokenizer_for(config).encode(["a red circle", "two blue squares"] * 4)
  rows = slice(pid * 8 // processes, (pid + 1) * 8 // processes)
  out["losses"] = []
  for _ in range(3):
    images = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    batch = rt.global_batch({"image": images[rows], "tokens": tokens[rows]})
    state, metrics, _ = step(state, batch)
    out["losses"].append(float(metrics["loss"]))
  kernel = state.params["predictor"]["backbone"]["transformer"]["layers"]["mlp"]["fc1"]["kernel"]
  out["kernel"] = multihost_utils.process_allgather(kernel[...], tiled=True).ravel()[:512].tolist()
  out["addressable"] = kernel[...].is_fully_addressable

if processes > 1:  # 2. the training loop; process 1 gets a real SIGTERM after step kill_at
  report = periodic_actions.ReportProgress.__call__
  def report_and_kill(self, step, **kwargs):
    if pid == 1 and step == kill_at:  # caught by JAX's coordination service
      os.kill(os.getpid(), signal.SIGTERM)
    return report(self, step, **kwargs)
  periodic_actions.ReportProgress.__call__ = report_and_kill
  out["step"] = int(loop.train_and_evaluate(config, workdir).step)
print("RESULT" + json.dumps(out))
"""


def _port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(processes: int, *args) -> list:
  """Starts `processes` processes of one job (2 CPU devices each; 4 for a single one). Their
  output goes to files: a pipe nobody reads can stall a process inside the job's shutdown
  barrier while the other waits there for it."""
  devices = 4 // processes
  env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") +
         f" --xla_force_host_platform_device_count={devices}"}
  port = str(_port())
  procs = []
  for pid in range(processes):
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    procs.append((subprocess.Popen([sys.executable, "-c", JOB, str(processes), str(pid), port,
                                    *map(str, args)], cwd=ROOT, env=env, stdout=out,
                                   stderr=err, text=True), out, err))
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


def test_two_processes_equal_one_and_stop_together_on_sigterm(tmp_path):
  workdir = str(tmp_path / "run")
  two = _launch(2, workdir, 3)  # process 1: SIGTERM after step 3 of the loop
  one = _launch(1, workdir, 0)
  (single,), (first, second) = _results(one), _results(two)

  assert not first["addressable"]  # the kernel really is spread over both processes
  for process in (first, second):
    np.testing.assert_allclose(process["losses"], single["losses"], rtol=1e-5)
    np.testing.assert_allclose(process["kernel"], single["kernel"], atol=1e-6)

  assert first["step"] == second["step"] and 3 <= first["step"] < 40
  checkpoints = [int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()]
  assert checkpoints == [first["step"]]
  resumed = _results(_launch(2, workdir, -1))  # no steps of part 1, no signal
  assert [r["step"] for r in resumed] == [40, 40]
