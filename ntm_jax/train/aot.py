"""Ahead of time: lower (and compile) a config's train step for a mesh without training on it.

The state and the global batch are abstract (shapes, dtypes and shardings), so nothing of the
model is allocated: the paper-scale default can be checked on fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=64) before a pod is booked.
`lowered.compile().memory_analysis()` then gives the per-device memory XLA plans.
"""

import jax
import ml_collections

from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.runtime import runtime as runtime_lib


def abstract_batch(rt, config: ml_collections.ConfigDict) -> dict:
  """The global batch of config.train.batch_size as ShapeDtypeStructs with its shardings, read
  off one real batch of one example per device (the text inputs are computed, not guessed)."""
  loader = loaders.train_loader(config, text_lib.tokenizer_for(config), rt.mesh.size)
  small = rt.global_batch(next(iter(loader)))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      (config.train.batch_size,) + x.shape[1:], x.dtype, sharding=x.sharding), small)


def lower(config: ml_collections.ConfigDict, devices=None):
  """(runtime, the lowered train step of the first T, abstract batch) on the config's mesh
  over `devices` (default: all). No memory check: compile and read memory_analysis()."""
  rt = runtime_lib.build(config, devices, check_memory=False)
  batch = abstract_batch(rt, config)
  return rt, rt.lowered_train_step(config.ntm.num_steps[0], rt.abstract_state, batch), batch
