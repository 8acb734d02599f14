"""Device mesh, FSDP parameter shardings and the fail-fast memory estimate.

The mesh has two axes: 'data' and 'fsdp'. Batches are split over both. Parameters (and their
optimizer moments and EMA) follow path rules: a path matching one of `mesh.replicate` stays
replicated; any other parameter with at least `min_shard_size` elements is split over 'fsdp'
along its largest divisible axis (for stacked layers a weight axis, not the short layer axis).
XLA inserts the all-gathers and reduce-scatters: there is no hand-written communication.
Inside the train step each Transformer layer's activations are held split over the batch axes
(layers.shard_batch), so XLA gathers weights rather than the batch.
"""

import math
import re

import jax
import ml_collections
import numpy as np
import psutil
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ntm_jax import layers

BATCH_AXES = layers.BATCH_AXES


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple:
  """(data, fsdp) sizes; one of them may be -1 for 'all devices the other leaves'."""
  data, fsdp = config.data, config.fsdp
  if data == -1 and fsdp == -1:
    raise ValueError("mesh.data and mesh.fsdp cannot both be -1")
  known = fsdp if data == -1 else data
  if known < 1 or num_devices % known:
    raise ValueError(f"mesh.data={data}, mesh.fsdp={fsdp}: {known} must be >= 1 and divide "
                     f"the {num_devices} devices")
  data = num_devices // fsdp if data == -1 else data
  fsdp = num_devices // data if fsdp == -1 else fsdp
  if data * fsdp != num_devices:
    raise ValueError(f"mesh.data={data} x mesh.fsdp={fsdp} must equal the {num_devices} devices")
  return data, fsdp


def make_mesh(config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """A ('data', 'fsdp') mesh over `devices` (default: all)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices.reshape(mesh_shape(config, devices.size)), BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_spec(shape, fsdp_size: int, min_shard_size: int) -> P:
  """Shard the largest axis divisible by the fsdp size; replicate small or indivisible ones."""
  if fsdp_size == 1 or math.prod(shape) < min_shard_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % fsdp_size == 0:
      return P(*[("fsdp" if a == axis else None) for a in range(len(shape))])
  return P()


def path_string(path) -> str:
  """'params/predictor/backbone/transformer/layers/mlp/fc1/kernel' for a pytree key path (the
  trailing 'value' of an nnx Variable is dropped)."""
  keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
  return "/".join(keys[:-1] if keys and keys[-1] == "value" else keys)


def state_shardings(abstract_state, mesh: Mesh, min_shard_size: int, replicate=()):
  """NamedShardings for a pytree of ShapeDtypeStructs (parameters, optimizer moments, EMA).

  A leaf whose path matches one of the `replicate` regexes stays replicated; every other leaf
  follows `param_spec`.
  """
  fsdp = mesh.shape["fsdp"]
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: NamedSharding(mesh, leaf_spec(path_string(path), leaf.shape, fsdp,
                                                       min_shard_size, replicate)),
      abstract_state)


def leaf_spec(path: str, shape, fsdp_size: int, min_shard_size: int, replicate=()) -> P:
  """The path rules for one leaf: replicated if its path matches a `replicate` regex."""
  if not shape or any(re.search(pattern, path) for pattern in replicate):
    return P()
  return param_spec(shape, fsdp_size, min_shard_size)


def device_memory_bytes(config_gb: float) -> int:
  """Memory of one device: the configured value, the accelerator's limit, or host RAM on CPU."""
  if config_gb > 0:
    return int(config_gb * 2**30)
  stats = jax.local_devices()[0].memory_stats() or {}  # on a pod, a device of this host
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return int(psutil.virtual_memory().total / max(1, jax.local_device_count()))


def estimate_bytes_per_device(num_params: int, config: ml_collections.ConfigDict,
                              num_devices: int, fsdp: int) -> int:
  """Parameters, AdamW moments, EMA and gradients in float32 sharded over fsdp, plus a rough
  activation term: per layer, 16 width-sized float32 tensors per token of every level
  (a quarter of that with remat)."""
  state = 5 * 4 * num_params / fsdp  # params, grads, mu, nu, ema
  model = config.model
  tokens = (config.data.image_size // model.patch_size) ** 2 + model.text_encoder.max_length
  levels = max(config.ntm.num_steps) if config.ntm.mode == "end_to_end" else 2
  per_device_batch = config.train.batch_size / num_devices
  layers = (model.predictor.depth * model.predictor.width + model.transporter.num_blocks *
            model.transporter.depth * model.transporter.width)
  activations = per_device_batch * levels * tokens * layers * 16 * 4
  if model.remat:
    activations /= 4
  return int(state + activations)


def check_fits(num_params: int, config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Raises before any allocation when the estimate exceeds the device memory, naming the
  smallest power-of-two FSDP mesh on which it would fit."""
  fsdp = mesh.shape["fsdp"]
  need = estimate_bytes_per_device(num_params, config, mesh.size, fsdp)
  have = 0.9 * device_memory_bytes(config.memory.device_gb)
  if need <= have:
    return
  fits = fsdp
  while fits < 65536 and estimate_bytes_per_device(num_params, config, max(mesh.size, fits),
                                                   fits) > have:
    fits *= 2
  raise MemoryError(
      f"the model needs about {need / 2**30:.1f} GiB per device ({num_params / 1e6:.0f}M "
      f"parameters, batch {config.train.batch_size} on {mesh.size} device(s), fsdp={fsdp}), "
      f"but a device has {have / 0.9 / 2**30:.1f} GiB. Use a smaller preset "
      f"(--config=configs/t2i.py:small or :tiny), or a mesh of at least {fits} such devices "
      f"with --config.mesh.fsdp={fits}, or a smaller --config.train.batch_size.")
