"""Self-distillation (paper Section 3.2): trajectory score denoising and the learned denoiser.

Trajectory score denoising (Eq. 3.5, Algorithm 3) is Tweedie over the whole trajectory.
Given one trajectory x = (x_t0, ..., x_tT) with x_ti = (1 - t_i) x_0 + n_i and n ~ N(0, S (x) I)
(S the trajectory covariance of Prop. 3), Tweedie's formula reads, for every level i < T,
    E[x_0 | x] = (x_i - sum_j S_ij grad_{x_j} L(x)) / (1 - t_i),   L = -log p(x).
With the model's exact trajectory NLL as L, level t_0 gives the denoised sample.

Shapes: x: [batch, levels, tokens, channels] (x-space), times: [batch, levels].
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ntm_jax import ntm
from ntm_jax import predictor
from ntm_jax import trajectory


def clip_by_percentile(grad, percentile: float):
  """Clips each example's gradient entries to its `percentile`-th percentile of |grad|."""
  flat = jnp.abs(grad.reshape(grad.shape[0], -1))
  bound = jnp.percentile(flat, percentile, axis=1)
  bound = bound.reshape((-1,) + (1,) * (grad.ndim - 1))
  return jnp.clip(grad, -bound, bound)


def tweedie_denoise(x, times, grad_nll):
  """(x_i - (S grad L)_i) / (1 - t_i) for every level: [batch, levels, ...].

  The top level (t_T = 1) holds no information about x_0: it is divided by 1 instead of 0 and
  must be ignored. Callers use level 0.
  """
  cov = trajectory.trajectory_covariance(times)  # [batch, levels, levels]
  corrected = x - jnp.einsum("bij,bj...->bi...", cov, grad_nll)
  scale = 1.0 - times
  safe = jnp.where(scale > 0, scale, 1.0)
  scale = safe.reshape(safe.shape + (1,) * (x.ndim - 2))
  return corrected / scale


def trajectory_score_denoise(model: ntm.NTM, x, times, text, text_mask,
                             clip_percentile: float | None = None):
  """Denoised clean tokens [batch, tokens, channels] from x-space trajectories of the model.

  The gradient of the summed exact trajectory NLL is the negative joint score of the frozen
  model; the t_0 level of Tweedie's estimate is returned.
  """
  total_nll = lambda x: jnp.sum(ntm.nll_of_trajectory(model, x, times, text, text_mask)["nll"])
  grad = jax.grad(total_nll)(x)
  if clip_percentile is not None:
    grad = clip_by_percentile(grad, clip_percentile)
  return tweedie_denoise(x, times, grad)[:, 0]


