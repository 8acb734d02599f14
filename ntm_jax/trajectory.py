"""The coarse noising trajectory: schedule, Markov forward chain, posterior and covariance.

Paper Section 2 and Appendix A (Props. 1-3), App. C.4 for the shifted schedule. Time runs from
t = 0 (data) to t = 1 (noise); the marginal is x_t = (1 - t) x_0 + t eps.

Array conventions: a trajectory is [batch, levels, ...] with levels = T + 1 ordered from the
cleanest level t_0 = t_min to the noisiest t_T = 1; times are [batch, levels].
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


def validate_num_steps(num_steps) -> None:
  """Raises a clear error unless every requested step count T is an integer >= 1."""
  values = np.atleast_1d(np.asarray(num_steps))
  if values.size == 0 or not np.issubdtype(values.dtype, np.integer) or (values < 1).any():
    raise ValueError(f"num_steps (T) must be integers >= 1, got {num_steps!r}")


def validate_t_min(t_min) -> None:
  """Raises a clear error unless every t_min lies in [0, 1)."""
  values = np.atleast_1d(np.asarray(t_min, dtype=np.float64))
  if values.size == 0 or not ((values >= 0.0) & (values < 1.0)).all():
    raise ValueError(f"t_min must lie in [0, 1), got {t_min!r}")


def validate_schedule(times) -> None:
  """Checks a concrete schedule [..., levels]: starts in [0, 1), strictly increases, ends at 1."""
  times = np.asarray(times, dtype=np.float64)
  if times.shape[-1] < 2:
    raise ValueError(f"schedule needs at least 2 levels, got shape {times.shape}")
  validate_t_min(times[..., 0])
  if not (np.diff(times, axis=-1) > 0).all():
    raise ValueError(f"schedule must be strictly increasing, got {times.tolist()}")
  if not np.allclose(times[..., -1], 1.0):
    raise ValueError(f"schedule must end at t_T = 1, got {times.tolist()}")


def schedule_shift(num_tokens: int) -> float:
  """SD3 resolution shift mu = 0.5 + 0.65 (L - 256) / (4096 - 256) for L tokens (App. C.4)."""
  return 0.5 + 0.65 * (num_tokens - 256) / (4096 - 256)


def shift_time(tau, num_tokens: int):
  """The SD3 shift of a time tau in [0, 1]: e^mu tau / (e^mu tau + 1 - tau) (0 -> 0, 1 -> 1)."""
  tau = jnp.asarray(tau, jnp.float32)
  shift = math.exp(schedule_shift(num_tokens))
  return shift * tau / (shift * tau + 1.0 - tau)


def shifted_time(level, num_steps, t_min, num_tokens: int):
  """Time of `level` k in a T-step shifted schedule: t_min at k = 0, sigma_k otherwise.

  sigma_k = shift_time(k / T) = e^mu / (e^mu + T / k - 1), so sigma_T = 1 exactly. All array
  arguments broadcast, which lets every example carry its own T (multi-T training) and its own
  t_min.
  """
  level = jnp.asarray(level, jnp.float32)
  sigma = shift_time(level / jnp.asarray(num_steps, jnp.float32), num_tokens)
  return jnp.where(level == 0, jnp.asarray(t_min, jnp.float32), sigma)


def shifted_schedule(num_steps: int, t_min, num_tokens: int) -> jax.Array:
  """The schedule (t_min, sigma_1, ..., sigma_T): [..., T + 1] for t_min of shape [...]."""
  validate_num_steps(num_steps)
  if not isinstance(t_min, jax.core.Tracer):
    validate_t_min(t_min)
  t_min = jnp.asarray(t_min, jnp.float32)
  levels = jnp.arange(num_steps + 1)
  return shifted_time(levels, num_steps, t_min[..., None], num_tokens)


def transition_coefficients(s, t):
  """Markov step x_t = alpha x_s + sigma eps for s < t, keeping every marginal (Prop. 1)."""
  alpha = (1.0 - t) / (1.0 - s)
  sigma = jnp.sqrt(jnp.maximum(t**2 - (alpha * s) ** 2, 0.0))
  return alpha, sigma


def posterior_coefficients(t, s):
  """q(x_s | x_t, x_0) = N(A x_t + B x_0, C^2 I) for s < t (Prop. 2). Returns (A, B, C^2).

  C^2 -> 0 as s -> 0 (x_0 is then known exactly); A(t = 1, s) = 0.
  """
  denom = t**2 * (1.0 - s)
  a = s**2 * (1.0 - t) / denom
  b = (t - s) * (t + s - 2.0 * t * s) / denom
  c2 = s**2 * (t - s) * (t + s - 2.0 * t * s) / (t**2 * (1.0 - s) ** 2)
  return a, b, c2


def trajectory_covariance(times):
  """S_ij = min^2 (1 - max) / (1 - min) over levels (Prop. 3): [..., L] -> [..., L, L].

  Cov(x_ti, x_tj | x_0) = S_ij I. The diagonal is t_i^2.
  """
  lo = jnp.minimum(times[..., :, None], times[..., None, :])
  hi = jnp.maximum(times[..., :, None], times[..., None, :])
  # lo = 1 only on the (t_T, t_T) entry, whose value is t_T^2 = 1.
  safe_lo = jnp.where(lo < 1.0, lo, 0.0)
  return jnp.where(lo < 1.0, safe_lo**2 * (1.0 - hi) / (1.0 - safe_lo), 1.0)


def _expand(coef, x):
  """Broadcasts a per-example coefficient [batch] against x [batch, ...]."""
  return jnp.reshape(coef, coef.shape + (1,) * (x.ndim - coef.ndim))


def forward_trajectory(rng, x0, times):
  """Samples every level of ONE correlated forward trajectory with the Markov chain.

  Args:
    rng: PRNG key.
    x0: clean data [batch, ...].
    times: [batch, levels], strictly increasing.

  Returns:
    [batch, levels, ...]: level k is marginally (1 - t_k) x_0 + t_k eps.
  """
  noise = jax.random.normal(rng, (times.shape[-1],) + x0.shape, x0.dtype)
  x, levels, s = x0, [], jnp.zeros_like(times[:, 0])
  for k in range(times.shape[-1]):
    alpha, sigma = transition_coefficients(s, times[:, k])
    x = _expand(alpha, x) * x + _expand(sigma, x) * noise[k]
    levels.append(x)
    s = times[:, k]
  return jnp.stack(levels, axis=1)


def gaussian_nll(x, mean, log_std, *, keep_axes: int = 1):
  """-log N(x; mean, exp(log_std)^2), summed over all but the leading `keep_axes` axes (e.g. 2:
  one value per token of [batch, tokens, channels]), float32."""
  x, mean, log_std = (jnp.asarray(v, jnp.float32) for v in (x, mean, log_std))
  log_std = jnp.broadcast_to(log_std, x.shape)
  per_dim = 0.5 * jnp.square((x - mean) * jnp.exp(-log_std)) + log_std + 0.5 * LOG_2PI
  return jnp.sum(per_dim.reshape(x.shape[:keep_axes] + (-1,)), axis=-1)


def forward_log_prob(trajectory, times):
  """log q(x_t1, ..., x_tT | x_t0) of the forward chain, per level: [batch, levels - 1].

  Entry k - 1 is log q(x_tk | x_t(k-1)); their sum enters the marginal bound on x_t0.
  """
  terms = []
  for k in range(1, times.shape[-1]):
    alpha, sigma = transition_coefficients(times[:, k - 1], times[:, k])
    prev = trajectory[:, k - 1]
    mean = _expand(alpha, prev) * prev
    terms.append(-gaussian_nll(trajectory[:, k], mean, _expand(jnp.log(sigma), prev)))
  return jnp.stack(terms, axis=-1)
