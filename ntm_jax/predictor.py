"""The predictor f_P: a deep non-causal Transformer giving N(mu_P, sigma_P^2) over u_s.

Paper Eq. 3.1 and Table 4. Input: the tokens of u_t (the noisier level only: the Markov
factorization forbids seeing u_s or any cleaner level), text tokens concatenated in-context,
sinusoidal embeddings of t, s and T, 2D RoPE over the token grid, grouped-query attention.

Two parametrizations (docs/method.md §3):
  direct:     (mu, log sigma) from a zero-initialized head;
  posterior:  u0_hat = u_t - t v,  mu = A u_t + B u0_hat (+ delta_mu),
              sigma = sqrt(C^2 + B^2 V(t) + floor^2) exp(delta), with (A, B, C) from Prop. 2 and
              (delta_mu, delta) from a zero-initialized head (delta_mean=False: no delta_mu, the
              paper's "no delta mean" option). With data_variance = 0 (V = 0) this is the
              flow-matching posterior sampler at initialization; C is floored so sigma stays
              finite as s -> 0. From scratch, u0_hat is still wrong by about the data's spread,
              and C -> 0 near t_min turns that into thousands of nats/dim at step 0: data_variance
              = var > 0 adds B^2 V(t), V(t) = var t^2 / ((1 - t)^2 var + t^2), the variance of x_0
              given x_t under a N(0, var) prior, the uncertainty a fresh u0_hat really has.

The embedding of (s, T) is zero-initialized, so a fresh backbone is a function of (u_t, t, y)
only, which is what a flow-matching velocity network is (flow_matching.py builds its backbone
without that embedding, and the FM -> NTM initialization copies everything else).

Shapes: u_t: [batch, tokens, channels]; t, s, num_steps: [batch]; text: [batch, text_len,
text_dim]; text_mask: [batch, text_len] bool. Outputs are float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import layers
from ntm_jax import trajectory

PARAMETRIZATIONS = ("direct", "posterior")


def grid_positions(grid_shape):
  """(row, col) of each token in row-major order: [tokens, 2]."""
  rows, cols = np.meshgrid(np.arange(grid_shape[0]), np.arange(grid_shape[1]), indexing="ij")
  return jnp.asarray(np.stack([rows.ravel(), cols.ravel()], axis=-1), jnp.int32)


def _zero_linear(i, o, rngs):
  return nnx.Linear(i, o, kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros,
                    dtype=jnp.float32, rngs=rngs)


class Backbone(nnx.Module):
  """Non-causal Transformer over [image tokens; text tokens], conditioned on (t, s, T).

  Returns float32 hidden states of the image tokens; heads on top make the predictor (and the
  learned denoiser of ntm_jax/denoise.py).
  """

  def __init__(self, *, channels: int, grid_shape: tuple, width: int, depth: int,
               num_heads: int, num_kv_heads: int, text_dim: int, remat: bool = False,
               condition_on_target: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    """condition_on_target=False: no (s, T) embedding (a flow-matching velocity backbone)."""
    self.channels, self.grid_shape, self.width = channels, tuple(grid_shape), width
    self.num_tokens = int(np.prod(grid_shape))
    self.text_dim, self.dtype = text_dim, dtype
    self.embed = nnx.Linear(channels, width, dtype=dtype, rngs=rngs)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (self.num_tokens, width)) * 0.02)
    self.text_embed = nnx.Linear(text_dim, width, dtype=dtype, rngs=rngs)
    self.time_embed = layers.ConditionEmbedding(1, width, dtype=dtype, rngs=rngs)
    self.target_embed = layers.ConditionEmbedding(
        2, width, zero_init=True, dtype=dtype, rngs=rngs) if condition_on_target else None
    self.transformer = layers.TransformerStack(depth, width, num_heads, num_kv_heads,
                                               remat=remat, dtype=dtype, rngs=rngs)
    self.out_norm = nnx.LayerNorm(width, use_scale=False, use_bias=False, dtype=dtype, rngs=rngs)
    self.out_modulation = _zero_linear(width, 2 * width, rngs)

  def check_inputs(self, u_t, text, text_mask):
    if u_t.ndim != 3 or u_t.shape[1:] != (self.num_tokens, self.channels):
      raise ValueError(f"expected u_t of shape [batch, {self.num_tokens}, {self.channels}], "
                       f"got {u_t.shape}")
    if text.ndim != 3 or text.shape[0] != u_t.shape[0] or text.shape[-1] != self.text_dim:
      raise ValueError(f"expected text of shape [{u_t.shape[0]}, length, {self.text_dim}], "
                       f"got {text.shape}")
    if text_mask.shape != text.shape[:2]:
      raise ValueError(f"text_mask shape {text_mask.shape} must equal text shape[:2] "
                       f"{text.shape[:2]}")

  def __call__(self, u_t, t, s, num_steps, text, text_mask):
    """Hidden states [batch, tokens, width] (float32) of the image tokens."""
    self.check_inputs(u_t, text, text_mask)
    batch = u_t.shape[0]
    cond = self.time_embed([1000.0 * t])
    if self.target_embed is not None:
      cond = cond + self.target_embed([1000.0 * s, num_steps])
    image = self.embed(u_t.astype(self.dtype)) + self.position[...] + cond[:, None]
    tokens = jnp.concatenate([image, self.text_embed(text.astype(self.dtype))], axis=1)
    # Text tokens sit at the RoPE origin (as in FLUX); image tokens at their (row, col).
    positions = jnp.concatenate(
        [grid_positions(self.grid_shape), jnp.zeros((text.shape[1], 2), jnp.int32)], axis=0)
    positions = jnp.broadcast_to(positions, (batch,) + positions.shape)
    keys = jnp.concatenate([jnp.ones((batch, self.num_tokens), bool), text_mask], axis=1)
    hidden = self.transformer(tokens.astype(self.dtype), positions=positions,
                              mask=keys[:, None, None, :])
    shift, scale = jnp.split(self.out_modulation(cond.astype(jnp.float32)), 2, axis=-1)
    hidden = self.out_norm(hidden[:, :self.num_tokens]).astype(jnp.float32)
    return hidden * (1.0 + scale[:, None]) + shift[:, None]


class Predictor(nnx.Module):
  """The backbone plus the head of the chosen parametrization -> per-token Gaussian."""

  def __init__(self, *, channels: int, grid_shape: tuple, width: int, depth: int,
               num_heads: int, num_kv_heads: int, text_dim: int,
               parametrization: str = "direct", sigma_floor: float = 1e-3,
               data_variance: float = 0.0, delta_mean: bool = True, remat: bool = False,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if parametrization not in PARAMETRIZATIONS:
      raise ValueError(f"predictor parametrization must be one of {PARAMETRIZATIONS}, "
                       f"got {parametrization!r}")
    if not (sigma_floor > 0 and data_variance >= 0):
      raise ValueError(f"predictor needs sigma_floor > 0 and data_variance >= 0, got "
                       f"{sigma_floor!r} and {data_variance!r}")
    self.parametrization, self.sigma_floor = parametrization, sigma_floor
    self.data_variance = data_variance
    self.delta_mean = delta_mean
    self.backbone = Backbone(channels=channels, grid_shape=grid_shape, width=width, depth=depth,
                             num_heads=num_heads, num_kv_heads=num_kv_heads, text_dim=text_dim,
                             remat=remat, dtype=dtype, rngs=rngs)
    if parametrization == "direct":
      self.head = _zero_linear(width, 2 * channels, rngs)
    else:
      self.head = nnx.Linear(width, channels, dtype=jnp.float32, rngs=rngs)  # the velocity
      self.delta_head = _zero_linear(width, (2 if delta_mean else 1) * channels, rngs)

  def __call__(self, u_t, t, s, num_steps, text, text_mask):
    """-> (mu, log_sigma), each [batch, tokens, channels] float32."""
    hidden = self.backbone(u_t, t, s, num_steps, text, text_mask)
    if self.parametrization == "direct":
      mu, log_sigma = jnp.split(self.head(hidden), 2, axis=-1)
      return mu, log_sigma
    delta = self.delta_head(hidden)
    delta_mu, delta = jnp.split(delta, 2, axis=-1) if self.delta_mean else (0.0, delta)
    mu, log_sigma = posterior_gaussian(u_t, t, s, self.head(hidden), self.sigma_floor,
                                       self.data_variance)
    return mu + delta_mu, log_sigma + delta


def x0_variance(t, data_variance: float):
  """Var(x_0 | x_t) per dimension when x_0 ~ N(0, data_variance): [batch] for t [batch]."""
  return data_variance * t**2 / ((1.0 - t) ** 2 * data_variance + t**2)


def posterior_gaussian(x_t, t, s, velocity, sigma_floor: float, data_variance: float = 0.0):
  """(mu, log sigma) of the flow-matching Gaussian posterior q(x_s | x_t, x0_hat = x_t - t v).

  x_t, velocity: [batch, tokens, channels]; t, s: [batch].
  sigma^2 = C^2 + B^2 x0_variance(t) + floor^2 (the FM posterior sampler's C^2 + floor^2 at
  data_variance = 0).
  """
  a, b, c2 = trajectory.posterior_coefficients(t, s)
  variance = c2 + b**2 * x0_variance(t, data_variance) + sigma_floor**2
  a, b, variance = (v[:, None, None] for v in (a, b, variance))
  x_t = x_t.astype(jnp.float32)
  x0_hat = x_t - t[:, None, None] * velocity
  return a * x_t + b * x0_hat, 0.5 * jnp.log(variance)
