"""The transporter f_T: causal affine autoregressive flow blocks (paper Eq. 3.1, Table 4).

One invertible, dimension-preserving map shared by every trajectory level and told the level's
time t (and the step count T). Each block is a TarFlow-style causal Transformer over the token
sequence in its scan order; token i is transformed with (a_i, b_i) predicted from tokens < i
(the first token from a learned start token and the conditioning):

    z_i = (x_i - b_i) * exp(-a_i),   log|det dz/dx| = -sum_i a_i.

The scan direction alternates between blocks (block k sees the sequence reversed k times). The
(a, b) head is zero-initialized, so the flow starts as the identity; (a, b) are scaled by (1 - t),
so f_T(x, 1) = x exactly for every parameter value. The affine step and log-det are float32.

Within a token the affine step is elementwise, so a block leaves the channels of one token (the
pixels of one patch) independent given the earlier tokens. With few large patches (16 tokens of
4x4 pixels at 16x16) that is most of the image's pixel pairs. Optional channel mixing (beyond
the paper) starts each block with an invertible linear map over a token's channels,
x -> expm((1 - t) M) x with a learned M (zero at init): invertible for every M, log-det
tokens * (1 - t) tr(M), the identity at t = 1 and at init.

Shapes: x, z: [batch, tokens, channels]; t, num_steps: [batch]; log-det: [batch].
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ntm_jax import layers

INVERSES = ("kv_cache", "jacobi")  # how the sampler inverts the transporter


class FlowBlock(nnx.Module):
  """One causal affine autoregressive block over a sequence in its own scan order."""

  def __init__(self, channels: int, num_tokens: int, width: int, depth: int, num_heads: int,
               num_kv_heads: int, *, scale_bound: float, channel_mixing: bool = False,
               remat: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    self.channels, self.num_tokens, self.scale_bound = channels, num_tokens, scale_bound
    self.dtype = dtype
    self.mixing = nnx.Param(jnp.zeros((channels, channels))) if channel_mixing else None
    self.embed = nnx.Linear(channels, width, dtype=dtype, rngs=rngs)
    self.start = nnx.Param(jax.random.normal(rngs.params(), (width,)) * 0.02)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (num_tokens, width)) * 0.02)
    self.condition = layers.ConditionEmbedding(2, width, dtype=dtype, rngs=rngs)
    self.transformer = layers.TransformerStack(depth, width, num_heads, num_kv_heads,
                                               remat=remat, dtype=dtype, rngs=rngs)
    self.out_norm = nnx.RMSNorm(width, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(width, 2 * channels, kernel_init=nnx.initializers.zeros,
                           bias_init=nnx.initializers.zeros, dtype=jnp.float32, rngs=rngs)

  def _condition(self, t, num_steps):
    return self.condition([1000.0 * t, num_steps])

  def _affine(self, hidden, t):
    """Hidden states -> bounded, time-gated (a, b) in float32."""
    params = self.head(self.out_norm(hidden).astype(jnp.float32))
    a, b = jnp.split(params, 2, axis=-1)
    gate = (1.0 - jnp.asarray(t, jnp.float32))[:, None, None]
    a = self.scale_bound * jnp.tanh(a / self.scale_bound)
    return gate * a, gate * b

  def shift_params(self, x, t, num_steps):
    """(a, b) for every token from the tokens before it: [batch, tokens, channels] each."""
    batch = x.shape[0]
    start = jnp.broadcast_to(self.start[...], (batch, 1, self.start.shape[-1]))
    inputs = jnp.concatenate([start.astype(self.dtype), self.embed(x[:, :-1])], axis=1)
    inputs = inputs + self.position[...] + self._condition(t, num_steps)[:, None]
    return self._affine(self.transformer(inputs.astype(self.dtype), is_causal=True), t)

  def _mix(self, x, t, sign: float):
    """x [batch, tokens, channels] -> expm(sign (1 - t) M) x per token, and its log-det [batch]
    (each token's; the map's is tokens times it)."""
    gate = (1.0 - jnp.asarray(t, jnp.float32)) * sign
    matrices = jax.vmap(jax.scipy.linalg.expm)(gate[:, None, None] * self.mixing[...])
    logdet = gate * jnp.trace(self.mixing[...])  # per token
    return jnp.einsum("bij,bnj->bni", matrices, x.astype(jnp.float32)), logdet

  def forward(self, x, t, num_steps):
    """x -> (z, per-token log-det [batch, tokens]). The Jacobian is block-triangular over the
    tokens, so log|det| is the sum of the diagonal blocks' log-dets, one per token."""
    logdet = jnp.zeros(x.shape[:2], jnp.float32)
    if self.mixing is not None:
      x, mixing_logdet = self._mix(x, t, 1.0)
      logdet += mixing_logdet[:, None]
    a, b = self.shift_params(x, t, num_steps)
    z = (x.astype(jnp.float32) - b) * jnp.exp(-a)
    return z, logdet - jnp.sum(a, axis=2)

  def unmix(self, x, t):
    """The inverse of the channel mixing (identity without it)."""
    return x if self.mixing is None else self._mix(x, t, -1.0)[0]

  def inverse(self, z, t, num_steps):
    """z -> x token by token with a preallocated KV cache (lax.scan over tokens)."""
    batch, num_tokens, _ = z.shape
    cond = self._condition(t, num_steps)
    cache = self.transformer.init_cache(batch, num_tokens, self.dtype)
    start = jnp.broadcast_to(self.start[...], (batch, self.start.shape[-1]))

    def step(carry, inputs):
      prev_x, cache = carry
      index, z_i, position = inputs
      token = jnp.where(index == 0, start.astype(self.dtype), self.embed(prev_x))
      token = (token + position + cond)[:, None].astype(self.dtype)
      hidden, cache = self.transformer.decode(token, cache, index)
      a, b = self._affine(hidden, t)
      x_i = z_i[:, None].astype(jnp.float32) * jnp.exp(a) + b
      return (x_i[:, 0], cache), x_i[:, 0]

    init = (jnp.zeros((batch, self.channels), jnp.float32), cache)
    xs = (jnp.arange(num_tokens), jnp.swapaxes(z, 0, 1), self.position[...])
    _, x = jax.lax.scan(step, init, xs)
    return self.unmix(jnp.swapaxes(x, 0, 1), t)

  def jacobi_inverse(self, z, t, num_steps, tolerance: float):
    """z -> (x, iterations) by Jacobi fixed-point iteration x <- z exp(a(x)) + b(x), every token
    updated at once from the previous iterate (one causal forward pass per iteration, no cache).

    Token i's (a, b) depend on tokens < i only, so after k iterations the first k tokens are
    exact: the iteration is exact after at most `tokens` iterations, and it stops earlier once
    an iteration moves no value by more than `tolerance` (0: run to the exact fixed point).
    """
    z = z.astype(jnp.float32)

    def iterate(carry):
      iteration, x, _ = carry
      a, b = self.shift_params(x, t, num_steps)
      x_next = z * jnp.exp(a) + b
      return iteration + 1, x_next, jnp.max(jnp.abs(x_next - x))

    def unfinished(carry):
      iteration, _, change = carry
      return (iteration < self.num_tokens) & (change > tolerance)

    iterations, x, _ = jax.lax.while_loop(unfinished, iterate,
                                          (jnp.int32(0), z, jnp.float32(jnp.inf)))
    return self.unmix(x, t), iterations

  def reference_inverse(self, z, t, num_steps):
    """Inverse by full recomputation at every token (slow; the test oracle for `inverse`)."""

    def step(i, x):
      a, b = self.shift_params(x, t, num_steps)
      x_i = z[:, i].astype(jnp.float32) * jnp.exp(a[:, i]) + b[:, i]
      return x.at[:, i].set(x_i)

    return self.unmix(jax.lax.fori_loop(0, z.shape[1], step, jnp.zeros(z.shape, jnp.float32)), t)


