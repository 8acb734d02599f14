"""The two loaders a run reads from its `data` config: the shuffled training stream and the
fixed first batches of the held-out split."""

import jax
import ml_collections
from absl import logging

from ntm_jax import latents
from ntm_jax.data import pipeline
from ntm_jax.data import sources


def train_loader(config: ml_collections.ConfigDict, tokenizer, batch_size: int, codec=None):
  """The training split, shuffled and repeated; this process's share of each global batch.

  With `codec` (the run's autoencoder) and a training split of at most
  latent.cache_max_examples records, the split is encoded once and batches carry "latents"
  instead of "image" (single-process runs; a multi-host run encodes every batch)."""
  source = sources.make_source(config.data, "train")
  limit = config.latent.get("cache_max_examples", 0) if config.get("latent") else 0
  if codec is not None and 0 < len(source) <= limit and jax.process_count() == 1:
    source = latents.cache_source(codec, source, config.data.channels)
    logging.info("Encoded the %d training images once (latent cache)", len(source))
  return pipeline.make_loader(source, tokenizer,
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
