"""An NTM step as a distrax distribution: its log_prob is the likelihood's factor and its sample
is the sampler's step (docs/method.md §2, §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import build, randomize, random_text, tiny_model_config
from ntm_jax import distributions
from ntm_jax import ntm
from ntm_jax import trajectory

BATCH = 3


@pytest.fixture(scope="module")
def model():
  return randomize(build(ntm.NTM, tiny_model_config()), seed=5)


def test_log_prob_of_every_step_is_the_trajectory_nll_factor(model):
  images = jax.random.uniform(jax.random.key(0), (BATCH,) + model.image_shape, minval=-1.0,
                              maxval=1.0)
  text, mask = random_text(0, BATCH, dim=model.text_dim)

  @jax.jit
  def factors(images, text, mask):
    """(the NLL factor of each level from its step distribution, from the likelihood)."""
    times = trajectory.shifted_schedule(4, jnp.array([0.0, 0.02, 0.05]), model.num_tokens)
    x = trajectory.forward_trajectory(jax.random.key(1), model.tokens(images), times)
    steps = [distributions.step_distribution(model, x[:, k + 1], times[:, k + 1], times[:, k],
                                             text, mask, num_steps=4) for k in range(4)]
    from_steps = jnp.stack([-step.log_prob(x[:, k]) for k, step in enumerate(steps)], axis=1)
    return from_steps, ntm.nll_of_trajectory(model, x, times, text, mask)["level_nll"][:, :4]

  from_steps, level_nll = factors(images, text, mask)
  np.testing.assert_allclose(from_steps, level_nll, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_sample_is_the_full_nf_samplers_step(model, guidance):
  """At T = 1 the full-NF sampler is one step from N(0, I) noise: the distribution at that noise,
  sampled with the step's key, gives the sampler's image."""
  text, mask = random_text(1, BATCH, dim=model.text_dim)
  rng, t_min = jax.random.key(7), 0.05

  @jax.jit
  def both(rng, text, mask):
    """(the sampler's image, the image of one draw from the step distribution)."""
    images = ntm.sample(model, rng, text, mask, num_steps=1, guidance=guidance, t_min=t_min)
    rng_init, rng_steps = jax.random.split(rng)  # ntm.gaussian_chain's split
    x_top = jax.random.normal(rng_init, (BATCH, model.num_tokens, model.channels))
    times = trajectory.shifted_schedule(1, t_min, model.num_tokens)
    full = lambda v: jnp.full((BATCH,), v, jnp.float32)
    step = distributions.step_distribution(model, x_top, full(times[1]), full(times[0]), text,
                                           mask, num_steps=1, guidance=guidance)
    return images, model.images(step.sample(seed=jax.random.split(rng_steps, 1)[0]))

  images, from_step = both(rng, text, mask)
  np.testing.assert_allclose(from_step, images, atol=1e-5)


def test_bijector_round_trip_and_log_dets(model):
  x = jax.random.normal(jax.random.key(2), (BATCH, model.num_tokens, model.channels))
  t = jnp.array([0.1, 0.4, 0.7])
  bijector = distributions.TransporterBijector(model.transporter, t, jnp.full((BATCH,), 4.0))
  u, forward_logdet = bijector.forward_and_log_det(x)
  back, inverse_logdet = bijector.inverse_and_log_det(u)
  np.testing.assert_allclose(back, x, atol=1e-5)
  np.testing.assert_allclose(inverse_logdet, -forward_logdet, atol=1e-5)
  assert np.abs(forward_logdet).min() > 1e-3  # a non-trivial flow
