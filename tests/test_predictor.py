"""The predictor: shapes, both parametrizations, GQA + 2D RoPE, text masking, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import build, randomize, random_text
from ntm_jax import layers
from ntm_jax import predictor
from ntm_jax import trajectory

GRID, CHANNELS, TEXT_DIM = (2, 3), 4, 8


def make(parametrization="direct", seed=0, random=True):
  model = build(predictor.Predictor, channels=CHANNELS, grid_shape=GRID, width=32, depth=2,
                              num_heads=4, num_kv_heads=2, text_dim=TEXT_DIM,
                              parametrization=parametrization, seed=seed)
  return randomize(model, seed) if random else model


def inputs(batch=3, seed=1):
  u = jax.random.normal(jax.random.key(seed), (batch, 6, CHANNELS))
  t = jnp.linspace(0.4, 1.0, batch)
  s = t - 0.3
  text, mask = random_text(seed, batch, dim=TEXT_DIM)
  return u, t, s, jnp.full((batch,), 4.0), text, mask


def test_direct_head_starts_at_standard_normal():
  mu, log_sigma = jax.jit(make(random=False))(*inputs())
  np.testing.assert_array_equal(mu, 0.0)
  np.testing.assert_array_equal(log_sigma, 0.0)


def test_posterior_form_at_init_is_the_flow_matching_posterior():
  model = make("posterior", random=False)
  u, t, s, steps, text, mask = inputs()
  mu, log_sigma = jax.jit(model)(u, t, s, steps, text, mask)
  velocity = model.head(model.backbone(u, t, s, steps, text, mask))
  a, b, c2 = (v[:, None, None] for v in trajectory.posterior_coefficients(t, s))
  np.testing.assert_allclose(mu, a * u + b * (u - t[:, None, None] * velocity), atol=1e-5)
  np.testing.assert_allclose(log_sigma, jnp.broadcast_to(0.5 * jnp.log(c2 + 1e-6), mu.shape),
                             rtol=1e-6)
  # Finite as s -> 0, where C -> 0.
  mu0, log_sigma0 = model(u, t, jnp.zeros_like(s), steps, text, mask)
  assert np.isfinite(mu0).all() and np.isfinite(log_sigma0).all()


def test_fresh_backbone_ignores_target_time_and_step_count():
  """The (s, T) embedding starts at zero: a fresh backbone is a function of (u_t, t, y) only."""
  model = make(random=False)
  u, t, s, steps, text, mask = inputs()
  h1 = model.backbone(u, t, s, steps, text, mask)
  h2 = model.backbone(u, t, s * 0.5, steps * 2, text, mask)
  np.testing.assert_array_equal(h1, h2)


def test_masked_text_tokens_do_not_matter_and_visible_ones_do():
  model = make()
  u, t, s, steps, text, mask = inputs()
  mask = mask.at[:, 0].set(True).at[:, -1].set(False)
  f = jax.jit(model)
  base = f(u, t, s, steps, text, mask)
  hidden_changed = f(u, t, s, steps, text.at[:, -1].add(5.0), mask)
  visible_changed = f(u, t, s, steps, text.at[:, 0].add(5.0), mask)
  np.testing.assert_allclose(base[0], hidden_changed[0], atol=1e-6)
  assert np.abs(base[0] - visible_changed[0]).max() > 1e-3


def test_rope_is_relative_in_both_axes():
  """<rope(q, p), rope(k, p')> depends only on p - p' (per axis)."""
  q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, 8))
  score = lambda p, r: jnp.sum(layers.rope(q, jnp.array([[p]])) * layers.rope(k, jnp.array([[r]])))
  np.testing.assert_allclose(score([3, 5], [1, 2]), score([4, 9], [2, 6]), rtol=1e-5)
  assert abs(score([3, 5], [1, 2]) - score([3, 5], [2, 2])) > 1e-3
  assert abs(score([3, 5], [1, 2]) - score([3, 5], [1, 3])) > 1e-3


def test_bad_inputs():
  model = make()
  u, t, s, steps, text, mask = inputs()
  with pytest.raises(ValueError, match=r"u_t of shape \[batch, 6, 4\], got \(3, 6, 5\)"):
    model(jnp.zeros((3, 6, 5)), t, s, steps, text, mask)
  with pytest.raises(ValueError, match="text of shape"):
    model(u, t, s, steps, text[..., :3], mask)
  with pytest.raises(ValueError, match="parametrization"):
    make("velocity")
  with pytest.raises(ValueError, match="num_kv_heads"):
    layers.Attention(32, 4, 3, rngs=nnx.Rngs(0))