class Transporter(nnx.Module):
  """A stack of `num_blocks` flow blocks with alternating scan direction (stacked, scanned).

  num_blocks = 0 is the identity (log-det 0): the NTM without a transporter, an ablation."""

  def __init__(self, *, channels: int, num_tokens: int, num_blocks: int, depth: int,
               width: int, num_heads: int, num_kv_heads: int, scale_bound: float = 2.0,
               channel_mixing: bool = False, remat: bool = False, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if num_blocks < 0:
      raise ValueError(f"transporter num_blocks must be >= 0 (0: identity), got {num_blocks}")
    self.channels, self.num_tokens, self.num_blocks = channels, num_tokens, num_blocks
    self.blocks = None if num_blocks == 0 else layers.stacked(
        lambda r: FlowBlock(channels, num_tokens, width, depth, num_heads, num_kv_heads,
                            scale_bound=scale_bound, channel_mixing=channel_mixing, remat=remat,
                            dtype=dtype, rngs=r),
        num_blocks, rngs)

  def _check(self, x):
    if x.ndim != 3 or x.shape[1:] != (self.num_tokens, self.channels):
      raise ValueError(f"transporter expects [batch, {self.num_tokens}, {self.channels}] "
                       f"tokens, got shape {x.shape}")

  def _final_orientation(self, x):
    """Undo the trailing flip when the number of blocks is odd."""
    return jnp.flip(x, axis=1) if self.num_blocks % 2 else x

  def forward(self, x, t, num_steps):
    """x [batch, tokens, channels] at time t -> (u, per-token log-det [batch, tokens]), float32.

    Entry n sums, over the blocks, the log-det of each block's diagonal Jacobian block at the
    token that is image position n: an exact split of log|det du/dx| over positions (their sum),
    the spatial detail that out-of-distribution scores use (evaluate/ood.py)."""
    self._check(x)
    logdet = jnp.zeros(x.shape[:2], jnp.float32)
    if self.blocks is None:
      return x.astype(jnp.float32), logdet

    def body(block, carry, _):
      x, logdet = carry
      z, block_logdet = block.forward(x, t, num_steps)
      return (jnp.flip(z, axis=1), jnp.flip(logdet + block_logdet, axis=1)), None

    (u, logdet), _ = layers.scan_stacked(body, self.blocks, (x.astype(jnp.float32), logdet))
    return self._final_orientation(u), self._final_orientation(logdet)

  def __call__(self, x, t, num_steps):
    """x [batch, tokens, channels] at time t -> (u, log|det du/dx| [batch]), float32."""
    u, logdet = self.forward(x, t, num_steps)
    return u, jnp.sum(logdet, axis=1)

  def _invert(self, u, t, num_steps, method: str, tolerance: float = 0.0):
    """(x, per-block iteration counts [num_blocks]; the token count for the sequential ones)."""
    self._check(u)
    if method not in INVERSES + ("reference",):
      raise ValueError(f"transporter inverse must be one of {INVERSES}, got {method!r}")
    if self.blocks is None:
      return u.astype(jnp.float32), jnp.zeros((0,), jnp.int32)

    def body(block, carry, _):
      z = jnp.flip(carry, axis=1)
      if method == "jacobi":
        return block.jacobi_inverse(z, t, num_steps, tolerance)
      x = (block.reference_inverse if method == "reference" else block.inverse)(z, t, num_steps)
      return x, jnp.int32(self.num_tokens)

    init = self._final_orientation(u.astype(jnp.float32))
    return layers.scan_stacked(body, self.blocks, init, reverse=True)

  def inverse(self, u, t, num_steps, method: str = "kv_cache", tolerance: float = 0.0):
    """u -> x, blocks in reverse order: 'kv_cache' decodes token by token with a KV cache;
    'jacobi' updates all tokens of a block at once until no value moves by more than
    `tolerance` (exact after at most `tokens` iterations per block)."""
    return self._invert(u, t, num_steps, method, tolerance)[0]

  def jacobi_inverse(self, u, t, num_steps, tolerance: float = 0.0):
    """(x, the Jacobi iterations each block took [num_blocks], in block order)."""
    return self._invert(u, t, num_steps, "jacobi", tolerance)

  def reference_inverse(self, u, t, num_steps):
    """u -> x by full recomputation per token; the oracle for `inverse` in tests."""
    return self._invert(u, t, num_steps, "reference")[0]
