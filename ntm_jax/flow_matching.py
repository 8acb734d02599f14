"""Flow-matching baseline and the network an NTM can start from (docs/method.md §7, paper 3.3).

x_t = (1 - t) x_0 + t eps and the velocity target v* = eps - x_0, so x0_hat = x_t - t v. The
velocity network is the predictor's backbone without the (s, T) embedding plus a linear head:
the same modules, names and shapes as the NTM predictor's posterior form, which is what lets
`init_ntm_from_fm` copy it over. Training draws t from the SD3-shifted distribution the NTM's
schedule uses. Samplers: Euler and Heun (classifier-free guidance on the velocity) and the
Gaussian posterior sampler, which an FM-initialized NTM reproduces exactly at step 0.

Shapes: x_t: [batch, tokens, channels]; t: [batch]; text: [batch, text_len, text_dim].
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ntm_jax import ntm
from ntm_jax import predictor as predictor_lib
from ntm_jax import text_to_image
from ntm_jax import trajectory

SAMPLERS = ("euler", "heun", "posterior")


class FlowMatching(text_to_image.TextToImageModel):
  """v(x_t, t, y): the predictor backbone (sized by config.predictor) and a velocity head."""

  def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    """config: the `model` section with image_shape (the NTM's, transporter unused)."""
    self._init_geometry(config)
    pc = config.predictor
    self.backbone = predictor_lib.Backbone(
        channels=self.channels, grid_shape=self.grid_shape, width=pc.width, depth=pc.depth,
        num_heads=pc.num_heads, num_kv_heads=pc.num_kv_heads, text_dim=self.text_dim,
        remat=config.remat, condition_on_target=False, dtype=self.dtype, rngs=rngs)
    self.head = nnx.Linear(pc.width, self.channels, dtype=jnp.float32, rngs=rngs)
    self._init_text(config, rngs)

  def __call__(self, x_t, t, text, text_mask):
    """The velocity [batch, tokens, channels], float32."""
    return self.head(self.backbone(x_t, t, t, t, text, text_mask))  # (s, T) are not used


def sample_times(rng, batch: int, num_tokens: int):
  """t = sigma(tau), tau ~ U(0, 1): the SD3 shift of the NTM's schedule, as a density."""
  return trajectory.shift_time(jax.random.uniform(rng, (batch,), jnp.float32), num_tokens)


def loss(fm: FlowMatching, images, text, text_mask, rng, *, cfg_dropout: float = 0.0):
  """Per-example mean squared velocity error [batch] (conditional flow matching)."""
  x0 = fm.tokens(images)
  rng_t, rng_noise, rng_drop = jax.random.split(rng, 3)
  if cfg_dropout > 0:
    text, text_mask = text_to_image.drop_condition(fm, rng_drop, text, text_mask, cfg_dropout)
  t = sample_times(rng_t, x0.shape[0], fm.num_tokens)
  noise = jax.random.normal(rng_noise, x0.shape, jnp.float32)
  x_t = (1.0 - t[:, None, None]) * x0 + t[:, None, None] * noise
  error = fm(x_t, t, text, text_mask) - (noise - x0)
  return jnp.mean(jnp.square(error), axis=(1, 2))


def guided_velocity(fm: FlowMatching, x_t, t, text, text_mask, guidance: float):
  """(1 + w) v(x, t, y) - w v(x, t, null); w = 0 skips the unconditional pass."""
  if guidance == 0:
    return fm(x_t, t, text, text_mask)
  null_text, null_mask = fm.null_condition(*text.shape[:2])
  both = lambda a, b: jnp.concatenate([a, b], axis=0)
  v = fm(both(x_t, x_t), both(t, t), both(text, null_text), both(text_mask, null_mask))
  batch = x_t.shape[0]
  return (1.0 + guidance) * v[:batch] - guidance * v[batch:]


def _ode(fm, rng, text, text_mask, num_steps: int, guidance: float, heun: bool):
  ntm.validate_guidance(guidance)
  batch = text.shape[0]
  times = trajectory.shifted_schedule(num_steps, 0.0, fm.num_tokens)
  velocity = lambda x, t: guided_velocity(fm, x, jnp.full((batch,), t), text, text_mask,
                                          guidance)

  def step(x, k):
    t, s = times[k], times[k - 1]
    v = velocity(x, t)
    if heun:  # trapezoidal correction with the velocity at the Euler prediction
      v = 0.5 * (v + velocity(x + (s - t) * v, s))
    return x + (s - t) * v, None

  x = jax.random.normal(rng, (batch, fm.num_tokens, fm.channels), jnp.float32)
  x, _ = jax.lax.scan(step, x, jnp.arange(num_steps, 0, -1))
  return fm.images(x)


def sample_euler(fm: FlowMatching, rng, text, text_mask, *, num_steps: int,
                 guidance: float = 0.0):
  """Euler steps of the probability-flow ODE from t = 1 to 0 on the shifted schedule."""
  return _ode(fm, rng, text, text_mask, num_steps, guidance, heun=False)


def sample_heun(fm: FlowMatching, rng, text, text_mask, *, num_steps: int,
                guidance: float = 0.0):
  """Heun (2nd order, two velocity evaluations per step) on the same schedule."""
  return _ode(fm, rng, text, text_mask, num_steps, guidance, heun=True)


def sample_posterior(fm: FlowMatching, rng, text, text_mask, *, num_steps: int,
                     guidance: float = 0.0, t_min: float = 0.0, temperature: float = 1.0,
                     final_temperature: float = -1.0, sigma_floor: float = 1e-3):
  """The Gaussian posterior sampler: x_s ~ N(A x_t + B x0_hat, C^2 + floor^2) down the NTM's
  schedule. An FM-initialized NTM (identity transporter, zero delta head) is exactly this."""
  ntm.validate_guidance(guidance)
  batch = text.shape[0]

  def gaussian(x, t, s):
    v = guided_velocity(fm, x, t, text, text_mask, guidance)
    return predictor_lib.posterior_gaussian(x, t, s, v, sigma_floor)

  x = ntm.gaussian_chain(gaussian, rng, (batch, fm.num_tokens, fm.channels),
                         trajectory.shifted_schedule(num_steps, t_min, fm.num_tokens),
                         temperature=temperature, final_temperature=final_temperature)
  return fm.images(x)


def posterior_mean_reference(fm: FlowMatching, sigma_floor: float = 1e-3):
  """mu_FM(x_t, t, s, y) = A x_t + B (x_t - t v(x_t)) of a frozen FM on x-space inputs: the
  reference of the mean-alignment loss (ntm.trajectory_nll's mean_reference)."""
  def reference(x_t, t, s, text, text_mask):
    v = jax.lax.stop_gradient(fm(x_t, t, text, text_mask))
    return predictor_lib.posterior_gaussian(x_t, t, s, v, sigma_floor)[0]
  return reference


def alignment_weight(step, weight: float, decay_steps: int):
  """lambda(step) = weight * cosine decay to 0 at decay_steps (paper: weight 2.5)."""
  progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(decay_steps, 1), 0.0, 1.0)
  return weight * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def init_ntm_from_fm(ntm_params: nnx.State, fm_params: nnx.State) -> nnx.State:
  """NTM parameters with the FM network in the predictor (posterior form) and the text path.

  Copied: text encoder, null text, predictor backbone (all but the zero (s, T) embedding) and
  the velocity head. Kept: the transporter (identity at init) and the zero delta head.
  """
  ntm_flat = dict(nnx.to_flat_state(ntm_params))
  if ("predictor", "delta_head", "kernel") not in ntm_flat:
    raise ValueError("FM initialization needs model.predictor.parametrization='posterior'")
  mapping = {("backbone",): ("predictor", "backbone"), ("head",): ("predictor", "head"),
             ("text_encoder",): ("text_encoder",), ("null_text",): ("null_text",)}
  for path, value in nnx.to_flat_state(fm_params):
    prefix = next((p for p in mapping if path[:len(p)] == p), None)
    if prefix is None:
      raise ValueError(f"FM parameter {'/'.join(map(str, path))} has no place in the NTM")
    target = mapping[prefix] + path[len(prefix):]
    if target not in ntm_flat:
      raise ValueError(f"FM parameter {'/'.join(map(str, path))} has no NTM counterpart "
                       f"{'/'.join(map(str, target))}: do model configs match?")
    if ntm_flat[target].shape != value.shape:
      raise ValueError(f"shape mismatch for {'/'.join(map(str, target))}: NTM "
                       f"{ntm_flat[target].shape} vs FM {value.shape}")
    ntm_flat[target] = value
  return nnx.from_flat_state(ntm_flat)