class Denoiser(nnx.Module):
  """The learned denoiser g_phi (Eq. 3.9): u_t0 tokens + text -> clean x tokens in one pass.

  A light non-causal Transformer (the predictor's backbone at its own size) with a residual,
  zero-initialized head, so it starts as the identity u_t0 -> u_t0.
  """

  def __init__(self, *, channels: int, grid_shape: tuple, width: int, depth: int,
               num_heads: int, num_kv_heads: int, text_dim: int, remat: bool = False,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.backbone = predictor.Backbone(channels=channels, grid_shape=grid_shape, width=width,
                                       depth=depth, num_heads=num_heads,
                                       num_kv_heads=num_kv_heads, text_dim=text_dim,
                                       remat=remat, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(width, channels, kernel_init=nnx.initializers.zeros,
                           bias_init=nnx.initializers.zeros, dtype=jnp.float32, rngs=rngs)

  def __call__(self, u_t0, t0, num_steps, text, text_mask):
    """u_t0: [batch, tokens, channels]; t0, num_steps: [batch] -> x tokens (float32)."""
    hidden = self.backbone(u_t0, t0, jnp.zeros_like(t0), num_steps, text, text_mask)
    return u_t0.astype(jnp.float32) + self.head(hidden)


def distillation_targets(model: ntm.NTM, images, text, text_mask, rng, *, num_steps: int,
                         t_min_range=(0.0, 0.05), clip_percentile=None) -> dict:
  """The denoiser's inputs and targets from REAL-data forward trajectories (Eq. 3.9).

  u_t0 = f_T(x_t0) is what the predictor chain delivers at sampling time; the target is the
  frozen model's trajectory-score denoising of the whole trajectory; x_t0 is kept to report how
  far the target moved from it. Everything is a constant for the denoiser's gradient.
  """
  x0 = model.tokens(images)
  rng_t, rng_traj = jax.random.split(rng)
  t_min = ntm.sample_t_min(rng_t, x0.shape[0], t_min_range)
  times = trajectory.shifted_schedule(num_steps, t_min, model.num_tokens)
  x = trajectory.forward_trajectory(rng_traj, x0, times)
  target = trajectory_score_denoise(model, x, times, text, text_mask, clip_percentile)
  steps = jnp.full((x0.shape[0],), num_steps, jnp.float32)
  u_t0, _ = model.transporter(x[:, 0], times[:, 0], steps)
  return jax.lax.stop_gradient({"u_t0": u_t0, "t0": times[:, 0], "num_steps": steps,
                                "target": target, "x_t0": x[:, 0]})


def distillation_loss(denoiser: Denoiser, targets: dict, text, text_mask):
  """Mean squared error of g_phi(u_t0) against the trajectory-denoised target, per dimension."""
  prediction = denoiser(targets["u_t0"], targets["t0"], targets["num_steps"], text, text_mask)
  return jnp.mean(jnp.square(prediction - targets["target"]))


def sample_fast(model: ntm.NTM, denoiser: Denoiser, rng, text, text_mask, *, num_steps: int,
                guidance: float = 0.0, t_min: float = 0.0, temperature: float = 1.0,
                final_temperature: float = -1.0):
  """T predictor steps + one denoiser pass: no autoregressive inversion, no backprop."""
  u = ntm.predictor_chain(model, rng, text, text_mask, num_steps=num_steps, guidance=guidance,
                          t_min=t_min, temperature=temperature,
                          final_temperature=final_temperature)
  batch = u.shape[0]
  x = denoiser(u, jnp.full((batch,), t_min, jnp.float32),
               jnp.full((batch,), num_steps, jnp.float32), text, text_mask)
  return model.images(x)


def sample_denoised(model: ntm.NTM, rng, text, text_mask, *, num_steps: int,
                    guidance: float = 0.0, t_min: float = 0.0, temperature: float = 1.0,
                    final_temperature: float = -1.0, clip_percentile=None,
                    inverse: str = "kv_cache", jacobi_tolerance: float = 0.0):
  """Full NF + trajectory score denoising: invert the transporter at every level of the sampled
  trajectory (`inverse` as in ntm.sample), then Tweedie with the model's conditional joint
  score (Algorithm 3)."""
  levels = ntm.predictor_chain(model, rng, text, text_mask, num_steps=num_steps,
                               guidance=guidance, t_min=t_min, temperature=temperature,
                               final_temperature=final_temperature,
                               return_levels=True)  # [batch, T+1, tokens, channels]
  batch = levels.shape[0]
  times = jnp.broadcast_to(trajectory.shifted_schedule(num_steps, t_min, model.num_tokens),
                           (batch, num_steps + 1))
  steps = jnp.full((batch,), num_steps, jnp.float32)

  def invert(u_k, t_k):
    return model.transporter.inverse(u_k, t_k, steps, inverse, jacobi_tolerance)

  # The top level is the identity; every other level is inverted at its own time.
  lower = jax.lax.map(lambda args: invert(*args),
                      (jnp.swapaxes(levels[:, :-1], 0, 1), jnp.swapaxes(times[:, :-1], 0, 1)))
  x = jnp.concatenate([jnp.swapaxes(lower, 0, 1), levels[:, -1:]], axis=1)
  return model.images(trajectory_score_denoise(model, x, times, text, text_mask,
                                               clip_percentile))
