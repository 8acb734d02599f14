"""Transformer pieces shared by the transporter, the predictor and the denoiser.

Attention is grouped-query with optional rotary embeddings over one or more position axes
(1D for sequences, 2D rows/columns for image tokens) and a KV-cached single-token decode step.
Layers are created stacked (`nnx.vmap`) and applied with `nnx.scan`, so compile time does not
grow with depth.
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def sinusoidal_embedding(values, dim: int, max_period: float = 10_000.0):
  """Sinusoidal features of a real scalar per example: [batch] -> [batch, dim] (float32)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(values, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class ConditionEmbedding(nnx.Module):
  """MLP over concatenated sinusoidal embeddings of scalar conditions (times, T)."""

  def __init__(self, num_scalars: int, width: int, *, freq_dim: int = 256,
               zero_init: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    self.freq_dim = freq_dim
    self.fc1 = nnx.Linear(num_scalars * freq_dim, width, dtype=dtype, rngs=rngs)
    # zero_init makes the embedding contribute nothing at initialization.
    out_init = {"kernel_init": nnx.initializers.zeros, "bias_init": nnx.initializers.zeros}
    self.fc2 = nnx.Linear(width, width, dtype=dtype, rngs=rngs, **(out_init if zero_init else {}))

  def __call__(self, scalars: list) -> jax.Array:
    """scalars: list of [batch] arrays, each already scaled to a useful range."""
    feats = jnp.concatenate([sinusoidal_embedding(v, self.freq_dim) for v in scalars], axis=-1)
    return self.fc2(nnx.silu(self.fc1(feats)))


def rope(x, positions, base: float = 10_000.0):
  """Rotary embedding over several position axes.

  Args:
    x: [batch, length, heads, head_dim]; head_dim splits evenly into one rotary part per axis.
    positions: [batch, length, axes] integer or real positions.
  """
  num_axes = positions.shape[-1]
  part = x.shape[-1] // num_axes
  if part % 2 or part * num_axes != x.shape[-1]:
    raise ValueError(f"head_dim {x.shape[-1]} must split into {num_axes} even rotary parts")
  half = part // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None] * freqs  # [b, l, axes, half]
  cos = jnp.cos(angles)[:, :, None]  # [b, l, 1, axes, half]
  sin = jnp.sin(angles)[:, :, None]
  xs = x.astype(jnp.float32).reshape(x.shape[:-1] + (num_axes, 2, half))
  x1, x2 = xs[..., 0, :], xs[..., 1, :]
  out = jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-2)
  return out.reshape(x.shape).astype(x.dtype)


class Attention(nnx.Module):
  """Grouped-query attention with QK RMS-norm and optional rotary positions."""

  def __init__(self, width: int, num_heads: int, num_kv_heads: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if width % num_heads or num_heads % num_kv_heads:
      raise ValueError(f"width {width}, num_heads {num_heads} and num_kv_heads {num_kv_heads} "
                       "must satisfy width % num_heads == 0 and num_heads % num_kv_heads == 0")
    self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
    self.head_dim = width // num_heads
    linear = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=dtype, rngs=rngs)
    self.q = linear(width, num_heads * self.head_dim)
    self.kv = linear(width, 2 * num_kv_heads * self.head_dim)
    self.out = linear(num_heads * self.head_dim, width)
    self.q_norm = nnx.RMSNorm(self.head_dim, dtype=dtype, rngs=rngs)
    self.k_norm = nnx.RMSNorm(self.head_dim, dtype=dtype, rngs=rngs)

  def _project(self, x, positions):
    b, n, _ = x.shape
    q = self.q_norm(constrain(self.q(x).reshape(b, n, self.num_heads, self.head_dim), 2))
    k, v = jnp.split(self.kv(x).reshape(b, n, 2 * self.num_kv_heads, self.head_dim), 2, axis=2)
    k, v = self.k_norm(constrain(k, 2)), constrain(v, 2)
    if positions is not None:
      q, k = rope(q, positions), rope(k, positions)
    return q, k, v

  def _attend(self, q, k, v, mask=None, is_causal=False):
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal)
    return self.out(out.reshape(out.shape[:2] + (-1,)))

  def __call__(self, x, *, positions=None, mask=None, is_causal=False):
    """x: [batch, length, width]; mask: broadcastable to [batch, heads, length, length]."""
    q, k, v = self._project(x, positions)
    return self._attend(q, k, v, mask=mask, is_causal=is_causal)

  def decode(self, x, cache, index, *, positions=None):
    """One new token x [batch, 1, width] at `index`, attending to cached keys <= index.

    cache: (k, v), each [batch, max_length, kv_heads, head_dim], preallocated; returns the
    output and the cache with this token's key and value written in place.
    """
    q, k, v = self._project(x, positions)
    cache_k = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), index, 1)
    cache_v = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), index, 1)
    visible = (jnp.arange(cache_k.shape[1]) <= index)[None, None, None, :]
    return self._attend(q, cache_k, cache_v, mask=visible), (cache_k, cache_v)


