"""Device mesh, FSDP and tensor-parallel parameter shardings, and the fail-fast memory estimate.

The mesh has three axes: 'data', 'fsdp' and 'tensor', laid out by jax.experimental.mesh_utils
over the physical topology (a hybrid ICI x DCN mesh when `mesh.dcn_data` > 1 slices share the
data axis). Batches are split over ('data', 'fsdp') and replicated over 'tensor'. Parameters
(and their optimizer moments and EMA) follow path rules, as in big_vision:
* a path matching one of `mesh.replicate` stays replicated;
* a path matching a `mesh.tensor_rules` regex is split over 'tensor' along that rule's axis
  (Megatron style: attention heads and the MLP hidden dimension, column-parallel in, row-parallel
  out), when 'tensor' > 1 and the axis divides;
* any parameter with at least `min_shard_size` elements is then split over 'fsdp' along its
  largest remaining divisible axis (for stacked layers a weight axis, not the short layer axis).
XLA inserts the all-gathers, reduce-scatters and all-reduces: there is no hand-written
communication. Inside the train step each Transformer layer's activations are held split over
the batch axes, and its heads and MLP hidden units over 'tensor' (layers.constrain), so XLA
gathers weights rather than the batch.
"""

import math
import re

import jax
import ml_collections
import psutil
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ntm_jax import layers

BATCH_AXES = layers.BATCH_AXES
MESH_AXES = BATCH_AXES + (layers.TENSOR_AXIS,)


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple:
  """(data, fsdp, tensor) sizes; data or fsdp may be -1 for 'all devices the others leave'."""
  data, fsdp, tensor = config.data, config.fsdp, config.get("tensor", 1)
  if data == -1 and fsdp == -1:
    raise ValueError("mesh.data and mesh.fsdp cannot both be -1")
  if tensor < 1 or num_devices % tensor:
    raise ValueError(f"mesh.tensor={tensor} must be >= 1 and divide the {num_devices} devices")
  rest = num_devices // tensor
  known = fsdp if data == -1 else data
  if known < 1 or rest % known:
    raise ValueError(f"mesh.data={data}, mesh.fsdp={fsdp}: {known} must be >= 1 and divide "
                     f"the {rest} devices that mesh.tensor={tensor} leaves")
  data = rest // fsdp if data == -1 else data
  fsdp = rest // data if fsdp == -1 else fsdp
  if data * fsdp != rest:
    raise ValueError(f"mesh.data={data} x mesh.fsdp={fsdp} x mesh.tensor={tensor} must equal "
                     f"the {num_devices} devices")
  return data, fsdp, tensor


def make_mesh(config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh over `devices` (default: all), laid out by device_grid."""
  devices = list(devices if devices is not None else jax.devices())
  return Mesh(device_grid(config, devices), MESH_AXES)


def device_grid(config: ml_collections.ConfigDict, devices: list):
  """The devices as a (data, fsdp, tensor) array in the order mesh_utils picks for the
  topology. With mesh.dcn_data = S > 1 the data axis spans S slices (or processes, where
  devices carry no slice index) over the data-centre network, and every other axis stays
  inside a slice."""
  shape = mesh_shape(config, len(devices))
  slices = config.get("dcn_data", 1)
  if slices == 1:
    return mesh_utils.create_device_mesh(shape, devices)
  if shape[0] % slices:
    raise ValueError(f"mesh.dcn_data={slices} must divide the data axis ({shape[0]})")
  per_slice = (shape[0] // slices,) + shape[1:]
  by_process = not hasattr(devices[0], "slice_index")
  return mesh_utils.create_hybrid_device_mesh(per_slice, (slices, 1, 1), devices,
                                              process_is_granule=by_process)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_spec(shape, fsdp_size: int, min_shard_size: int, taken=()) -> P:
  """Shard the largest axis divisible by the fsdp size (and not in `taken`); replicate small or
  indivisible ones."""
  if fsdp_size == 1 or math.prod(shape) < min_shard_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if axis not in taken and shape[axis] % fsdp_size == 0:
      return P(*[("fsdp" if a == axis else None) for a in range(len(shape))])
  return P()


def path_string(path) -> str:
  """'params/predictor/backbone/transformer/layers/mlp/fc1/kernel' for a pytree key path (the
  trailing 'value' of an nnx Variable is dropped)."""
  keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
  return "/".join(keys[:-1] if keys and keys[-1] == "value" else keys)


def state_shardings(abstract_state, mesh: Mesh, rules: ml_collections.ConfigDict):
  """NamedShardings for a pytree of ShapeDtypeStructs (parameters, optimizer moments, EMA), by
  `leaf_spec` with the path rules of a `mesh` config section."""
  sizes = dict(mesh.shape)
  replicate, tensor_rules = tuple(rules.replicate), tuple(map(tuple, rules.tensor_rules))
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: NamedSharding(mesh, leaf_spec(
          path_string(path), leaf.shape, sizes["fsdp"], rules.min_shard_size, replicate,
          tensor_rules, sizes.get(layers.TENSOR_AXIS, 1))),
      abstract_state)


def tensor_axis(path: str, shape, tensor_rules, tensor_size: int):
  """The axis the first matching (regex, axis) rule splits over 'tensor', or None."""
  if tensor_size == 1:
    return None
  for pattern, axis in tensor_rules:
    if re.search(pattern, path):
      axis %= len(shape)
      return axis if shape[axis] % tensor_size == 0 else None
  return None


def leaf_spec(path: str, shape, fsdp_size: int, min_shard_size: int, replicate=(),
              tensor_rules=(), tensor_size: int = 1) -> P:
  """The path rules for one leaf: replicated if its path matches a `replicate` regex; else the
  tensor rule's axis over 'tensor' and the largest other divisible axis over 'fsdp'."""
  if not shape or any(re.search(pattern, path) for pattern in replicate):
    return P()
  split = tensor_axis(path, shape, tensor_rules, tensor_size)
  if split is None:
    return param_spec(shape, fsdp_size, min_shard_size)
  spec = list(param_spec(shape, fsdp_size, min_shard_size, taken=(split,)))
  spec += [None] * (len(shape) - len(spec))
  spec[split] = layers.TENSOR_AXIS
  return P(*spec)


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
  """Parameters, AdamW moments, EMA and gradients in float32 sharded over `fsdp` devices (fsdp x
  tensor), plus a rough
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
  fsdp = mesh.shape["fsdp"] * dict(mesh.shape).get(layers.TENSOR_AXIS, 1)
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
      f"parameters, batch {config.train.batch_size} on {mesh.size} device(s), fsdp x tensor = "
      f"{fsdp}), "
      f"but a device has {have / 0.9 / 2**30:.1f} GiB. Use a smaller preset "
      f"(--config=configs/t2i.py:small or :tiny), or a mesh of at least {fits} such devices "
      f"with --config.mesh.fsdp={fits}, or a smaller --config.train.batch_size.")
