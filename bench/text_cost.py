"""What the frozen MiniLM text encoder costs a training step, against the hashed encoder.

Times the whole training path of a preset (next batch from the grain loader, token ids -> text
input on the host, device transfer, the jitted step) for model.text_encoder.kind = 'hashed' and
'minilm', in interleaved rounds so that both see the same machine load. The first round of each
includes the cache filling (MiniLM encodes each new caption once); the steady-state figure is
the median of the later rounds. Prints one JSON object.

  python bench/text_cost.py [--preset=tiny] [--steps=100] [--rounds=4]
"""

import argparse
import statistics
import time

import jax

# pylint: disable=g-import-not-at-top,wrong-import-position
import cli  # bench/cli.py
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import runtime as runtime_lib

t2i = cli.config_module("t2i")


class Trainer:
  """One preset's training path with one text encoder kind, ready to run timed steps."""

  def __init__(self, preset: str, kind: str):
    config = t2i.get_config(preset)
    config.model.text_encoder.kind = kind
    self.rt = runtime_lib.build(config)
    self.data = iter(loaders.train_loader(config, text_lib.tokenizer_for(config),
                                            config.train.batch_size))
    self.state = self.rt.create_state()
    self.step = self.rt.train_step(max(config.ntm.num_steps))
    self.trainable_text_params = sum(
        x.size for x in jax.tree.leaves(self.state.params["text_encoder"]))
    self.run(2)  # compiles

  def run(self, steps: int) -> float:
    """Seconds per step over `steps` steps, data loading and host text work included."""
    start = time.perf_counter()
    for _ in range(steps):
      self.state, metrics, _ = self.step(self.state, self.rt.global_batch(next(self.data)))
    jax.block_until_ready(metrics["loss"])
    return (time.perf_counter() - start) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="tiny")
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=4)
  args = parser.parse_args()
  trainers = {kind: Trainer(args.preset, kind) for kind in ("hashed", "minilm")}
  seconds = {kind: [] for kind in trainers}
  for _ in range(args.rounds):
    for kind, trainer in trainers.items():
      seconds[kind].append(trainer.run(args.steps))
  steady = {kind: statistics.median(s[1:]) for kind, s in seconds.items()}
  result = {"preset": args.preset, "steps_per_round": args.steps, "rounds": args.rounds,
            "platform": jax.devices()[0].platform, "devices": jax.device_count()}
  for kind, s in seconds.items():
    result[f"{kind}_first_round_step_s"] = round(s[0], 4)
    result[f"{kind}_steady_step_s"] = round(steady[kind], 4)
    result[f"{kind}_trainable_text_params"] = trainers[kind].trainable_text_params
  result["minilm_cached_captions"] = len(trainers["minilm"].rt.text_inputs)
  result["minilm_over_hashed_steady"] = round(steady["minilm"] / steady["hashed"], 3)
  result["minilm_over_hashed_first_round"] = round(seconds["minilm"][0] / seconds["hashed"][0], 3)
  result["minilm_over_hashed_all_rounds"] = round(sum(seconds["minilm"]) / sum(seconds["hashed"]),
                                                  3)
  cli.print_json("text_cost", result)


if __name__ == "__main__":
  main()
