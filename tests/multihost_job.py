"""One process of the job tests/test_multihost.py starts, and the steps it compares:

  python tests/multihost_job.py PROCESSES PID PORT WORKDIR KILL_AT

1. (KILL_AT >= 0) three train steps on a fixed global batch, this process feeding its rows, and
   data-parallel samples of the result;
2. (several processes) the training loop to 40 steps, process 1 sending itself a real SIGTERM
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
  config.train.update(num_steps=40, checkpoint_every=1000, log_every=5)
  return config


def three_steps(config, pid: int, processes: int) -> dict:
  """Losses and the first 512 values of one kernel after three steps on a fixed global batch
  of 8, this process feeding its share of the rows; then samples for the batch's 8 prompts."""
  import jax
  from jax.experimental import multihost_utils
  from ntm_jax import text
  from ntm_jax.train import runtime
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


def main():
  processes, pid, port, workdir, kill_at = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4], int(sys.argv[5]))
  import jax
  jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=pid)
  from absl import flags
  from clu import periodic_actions
  from jax._src import distributed
  from ntm_jax.train import aot
  from ntm_jax.train import loop
  flags.FLAGS.mark_as_parsed()
  config = micro_config(data=2, fsdp=2)
  # Compile the train step into the persistent cache the tests share, then meet at the
  # coordination service's barrier: gloo gives a process 30 s to join the first collective,
  # less than a compile can take on a busy CI core.
  aot.lower(config)[1].compile()
  distributed.global_state.client.wait_at_barrier("compiled", 600_000)
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
