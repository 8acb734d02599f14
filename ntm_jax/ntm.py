"""Normalizing Trajectory Model: exact trajectory likelihood (Alg. 1) and sampling (Alg. 2).

p(x_t0, ..., x_tT) = N(x_tT; 0, I) prod_k p(x_t(k-1) | x_tk)              (Eq. 3.4)
log p(x_s | x_t) = log N(f_T(x_s, s); mu_P, sigma_P^2) + log|det df_T(x_s, s)/dx_s|   (Eq. A.4)

Every NLL here is the FULL negative log-likelihood in nats, with the (D/2) log 2 pi constants and
the N(0, I) term of the top level, per example. Levels are ordered cleanest (t_0 = t_min) to
noisiest (t_T = 1). The per-level breakdown puts at level k the factor whose target is x_tk
(level T: the prior). `nats_per_dim` divides by the dimension D of ONE image.

Beyond the paper, the marginal of x_t0 is bounded with the forward chain q:
  -log p(x_t0) <= E_q[-log p(x_t0..x_tT) + log q(x_t1..x_tT | x_t0)].
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ntm_jax import predictor as predictor_lib
from ntm_jax import text_to_image
from ntm_jax import trajectory
from ntm_jax import transporter as transporter_lib

MODES = ("end_to_end", "pair_wise")


class NTM(text_to_image.TextToImageModel):
  """Transporter + predictor + the learned null text condition used for CFG."""

  def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    """config: the `model` section (see configs/t2i.py) with image_shape."""
    self._init_geometry(config)
    tc, pc = config.transporter, config.predictor
    self.transporter = transporter_lib.Transporter(
        channels=self.channels, num_tokens=self.num_tokens, num_blocks=tc.num_blocks,
        depth=tc.depth, width=tc.width, num_heads=tc.num_heads, num_kv_heads=tc.num_kv_heads,
        scale_bound=tc.scale_bound, channel_mixing=tc.get("channel_mixing", False),
        remat=config.remat, dtype=self.dtype, rngs=rngs)
    self.predictor = predictor_lib.Predictor(
        channels=self.channels, grid_shape=self.grid_shape, width=pc.width, depth=pc.depth,
        num_heads=pc.num_heads, num_kv_heads=pc.num_kv_heads, text_dim=self.text_dim,
        parametrization=pc.parametrization, sigma_floor=pc.sigma_floor,
        data_variance=pc.get("data_variance", 0.0),
        delta_mean=pc.get("delta_mean", True), remat=config.remat, dtype=self.dtype, rngs=rngs)
    self._init_text(config, rngs)


def sample_t_min(rng, batch: int, t_min_range):
  """t_min ~ U[lo, hi] per example (replaces TarFlow's noise augmentation)."""
  lo, hi = t_min_range
  return jax.random.uniform(rng, (batch,), jnp.float32, lo, hi)


def validate_t_min_range(t_min_range) -> None:
  lo, hi = t_min_range
  if not 0.0 <= lo <= hi < 1.0:
    raise ValueError(f"t_min_range must satisfy 0 <= lo <= hi < 1, got {tuple(t_min_range)}")


def level_weights(num_steps: int, power: float) -> jax.Array:
  """Loss weights of the T factors, cleanest first: w_k proportional to ((k + 1) / T)^power, mean 1.

  The exact NLL of a Gaussian step scales its mean's gradient by 1/sigma^2, so the clean levels
  (small sigma) dominate a shared backbone; power > 0 moves weight to the noisy levels, which
  decide layout and counts. Any positive weighting is minimized by the true conditionals."""
  k = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
  profile = (k / num_steps) ** power
  return profile / jnp.mean(profile)


def _level_profile(num_steps, power: float, max_steps: int):
  """((k + 1) / T)^power for k < T, else 0, per example: [b, max_steps] for T [b] (floats)."""
  k = jnp.arange(1, max_steps + 1, dtype=jnp.float32)
  return jnp.where(k <= num_steps[:, None], (k / num_steps[:, None]) ** power, 0.0)


def relative_level_weight(level, num_steps, power: float, *, max_steps: int):
  """level_weights(T, power)[level] per example, for per-example level [b] and T [b] (floats)."""
  profile = _level_profile(num_steps, power, max_steps)
  return ((level + 1.0) / num_steps) ** power / (profile.sum(1) / num_steps)


def _sample_levels(rng, num_steps, power: float, max_steps: int):
  """k - 1 in [0, T) per example, with probability level_weights(T, power)[k - 1] / T."""
  if power == 0.0:  # uniform (the historical draw, kept bit for bit)
    return jnp.floor(jax.random.uniform(rng, num_steps.shape) * num_steps)
  logits = jnp.log(_level_profile(num_steps, power, max_steps))  # -inf beyond T
  return jax.random.categorical(rng, logits).astype(jnp.float32)


def weighted_objective(level_nll, power: float):
  """sum_k w_k level_nll[:, k] over the T factors (level_weights), plus the prior level."""
  if power == 0.0:
    return level_nll.sum(-1)
  w = level_weights(level_nll.shape[1] - 1, power)
  return jnp.sum(level_nll[:, :-1] * w, axis=-1) + level_nll[:, -1]


def _prior_nll(x):
  return trajectory.gaussian_nll(x, 0.0, 0.0)


def _flatten_levels(x):
  return x.reshape((-1,) + x.shape[2:])


def trajectory_nll(model: NTM, images, text, text_mask, rng, *, num_steps: int,
                   t_min_range=(0.0, 0.05), cfg_dropout: float = 0.0, mean_reference=None,
                   level_weight_power: float = 0.0, per_token: bool = False):
  """End-to-end exact NLL of one sampled forward trajectory per example, all T pairs at once.

  Args:
    images: [batch, height, width, channels], data scaled to about [-1, 1].
    text, text_mask: [batch, text_len, text_dim], [batch, text_len].
    num_steps: T, a Python int (one T per batch in this mode).
    mean_reference: optional (x_t, t, s, text, mask) -> reference mean of x_s in x-space (the
      frozen FM posterior mean); adds mean_alignment [b] = sum_k ||mu_P - reference||^2.
    level_weight_power: the training objective weighs the factors by level_weights.
    per_token: also return level_token_nll [b, T+1, tokens] (see `nll_of_trajectory`).

  Returns a dict of per-example float32 arrays:
    nll [b]: -log p(x_t0..x_tT); objective [b]: the level-weighted NLL (the nll at power 0);
    level_nll [b, T+1]; logdet [b, T] (transporter, levels 0..T-1);
    bound [b] and level_bound [b, T+1]: the marginal bound on -log p(x_t0) and its per-level
    terms; times [b, T+1].
  """
  trajectory.validate_num_steps(num_steps)
  validate_t_min_range(t_min_range)
  x0 = model.tokens(images)
  batch = x0.shape[0]
  rng_t, rng_traj, rng_drop = jax.random.split(rng, 3)
  if cfg_dropout > 0:
    text, text_mask = text_to_image.drop_condition(model, rng_drop, text, text_mask,
                                                   cfg_dropout)
  t_min = sample_t_min(rng_t, batch, t_min_range)
  times = trajectory.shifted_schedule(num_steps, t_min, model.num_tokens)
  x = trajectory.forward_trajectory(rng_traj, x0, times)
  out = nll_of_trajectory(model, x, times, text, text_mask, mean_reference, per_token=per_token)
  out["objective"] = weighted_objective(out["level_nll"], level_weight_power)
  return out


def nll_of_trajectory(model: NTM, x, times, text, text_mask, mean_reference=None, *,
                      per_token: bool = False):
  """Exact NLL terms of given trajectories x [batch, T+1, tokens, channels] at times [b, T+1].

  See `trajectory_nll` for the returned dict. per_token adds level_token_nll [b, T+1, tokens]:
  each level's factor split over image positions (the Gaussian term per token minus the
  transporter's per-token log-det); it sums over tokens to level_nll.
  """
  batch, num_levels = times.shape
  num_steps = num_levels - 1
  # Transporter on every level but the top, where it is the identity.
  steps = jnp.full((batch * num_steps,), num_steps, jnp.float32)
  u_low, token_logdet = model.transporter.forward(_flatten_levels(x[:, :-1]),
                                                  _flatten_levels(times[:, :-1]), steps)
  logdet = jnp.sum(token_logdet, axis=-1)
  u = jnp.concatenate([u_low.reshape(x[:, :-1].shape), x[:, -1:]], axis=1)

  # Teacher forcing: every pair (t_k -> t_(k-1)) is an independent example of the batch axis,
  # so the prediction for level k - 1 sees only u_tk.
  pair_text = jnp.repeat(text, num_steps, axis=0), jnp.repeat(text_mask, num_steps, axis=0)
  t, s = _flatten_levels(times[:, 1:]), _flatten_levels(times[:, :-1])
  mu, log_sigma = model.predictor(_flatten_levels(u[:, 1:]), t, s, steps, *pair_text)
  factor = trajectory.gaussian_nll(_flatten_levels(u[:, :-1]), mu, log_sigma) - logdet
  level_nll = jnp.concatenate([factor.reshape(batch, num_steps), _prior_nll(x[:, -1])[:, None]],
                              axis=1)
  log_q = trajectory.forward_log_prob(x, times)
  level_bound = level_nll + jnp.pad(log_q, ((0, 0), (1, 0)))
  out = {
      "nll": level_nll.sum(-1),
      "level_nll": level_nll,
      "logdet": logdet.reshape(batch, num_steps),
      "bound": level_bound.sum(-1),
      "level_bound": level_bound,
      "times": times,
  }
  if per_token:
    token_factor = trajectory.gaussian_nll(_flatten_levels(u[:, :-1]), mu, log_sigma,
                                           keep_axes=2) - token_logdet
    top = trajectory.gaussian_nll(x[:, -1], 0.0, 0.0, keep_axes=2)
    out["level_token_nll"] = jnp.concatenate(
        [token_factor.reshape(batch, num_steps, -1), top[:, None]], axis=1)
  if mean_reference is not None:
    reference = mean_reference(_flatten_levels(x[:, 1:]), t, s, *pair_text)
    out["mean_alignment"] = _squared_distance(mu, reference).reshape(batch, num_steps).sum(-1)
  return out


def _squared_distance(a, b):
  return jnp.sum(jnp.square(a - b), axis=tuple(range(1, a.ndim)))


def pair_wise_nll(model: NTM, images, text, text_mask, rng, *, num_steps_set=(4,),
                  t_min_range=(0.0, 0.05), cfg_dropout: float = 0.0, mean_reference=None,
                  level_weight_power: float = 0.0, level_sampling_power: float = 0.0):
  """One random pair per example, with T drawn per example from `num_steps_set`.

  The pair's level k - 1 is drawn with probability p = level_weights(T, level_sampling_power)/T
  (uniform at 0), where the training compute goes.

  Returns per-example arrays: factor [b] (-log p(x_t(k-1) | x_tk)), num_steps [b], level [b]
  (k - 1), and nll [b] = factor / p + E[-log N(x_tT; 0, I)], an unbiased estimate of the
  trajectory NLL (x_tT is exactly N(0, I) under q, so the prior's expectation is D/2 (1+log 2pi)),
  and objective [b], the same estimate of trajectory_nll's level-weighted objective.
  With mean_reference (see trajectory_nll), mean_alignment [b] = ||mu_P - reference||^2 / p, an
  unbiased estimate of the end-to-end sum.
  """
  for num_steps in num_steps_set:
    trajectory.validate_num_steps(num_steps)
  validate_t_min_range(t_min_range)
  x0 = model.tokens(images)
  batch = x0.shape[0]
  rng_t, rng_T, rng_k, rng_s, rng_n, rng_drop = jax.random.split(rng, 6)
  if cfg_dropout > 0:
    text, text_mask = text_to_image.drop_condition(model, rng_drop, text, text_mask,
                                                   cfg_dropout)
  t_min = sample_t_min(rng_t, batch, t_min_range)
  num_steps = jax.random.choice(rng_T, jnp.asarray(num_steps_set, jnp.float32), (batch,))
  max_steps = max(num_steps_set)
  k = _sample_levels(rng_k, num_steps, level_sampling_power, max_steps) + 1.0
  t = trajectory.shifted_time(k, num_steps, t_min, model.num_tokens)
  s = trajectory.shifted_time(k - 1.0, num_steps, t_min, model.num_tokens)
  # (x_s, x_t) from the marginal at s and one Markov step: the same law as in the full chain.
  x = trajectory.forward_trajectory(rng_s, x0, jnp.stack([s, t], axis=1))
  u, logdet = model.transporter(_flatten_levels(jnp.swapaxes(x, 0, 1)),
                                jnp.concatenate([s, t]), jnp.tile(num_steps, 2))
  u_s, u_t, logdet_s = u[:batch], u[batch:], logdet[:batch]
  mu, log_sigma = model.predictor(u_t, t, s, num_steps, text, text_mask)
  factor = trajectory.gaussian_nll(u_s, mu, log_sigma) - logdet_s
  prior_mean = 0.5 * model.num_dims * (1.0 + trajectory.LOG_2PI)
  weight = lambda power: (1.0 if power == 0.0 else
                          relative_level_weight(k - 1.0, num_steps, power, max_steps=max_steps))
  inverse_p = num_steps / weight(level_sampling_power)  # 1/p, the importance weight
  out = {"factor": factor, "num_steps": num_steps, "level": k - 1.0,
         "nll": inverse_p * factor + prior_mean,
         "objective": inverse_p * weight(level_weight_power) * factor + prior_mean}
  if mean_reference is not None:
    reference = mean_reference(x[:, 1], t, s, text, text_mask)
    out["mean_alignment"] = inverse_p * _squared_distance(mu, reference)
  return out


def nats_per_dim(nll, num_dims: int):
  return nll / num_dims


def bits_per_dim(nll, num_dims: int, data_scale: float | None = None):
  """NLL in bits per dimension. With data_scale (127.5 for 8-bit images mapped to [-1, 1]) the
  density is moved back to the data's own units by adding log(data_scale) per dimension."""
  nats = nll / num_dims + (math.log(data_scale) if data_scale else 0.0)
  return nats / math.log(2.0)


def guided_gaussian(mu_c, log_sigma_c, mu_u, log_sigma_u, guidance):
  """Gaussian of (1 + w) log p_c - w log p_u on the predictor's parameters (App. C.5).

  With r = clip((sigma_c / sigma_u)^2, 0, 1):  sigma = sigma_c / sqrt(1 + w - w r),
  mu = ((1 + w) mu_c - w r mu_u) / (1 + w - w r). Exactly the conditional at w = 0, and the
  normalized product p_c^(1+w) / p_u^w wherever sigma_c <= sigma_u.
  """
  w = guidance
  ratio = jnp.clip(jnp.exp(2.0 * (log_sigma_c - log_sigma_u)), 0.0, 1.0)
  precision_scale = 1.0 + w - w * ratio
  mu = ((1.0 + w) * mu_c - w * ratio * mu_u) / precision_scale
  return mu, log_sigma_c - 0.5 * jnp.log(precision_scale)


def validate_guidance(guidance) -> None:
  if not guidance >= 0:
    raise ValueError(f"guidance scale w must be >= 0, got {guidance!r}")


def guided_prediction(model: NTM, u_t, t, s, num_steps, text, text_mask, guidance: float):
  """Predictor Gaussian with CFG; w = 0 skips the unconditional pass."""
  if guidance == 0:
    return model.predictor(u_t, t, s, num_steps, text, text_mask)
  null_text, null_mask = model.null_condition(*text.shape[:2])
  both = lambda a, b: jnp.concatenate([a, b], axis=0)
  mu, log_sigma = model.predictor(both(u_t, u_t), both(t, t), both(s, s),
                                  both(num_steps, num_steps), both(text, null_text),
                                  both(text_mask, null_mask))
  batch = u_t.shape[0]
  return guided_gaussian(mu[:batch], log_sigma[:batch], mu[batch:], log_sigma[batch:], guidance)


def predictor_chain(model: NTM, rng, text, text_mask, *, num_steps: int, guidance: float = 0.0,
                    t_min: float = 0.0, temperature: float = 1.0, final_temperature: float = -1.0,
                    return_levels: bool = False):
  """Algorithm 2 up to u_t0: u_tT ~ N(0, I), then T Gaussian steps of the predictor.

  temperature scales the noise of every predictor step (1 = the model's own Gaussians, 0 = their
  means), the usual normalizing-flow trade of diversity for cleaner samples; final_temperature
  (>= 0) replaces it on the last step alone (-1: the same), which at 0 returns that step's mean,
  as DDPM's last step does.
  Returns u_t0: [batch, tokens, channels] float32, in the transporter's space, or with
  return_levels every level u_t0..u_tT: [batch, T + 1, tokens, channels].
  """
  validate_guidance(guidance)
  batch = text.shape[0]
  steps = jnp.full((batch,), num_steps, jnp.float32)

  def gaussian(u, t, s):
    return guided_prediction(model, u, t, s, steps, text, text_mask, guidance)

  return gaussian_chain(gaussian, rng, (batch, model.num_tokens, model.channels),
                        trajectory.shifted_schedule(num_steps, t_min, model.num_tokens),
                        temperature=temperature, final_temperature=final_temperature,
                        return_levels=return_levels)


def gaussian_chain(gaussian, rng, shape, times, *, temperature: float = 1.0,
                   final_temperature: float = -1.0, return_levels: bool = False):
  """A Markov chain of Gaussian steps down a schedule: z_T ~ N(0, I), then for k = T..1
  z_(k-1) = mu + temperature * sigma * eps with (mu, log sigma) = gaussian(z_k, t_k, t_(k-1))
  (t, s: [batch]); the last step (k = 1) scales its noise by final_temperature instead, unless
  that is -1. The NTM predictor chain and the flow-matching posterior sampler both run here, so
  the same rng gives them the same noise.
  """
  validate_temperatures(temperature, final_temperature)
  final = temperature if final_temperature == -1 else final_temperature
  batch, num_steps = shape[0], times.shape[-1] - 1
  rng_init, rng_steps = jax.random.split(rng)
  u = jax.random.normal(rng_init, shape, jnp.float32)

  def step(u, inputs):
    k, key = inputs
    t, s = jnp.full((batch,), times[k]), jnp.full((batch,), times[k - 1])
    mu, log_sigma = gaussian(u, t, s)
    scale = jnp.where(k == 1, final, temperature)
    u_s = mu + scale * jnp.exp(log_sigma) * jax.random.normal(key, u.shape)
    return u_s, u_s

  keys = jax.random.split(rng_steps, num_steps)
  u_top = u
  u, cleaner = jax.lax.scan(step, u, (jnp.arange(num_steps, 0, -1), keys))
  if not return_levels:
    return u
  # scan emits levels T-1, ..., 0; put them cleanest first and the start on top.
  return jnp.concatenate([jnp.flip(jnp.swapaxes(cleaner, 0, 1), axis=1), u_top[:, None]], axis=1)


def validate_temperatures(temperature, final_temperature=-1.0) -> None:
  if not temperature >= 0:
    raise ValueError(f"temperature must be >= 0, got {temperature!r}")
  if not (final_temperature >= 0 or final_temperature == -1):
    raise ValueError(f"final_temperature must be >= 0 (or -1: the temperature), got "
                     f"{final_temperature!r}")


def sample(model: NTM, rng, text, text_mask, *, num_steps: int, guidance: float = 0.0,
           t_min: float = 0.0, temperature: float = 1.0, final_temperature: float = -1.0,
           inverse: str = "kv_cache", jacobi_tolerance: float = 0.0):
  """Full NF sampler: predictor chain, then x_t0 = f_T^-1(u_t0), by KV-cached AR decoding or
  parallel Jacobi iteration (`inverse`, transporter.INVERSES).

  Returns images [batch, height, width, channels] (unclipped, data scale).
  """
  u = predictor_chain(model, rng, text, text_mask, num_steps=num_steps, guidance=guidance,
                      t_min=t_min, temperature=temperature, final_temperature=final_temperature)
  batch = u.shape[0]
  x = model.transporter.inverse(u, jnp.full((batch,), t_min, jnp.float32),
                                jnp.full((batch,), num_steps, jnp.float32), inverse,
                                jacobi_tolerance)
  return model.images(x)
