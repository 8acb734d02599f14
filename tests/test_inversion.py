"""Exact inversion: an image -> the full-NF sampler's noise -> the same image (docs/method.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import build, randomize, random_text, tiny_model_config
from ntm_jax import inversion
from ntm_jax import ntm

BATCH = 3


@pytest.fixture(scope="module")
def model():
  return randomize(build(ntm.NTM, tiny_model_config()), seed=11)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_regenerating_from_the_inverted_noise_returns_the_image(model, guidance):
  images = jax.random.uniform(jax.random.key(0), (BATCH,) + model.image_shape, minval=-1.0,
                              maxval=1.0)
  text, mask = random_text(0, BATCH, dim=model.text_dim)
  other_text, other_mask = random_text(5, BATCH, dim=model.text_dim)

  @jax.jit
  def invert_and_regenerate(images, text, mask, other_text, other_mask):
    inverted = inversion.invert(model, images, text, mask, jax.random.key(1), num_steps=4,
                                guidance=guidance)
    regenerate = lambda *condition: inversion.generate(model, inverted["top"], inverted["noise"],
                                                       *condition, guidance=guidance)
    return inverted["noise"], regenerate(text, mask), regenerate(other_text, other_mask)

  noise, back, edited = invert_and_regenerate(images, text, mask, other_text, other_mask)
  assert noise.shape == (BATCH, 4, model.num_tokens, model.channels)
  np.testing.assert_allclose(back, images, atol=1e-4)
  assert np.abs(edited - images).max() > 1e-2  # the caption matters


def test_generate_is_the_full_nf_sampler_given_its_noise(model):
  text, mask = random_text(2, BATCH, dim=model.text_dim)
  rng, t_min = jax.random.key(3), 0.05
  images = ntm.sample(model, rng, text, mask, num_steps=4, guidance=1.5, t_min=t_min)
  rng_init, rng_steps = jax.random.split(rng)  # ntm.gaussian_chain's draws
  shape = (BATCH, model.num_tokens, model.channels)
  noise = jnp.stack([jax.random.normal(k, shape) for k in jax.random.split(rng_steps, 4)], axis=1)
  regenerated = inversion.generate(model, jax.random.normal(rng_init, shape), noise, text, mask,
                                   t_min=t_min, guidance=1.5)
  np.testing.assert_allclose(regenerated, images, atol=1e-5)
