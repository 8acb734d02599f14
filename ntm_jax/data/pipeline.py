"""grain input pipeline: deterministic, sharded per JAX process, checkpointable.

A batch is {"image": uint8 [batch, H, W, 3], "tokens": int32 [batch, max_length]} with the
per-process share of the global batch. The iterator's state (grain's get_state / set_state)
is saved with every checkpoint, so a resumed run sees exactly the batches it would have seen.
"""

import grain
import jax
import jax.numpy as jnp
import numpy as np

from ntm_jax import text as text_lib


class Tokenize(grain.transforms.Map):
  """Caption -> token ids on the host; the caption string itself does not travel further."""

  def __init__(self, tokenizer: text_lib.HashedWordTokenizer):
    self.tokenizer = tokenizer

  def map(self, element):
    return {"image": element["image"], "tokens": self.tokenizer.encode_one(element["caption"])}


def per_process_batch_size(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size % count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the process count "
                     f"{count}")
  return global_batch_size // count


def make_loader(source, tokenizer, *, global_batch_size: int, seed: int, shuffle: bool = True,
                num_epochs: int | None = None, worker_count: int = 0) -> grain.DataLoader:
  """A grain DataLoader over `source`; this process reads only its own shard of the records."""
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
      shuffle=shuffle, num_epochs=num_epochs, seed=seed)
  operations = [Tokenize(tokenizer),
                grain.transforms.Batch(per_process_batch_size(global_batch_size),
                                       drop_remainder=True)]
  return grain.DataLoader(data_source=source, sampler=sampler, operations=operations,
                          worker_count=worker_count)


def normalize_images(images):
  """uint8 [0, 255] -> float32 [-1, 1]; done on device so the host ships bytes."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float [-1, 1] (any range) -> uint8 [0, 255], clipped."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
