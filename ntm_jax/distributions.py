"""Each NTM reverse step as a distrax distribution: p(x_s | x_t, y) (paper Eq. 3.2).

One step is a conditional normalizing flow. In the transporter's space the predictor gives a
diagonal Gaussian over u_s = f_T(x_s, s) from u_t = f_T(x_t, t); in data space that Gaussian is
pushed through the inverse transporter:

    p(x_s | x_t, y) = N(f_T(x_s, s); mu_P, sigma_P^2) |det d f_T(x_s, s) / d x_s|.

`step_distribution` returns exactly that as a `distrax.Transformed` of an `Independent(Normal)`
by the inverse of `TransporterBijector`, so `log_prob` is the factor the trajectory NLL sums
(ntm.nll_of_trajectory) and `sample` is the full-NF sampler's step (ntm.gaussian_chain, then
the transporter's inverse). Events are token grids [tokens, channels]; t, s: [batch].
"""

import distrax
import jax.numpy as jnp

from ntm_jax import ntm


class TransporterBijector(distrax.Bijector):
  """x -> u = f_T(x, t) at fixed times t [batch] and step count T, over [tokens, channels]."""

  def __init__(self, transporter, t, num_steps):
    super().__init__(event_ndims_in=2)
    self.transporter, self.t, self.num_steps = transporter, t, num_steps

  def forward_and_log_det(self, x):
    return self.transporter(x, self.t, self.num_steps)

  def inverse_and_log_det(self, u):
    # The KV-cached inverse; its log-det is minus the forward one at the recovered x (exact, as
    # the forward pass is what the likelihood differentiates through anyway).
    x = self.transporter.inverse(u, self.t, self.num_steps)
    return x, -self.transporter(x, self.t, self.num_steps)[1]


def step_distribution(model: ntm.NTM, x_t, t, s, text, text_mask, *, num_steps: int,
                      guidance: float = 0.0) -> distrax.Distribution:
  """p(x_s | x_t, y) for token grids x_t [batch, tokens, channels] at times t > s ([batch]),
  with classifier-free guidance w = guidance (0: the model's own conditional).

  At the top level (t = 1) the transporter is the identity, so x_t there is the N(0, I) sample.
  """
  steps = jnp.full(t.shape, num_steps, jnp.float32)
  u_t, _ = model.transporter(x_t, t, steps)
  mu, log_sigma = ntm.guided_prediction(model, u_t, t, s, steps, text, text_mask, guidance)
  base = distrax.Independent(distrax.Normal(mu, jnp.exp(log_sigma)), reinterpreted_batch_ndims=2)
  return distrax.Transformed(base, distrax.Inverse(TransporterBijector(model.transporter, s,
                                                                       steps)))
