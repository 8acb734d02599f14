"""grain input pipeline: deterministic, sharded per JAX process, checkpointable.

A batch is {"image": uint8 [batch, H, W, C], "tokens": int32 [batch, max_length]} with the
per-process share of the global batch ("latents" instead of "image" from a latent cache); C is
data.channels (3: RGB as the sources give it, 1: grey). The iterator's state (grain's
get_state / set_state) is saved with every checkpoint, so a resumed run sees exactly the batches
it would have seen.
"""

import grain
import jax
import jax.numpy as jnp
import numpy as np


class Tokenize(grain.transforms.Map):
  """Caption -> token ids on the host; the caption string itself does not travel further."""

  def __init__(self, tokenizer):
    """tokenizer: any of text.make_tokenizer's (encode_one(caption) -> int32 [max_length])."""
    self.tokenizer = tokenizer

  def map(self, element):
    out = {k: v for k, v in element.items() if k != "caption"}  # "image" or cached "latents"
    return dict(out, tokens=self.tokenizer.encode_one(element["caption"]))


CHANNELS = (1, 3)


def validate_channels(channels: int) -> None:
  if channels not in CHANNELS:
    raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """uint8 RGB [..., 3] -> [..., channels]: unchanged for 3, the channel mean for 1 (exact on
  grey data such as MNIST, whose sources repeat one value in R, G and B)."""
  validate_channels(channels)
  if channels == 3:
    return images
  grey = np.round(np.mean(images, axis=-1, keepdims=True, dtype=np.float32))
  return grey.astype(np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
  """[..., 1] or [..., 3] -> [..., 3]: grey samples as RGB for grids and RGB classifiers."""
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


class ToChannels(grain.transforms.Map):
  """The sources' RGB images -> the model's data.channels."""

  def __init__(self, channels: int):
    validate_channels(channels)
    self.channels = channels

  def map(self, element):
    if "image" not in element:  # cached latents (latents.CachedSource)
      return element
    return dict(element, image=to_channels(element["image"], self.channels))


def per_process_batch_size(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size % count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the process count "
                     f"{count}")
  return global_batch_size // count


def make_loader(source, tokenizer, *, global_batch_size: int, seed: int, shuffle: bool = True,
                num_epochs: int | None = None, worker_count: int = 0,
                channels: int = 3) -> grain.DataLoader:
  """A grain DataLoader over `source`; this process reads only its own shard of the records.
  Images come out with `channels` channels (see to_channels)."""
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
      shuffle=shuffle, num_epochs=num_epochs, seed=seed)
  operations = [Tokenize(tokenizer), ToChannels(channels),
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
