"""Trajectory score denoising is Tweedie's formula over the whole correlated trajectory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers import build, random_text, randomize, tiny_model_config
from ntm_jax import denoise
from ntm_jax import ntm
from ntm_jax import trajectory


def test_analytic_score_gives_the_analytic_posterior_mean_at_every_level():
  """Gaussian x_0: the joint trajectory density, its score and E[x_0 | trajectory] are known."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    dims, batch = 3, 5
    mean, var = rng.normal(size=dims), rng.uniform(0.1, 2.0, size=dims)
    t = np.array([0.02, 0.3, 0.55, 0.8, 1.0])
    s = np.asarray(trajectory.trajectory_covariance(jnp.asarray(t)))
    a = 1.0 - t
    x0 = mean + np.sqrt(var) * rng.normal(size=(batch, dims))
    noise = rng.multivariate_normal(np.zeros(t.size), s, size=(batch, dims))  # [b, d, levels]
    x = a[None, None] * x0[..., None] + noise
    grad_nll = np.empty_like(x)
    posterior_mean = np.empty((batch, dims))
    for d in range(dims):
      cov = var[d] * np.outer(a, a) + s
      resid = x[:, d] - a[None] * mean[d]
      grad_nll[:, d] = np.linalg.solve(cov, resid.T).T  # -score of N(a m, cov)
      posterior_mean[:, d] = mean[d] + var[d] * resid @ np.linalg.solve(cov, a)
    to_levels = lambda v: jnp.asarray(np.moveaxis(v, 2, 1))  # [b, levels, d]
    denoised = denoise.tweedie_denoise(to_levels(x), jnp.broadcast_to(jnp.asarray(t), (batch, 5)),
                                       to_levels(grad_nll))
    for level in range(t.size - 1):
      np.testing.assert_allclose(denoised[:, level], posterior_mean, rtol=1e-9, atol=1e-9)
    assert np.abs(posterior_mean - x[:, :, 0]).max() > 1e-3  # denoising did something


def test_model_denoising_runs_on_trajectories_and_clipping_bounds_the_gradient():
  model = randomize(build(ntm.NTM, tiny_model_config()), seed=1)
  batch = 3
  images = jax.random.uniform(jax.random.key(0), (batch,) + model.image_shape, minval=-1.0)
  text, mask = random_text(0, batch, dim=model.text_dim)
  times = trajectory.shifted_schedule(4, jnp.full((batch,), 0.02), model.num_tokens)
  x = trajectory.forward_trajectory(jax.random.key(1), model.tokens(images), times)
  out = jax.jit(lambda x: denoise.trajectory_score_denoise(model, x, times, text, mask,
                                                            clip_percentile=99.0))(x)
  assert out.shape == x[:, 0].shape and np.isfinite(out).all()
  grad = jax.random.normal(jax.random.key(2), (2, 100))
  clipped = denoise.clip_by_percentile(grad, 90.0)
  assert (np.abs(clipped) <= np.percentile(np.abs(grad), 90.0, axis=1)[:, None] + 1e-6).all()


def _tiny_denoiser(model):
  return build(denoise.Denoiser, channels=model.channels, grid_shape=(2, 2), width=32, depth=1,
               num_heads=4, num_kv_heads=2, text_dim=model.text_dim)


def test_denoiser_distillation_loss_decreases():
  model = randomize(build(ntm.NTM, tiny_model_config()), seed=1)
  denoiser = _tiny_denoiser(model)
  optimizer = nnx.Optimizer(denoiser, optax.adam(3e-3), wrt=nnx.Param)
  batch = 16
  images = jax.random.uniform(jax.random.key(0), (batch,) + model.image_shape, minval=-1.0)
  text, mask = random_text(0, batch, dim=model.text_dim)

  @nnx.jit
  def step(denoiser, optimizer, key):
    targets = denoise.distillation_targets(model, images, text, mask, key, num_steps=4)
    loss_fn = lambda d: denoise.distillation_loss(d, targets, text, mask)
    loss, grads = nnx.value_and_grad(loss_fn)(denoiser)
    optimizer.update(denoiser, grads)
    return loss

  keys = jax.random.split(jax.random.key(1), 60)
  losses = [float(step(denoiser, optimizer, keys[i % 4])) for i in range(60)]
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_three_samplers_give_images_and_the_fast_one_never_inverts_the_flow():
  model = randomize(build(ntm.NTM, tiny_model_config()), seed=1)
  denoiser = randomize(_tiny_denoiser(model), seed=2, scale=0.05)
  batch = 2
  text, mask = random_text(3, batch, dim=model.text_dim)
  kwargs = dict(num_steps=4, guidance=1.0, t_min=0.02)
  rng = jax.random.key(4)
  full = jax.jit(lambda r: ntm.sample(model, r, text, mask, **kwargs))(rng)
  denoised = jax.jit(lambda r: denoise.sample_denoised(model, r, text, mask, **kwargs))(rng)
  jacobi = jax.jit(lambda r: denoise.sample_denoised(model, r, text, mask, **kwargs,
                                                     inverse="jacobi"))(rng)
  np.testing.assert_allclose(jacobi, denoised, atol=1e-4)

  def no_inverse(*args, **kw):
    raise AssertionError("the fast sampler called the transporter inverse")

  model.transporter.inverse = no_inverse
  model.transporter.reference_inverse = no_inverse
  fast = jax.jit(lambda r: denoise.sample_fast(model, denoiser, r, text, mask, **kwargs))(rng)
  for images in (full, denoised, fast):
    assert images.shape == (batch,) + model.image_shape and np.isfinite(images).all()
    assert np.abs(images).max() < 50.0
  assert np.abs(denoised - full).max() > 1e-4  # denoising changed the full-NF sample


def test_return_levels_stacks_the_chain_cleanest_first():
  model = randomize(build(ntm.NTM, tiny_model_config()), seed=1)
  text, mask = random_text(3, 2, dim=model.text_dim)
  kwargs = dict(num_steps=4, t_min=0.02)
  levels = ntm.predictor_chain(model, jax.random.key(0), text, mask, return_levels=True, **kwargs)
  last = ntm.predictor_chain(model, jax.random.key(0), text, mask, **kwargs)
  assert levels.shape == (2, 5, model.num_tokens, model.channels)
  np.testing.assert_array_equal(levels[:, 0], last)
