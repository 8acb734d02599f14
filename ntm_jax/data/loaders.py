"""The two loaders a run reads from its `data` config: the shuffled training stream and the
fixed first batches of the held-out split."""

import ml_collections

from ntm_jax.data import pipeline
from ntm_jax.data import sources


def train_loader(config: ml_collections.ConfigDict, tokenizer, batch_size: int):
  """The training split, shuffled and repeated; this process's share of each global batch."""
  return pipeline.make_loader(sources.make_source(config.data, "train"), tokenizer,
                              global_batch_size=batch_size, seed=config.data.seed,
                              worker_count=config.data.worker_count,
                              channels=config.data.channels)


def held_out_local_batches(config, tokenizer, batch_size: int, count: int) -> list:
  """This process's share of the first `count` batches of the evaluation split (numpy)."""
  loader = pipeline.make_loader(sources.make_source(config.data, "eval"), tokenizer,
                                global_batch_size=batch_size, seed=config.data.seed,
                                shuffle=False, num_epochs=1,
                                channels=config.data.channels)
  return [b for b, _ in zip(loader, range(count))]
