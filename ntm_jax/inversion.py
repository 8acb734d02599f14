"""Exact inversion of an image to the sampler's noise, and editing by regenerating from it.

The full-NF sampler is a deterministic function of its noise: the top level u_tT ~ N(0, I) and
one standard normal eps_k per predictor step, u_t(k-1) = mu_k + sigma_k eps_k, then
x_t0 = f_T^-1(u_t0). Every step of it is invertible, so an image has exactly one such noise for
a given trajectory: run the forward chain from the image (with a fixed key), map each level into
the transporter's space, and solve each step for its eps_k:

    eps_k = (f_T(x_t(k-1), t_(k-1)) - mu_k) / sigma_k,   (mu_k, sigma_k) = f_P(f_T(x_tk, t_k), ..).

Regenerating from that noise with the same caption returns x_t0 (the image itself at t_min = 0);
with another caption it gives an edit that keeps whatever the noise encodes (layout, sizes).
"""

import jax
import jax.numpy as jnp

from ntm_jax import ntm
from ntm_jax import trajectory


def _schedule(model: ntm.NTM, batch: int, num_steps: int, t_min: float):
  times = trajectory.shifted_schedule(num_steps, t_min, model.num_tokens)
  return jnp.broadcast_to(times, (batch, num_steps + 1))


def invert(model: ntm.NTM, images, text, text_mask, rng, *, num_steps: int, t_min: float = 0.0,
           guidance: float = 0.0) -> dict:
  """images [batch, H, W, C] -> {"top": u_tT [batch, tokens, channels], "noise": eps
  [batch, T, tokens, channels] (step k = T first, as the sampler draws them)}.

  rng fixes the forward trajectory; guidance must be the one the noise will be sampled with.
  """
  batch = images.shape[0]
  times = _schedule(model, batch, num_steps, t_min)
  x = trajectory.forward_trajectory(rng, model.tokens(images), times)
  steps = jnp.full((batch,), num_steps, jnp.float32)
  # The transporter at t = 1 is the identity, so the top level needs no special case.
  u = jnp.stack([model.transporter(x[:, k], times[:, k], steps)[0]
                 for k in range(num_steps + 1)], axis=1)
  noise = []
  for k in range(num_steps, 0, -1):
    mu, log_sigma = ntm.guided_prediction(model, u[:, k], times[:, k], times[:, k - 1], steps,
                                          text, text_mask, guidance)
    noise.append((u[:, k - 1] - mu) * jnp.exp(-log_sigma))
  return {"top": u[:, num_steps], "noise": jnp.stack(noise, axis=1)}


def generate(model: ntm.NTM, top, noise, text, text_mask, *, t_min: float = 0.0,
             guidance: float = 0.0):
  """The full-NF sampler with given noise (from `invert`, or any N(0, I) draws): images."""
  batch, num_steps = noise.shape[:2]
  times = _schedule(model, batch, num_steps, t_min)
  steps = jnp.full((batch,), num_steps, jnp.float32)

  def step(u, inputs):
    k, eps = inputs
    t, s = jnp.take(times, k, axis=1), jnp.take(times, k - 1, axis=1)
    mu, log_sigma = ntm.guided_prediction(model, u, t, s, steps, text, text_mask, guidance)
    return mu + jnp.exp(log_sigma) * eps, None

  u, _ = jax.lax.scan(step, top, (jnp.arange(num_steps, 0, -1), jnp.swapaxes(noise, 0, 1)))
  return model.images(model.transporter.inverse(u, times[:, 0], steps))