class MLP(nnx.Module):
  def __init__(self, width: int, hidden: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.fc2(constrain(nnx.gelu(self.fc1(x)), -1))


class TransformerLayer(nnx.Module):
  """Pre-norm residual layer: attention then MLP."""

  def __init__(self, width: int, num_heads: int, num_kv_heads: int, mlp_ratio: float = 4.0, *,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.attn_norm = nnx.RMSNorm(width, dtype=dtype, rngs=rngs)
    self.attn = Attention(width, num_heads, num_kv_heads, dtype=dtype, rngs=rngs)
    self.mlp_norm = nnx.RMSNorm(width, dtype=dtype, rngs=rngs)
    self.mlp = MLP(width, int(width * mlp_ratio), dtype=dtype, rngs=rngs)

  def __call__(self, x, *, positions=None, mask=None, is_causal=False):
    x = x + self.attn(self.attn_norm(x), positions=positions, mask=mask, is_causal=is_causal)
    return x + self.mlp(self.mlp_norm(x))

  def decode(self, x, cache, index, *, positions=None):
    h, cache = self.attn.decode(self.attn_norm(x), cache, index, positions=positions)
    x = x + h
    return x + self.mlp(self.mlp_norm(x)), cache


BATCH_AXES = ("data", "fsdp")  # the mesh axes a batch is split over (runtime/sharding.py's mesh)
TENSOR_AXIS = "tensor"  # the mesh axis attention heads and MLP hidden units are split over


def constrain(x, tensor_axis=None):
  """x held split over the mesh when traced under jax.set_mesh (Runtime.on_mesh: the train,
  likelihood, distillation and sampling steps); otherwise x unchanged. Its leading (batch)
  axis over BATCH_AXES; with tensor_axis, that axis over TENSOR_AXIS (heads, MLP hidden
  units); without, x is replicated over TENSOR_AXIS (the residual stream of Megatron-style
  tensor parallelism). An axis that does not divide is left to XLA.

  With FSDP the batch and the weights are split over the same axis. Left to itself, XLA's
  partitioner may gather the whole batch's activations on every device instead of gathering
  one layer's weights; at the paper's scale that planned about 55 GiB more per device.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
    return x
  unconstrained = jax.sharding.PartitionSpec.UNCONSTRAINED
  batch_size = math.prod(mesh.shape[a] for a in BATCH_AXES)
  tensor_size = dict(mesh.shape).get(TENSOR_AXIS, 1)
  spec = [None] * x.ndim
  if batch_size > 1:
    spec[0] = BATCH_AXES if x.shape[0] % batch_size == 0 else unconstrained
  if tensor_size == 1 and spec[0] in (None, unconstrained):
    return x
  if tensor_axis is not None and tensor_size > 1:
    divides = x.shape[tensor_axis] % tensor_size == 0
    spec[tensor_axis] = TENSOR_AXIS if divides else unconstrained
  return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec(*spec))


def scan_stacked(fn, modules: nnx.Module, carry, xs=None, *, reverse: bool = False,
                 remat: bool = False):
  """lax.scan of fn(module, carry, x) -> (carry, y) over modules stacked on axis 0.

  Splits the graph and merges one slice per step, so it composes with any enclosing JAX
  transform (lax.scan, fori_loop, jit) without tracing the body more than once.
  """
  graphdef, state = nnx.split(modules)

  def body(carry, inputs):
    layer_state, x = inputs
    return fn(nnx.merge(graphdef, layer_state), carry, x)

  if remat:
    body = jax.checkpoint(body)
  return jax.lax.scan(body, carry, (state, xs), reverse=reverse)


def stacked(make: Callable[[nnx.Rngs], nnx.Module], count: int, rngs: nnx.Rngs) -> nnx.Module:
  """Creates `count` independent copies of a module with parameters stacked on axis 0."""

  @nnx.split_rngs(splits=count)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def create(rngs):
    return make(rngs)

  return create(rngs)


class TransformerStack(nnx.Module):
  """`depth` Transformer layers with stacked parameters, applied with a scan."""

  def __init__(self, depth: int, width: int, num_heads: int, num_kv_heads: int,
               mlp_ratio: float = 4.0, *, remat: bool = False, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.depth, self.remat = depth, remat
    self.layers = stacked(
        lambda r: TransformerLayer(width, num_heads, num_kv_heads, mlp_ratio, dtype=dtype, rngs=r),
        depth, rngs)

  def __call__(self, x, *, positions=None, mask=None, is_causal=False):
    def body(layer, x, _):
      x = layer(constrain(x), positions=positions, mask=mask, is_causal=is_causal)
      return constrain(x), None

    return scan_stacked(body, self.layers, x, remat=self.remat)[0]

  def init_cache(self, batch: int, length: int, dtype=jnp.float32):
    """Zeroed KV cache for every layer: (k, v), each [depth, batch, length, kv_heads, head_dim]."""
    attn = self.layers.attn
    shape = (self.depth, batch, length, attn.num_kv_heads, attn.head_dim)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)

  def decode(self, x, cache, index, *, positions=None):
    """One token through every layer, updating the stacked cache."""

    def body(layer, x, layer_cache):
      return layer.decode(x, layer_cache, index, positions=positions)

    return scan_stacked(body, self.layers, x, cache)
