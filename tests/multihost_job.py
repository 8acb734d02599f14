"""One process of the job tests/test_multihost.py starts, and the steps it compares:

  python tests/multihost_job.py PROCESSES PID PORT WORKDIR KILL_AT

1. (KILL_AT >= 0) three train steps on a fixed global batch, this process feeding its rows, and
   data-parallel samples of the result;
2. (several processes) the training loop to 8 steps, process 1 sending itself a real SIGTERM
   after step KILL_AT (-1: never).
Prints RESULT{json}. The test imports three_steps for its one-device reference.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from configs import t2i


def micro_config(data: int, fsdp: int):
  config = t2i.get_config("micro")
  config.mesh.update(data=data, fsdp=fsdp, min_shard_size=1)
  config.train.update(num_steps=8, checkpoint_every=1000, log_every=4)
  return config


def three_steps(config, pid: int, processes: int) -> dict:
  """Losses and the first 512 values of one kernel after three steps on a fixed global batch
  of 8, this process feeding its share of the rows; then samples for the batch's 8 prompts."""
  import jax
  from jax.experimental import multihost_utils
  from ntm_jax import text
  from ntm_jax.runtime import runtime
  rt = runtime.build(config)
  state, step = rt.create_state(), rt.train_step(4)
  rng = np.random.default_rng(0)
  tokens = text.tokenizer_for(config).encode(["a red circle", "two blue squares"] * 4)
  rows = slice(pid * 8 // processes, (pid + 1) * 8 // processes)
  losses = []
  for _ in range(3):
    images = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    state, metrics, _ = step(state, rt.global_batch({"image": images[rows],
                                                     "tokens": tokens[rows]}))
    losses.append(float(metrics["loss"]))
  kernel = state.params["predictor"]["backbone"]["transformer"]["layers"]["mlp"]["fc1"]["kernel"]
  gathered = multihost_utils.process_allgather(kernel[...], tiled=True)
  # Data-parallel sampling: every process passes all 8 prompts and gets all 8 images back.
  config.sample.sampler = "full_nf"
  samples = rt.sampler(config.sample)(state.ema_params, tokens, jax.random.key(1))
  return {"losses": losses, "kernel": gathered.ravel()[:512].tolist(),
          "addressable": kernel[...].is_fully_addressable,
          "samples": np.asarray(samples).ravel()[::5].tolist()}


def _build_once(build):
  """runtime.build that returns this process's first Runtime again, so the loop runs the
  programs three_steps compiled. On CPU the persistent compilation cache serves process 0 only
  (the keys of the others hold their device assignment, and only process 0 writes), so each
  program another process traces again is compiled again (process 1 spent 20 s of CPU
  compiling the train and init steps a second time)."""
  built = []

  def once(config, *args, **kwargs):
    if not built:
      built.append(build(config, *args, **kwargs))
    return built[0]
  return once


def _meet_after_compiling(train_step):
  """Runtime.train_step whose first call of each program compiles it, then waits at the
  coordination service's barrier for every process: gloo gives a process 30 s to join the
  first collective, less than a compile can take on a busy CI core. The call that follows
  reuses the trace and the executable (the persistent cache the tests share keeps it too)."""
  from jax._src import distributed
  barriers = iter(range(1_000))

  def patched(self, num_steps):
    step = train_step(self, num_steps)
    compiled = getattr(self, "_compiled_steps", set())
    self._compiled_steps = compiled  # pylint: disable=protected-access

    def run(state, batch):
      if num_steps not in compiled:
        self.lowered_train_step(num_steps, state, batch).compile()
        distributed.global_state.client.wait_at_barrier(f"compiled {next(barriers)}", 600_000)
        compiled.add(num_steps)
      return step(state, batch)
    return run
  return patched


def main():
  processes, pid, port, workdir, kill_at = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4], int(sys.argv[5]))
  import jax
  jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=pid)
  from absl import flags
  from clu import periodic_actions
  from ntm_jax.train import loop
  from ntm_jax.runtime import runtime
  flags.FLAGS.mark_as_parsed()
  config = micro_config(data=2, fsdp=2)
  runtime.build = _build_once(runtime.build)
  runtime.Runtime.train_step = _meet_after_compiling(runtime.Runtime.train_step)
  out = three_steps(config, pid, processes) if kill_at >= 0 else {}

  report = periodic_actions.ReportProgress.__call__

  def report_and_kill(self, step, **kwargs):
    if pid == 1 and step == kill_at:  # caught by JAX's coordination service
      os.kill(os.getpid(), signal.SIGTERM)
    return report(self, step, **kwargs)

  periodic_actions.ReportProgress.__call__ = report_and_kill
  out["step"] = int(loop.train_and_evaluate(config, workdir).step)
  print("RESULT" + json.dumps(out))


if __name__ == "__main__":
  main()
