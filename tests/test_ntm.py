"""The trajectory likelihood, its modes, guidance and the sampler (docs/method.md §2, §4, §5)."""

import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import build, randomize, random_text, tiny_model_config
from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax import trajectory

BATCH = 4


@pytest.fixture(scope="module")
def model():
  return randomize(build(ntm.NTM, tiny_model_config()), seed=3)


def data(model, batch=BATCH, seed=0):
  images = jax.random.uniform(jax.random.key(seed), (batch,) + model.image_shape, minval=-1.0,
                              maxval=1.0)
  text, mask = random_text(seed, batch, dim=model.text_dim)
  return images, text, mask


def sampled_trajectory(model, images, num_steps=4, seed=1):
  times = trajectory.shifted_schedule(num_steps, jnp.linspace(0.0, 0.05, images.shape[0]),
                                      model.num_tokens)
  return trajectory.forward_trajectory(jax.random.key(seed), model.tokens(images), times), times


def test_nll_equals_sum_of_independently_computed_factor_densities(model):
  images, text, mask = data(model)
  x, times = sampled_trajectory(model, images)
  out = jax.jit(lambda x, t: ntm.nll_of_trajectory(model, x, t, text, mask))(x, times)
  num_steps = times.shape[1] - 1
  steps = jnp.full((BATCH,), float(num_steps))
  flat = lambda a: a.reshape(BATCH, -1)

  @jax.jit
  def independent(x, times):
    """Each factor on its own: log N(f_T(x_s); mu_P(f_T(x_t))) + log|det|, densities by distrax."""
    terms = []
    for k in range(num_steps):
      u_s, logdet = model.transporter(x[:, k], times[:, k], steps)
      u_t = (x[:, k + 1] if k + 1 == num_steps
             else model.transporter(x[:, k + 1], times[:, k + 1], steps)[0])
      mu, log_sigma = model.predictor(u_t, times[:, k + 1], times[:, k], steps, text, mask)
      density = distrax.MultivariateNormalDiag(flat(mu), jnp.exp(flat(log_sigma)))
      terms.append(-(density.log_prob(flat(u_s)) + logdet))
    prior = distrax.MultivariateNormalDiag(jnp.zeros((BATCH, model.num_dims)))
    terms.append(-prior.log_prob(flat(x[:, -1])))
    return jnp.stack(terms, axis=1)

  expected = independent(x, times)
  np.testing.assert_allclose(out["level_nll"], expected, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(out["nll"], expected.sum(1), rtol=1e-5, atol=2e-3)
  assert np.abs(out["logdet"]).min() > 0.01  # the transporter is not the identity here


def test_per_token_factors_are_per_position_densities_and_sum_to_each_level(model):
  """level_token_nll[:, k, n] = -log N(u_n; mu_n, sigma_n) - per-token log-det at position n."""
  images, text, mask = data(model)
  x, times = sampled_trajectory(model, images)
  out = jax.jit(lambda x, t: ntm.nll_of_trajectory(model, x, t, text, mask, per_token=True))(
      x, times)
  tokens = out["level_token_nll"]
  assert tokens.shape == (BATCH, 5, model.num_tokens)
  np.testing.assert_allclose(tokens.sum(-1), out["level_nll"], rtol=1e-5, atol=1e-3)

  steps = jnp.full((BATCH,), 4.0)
  u_s, token_logdet = model.transporter.forward(x[:, 1], times[:, 1], steps)
  u_t = model.transporter(x[:, 2], times[:, 2], steps)[0]
  mu, log_sigma = model.predictor(u_t, times[:, 2], times[:, 1], steps, text, mask)
  density = distrax.MultivariateNormalDiag(mu, jnp.broadcast_to(jnp.exp(log_sigma), mu.shape))
  np.testing.assert_allclose(tokens[:, 1], -density.log_prob(u_s) - token_logdet, rtol=1e-5,
                             atol=1e-3)
  prior = distrax.MultivariateNormalDiag(jnp.zeros_like(x[:, -1]))
  np.testing.assert_allclose(tokens[:, -1], -prior.log_prob(x[:, -1]), rtol=1e-5, atol=1e-4)


def test_trajectory_nll_is_nll_of_its_sampled_trajectory(model):
  images, text, mask = data(model)
  out = jax.jit(lambda *args: ntm.trajectory_nll(model, *args, jax.random.key(5), num_steps=4))(
      images, text, mask)
  assert out["level_nll"].shape == (BATCH, 5) and out["times"].shape == (BATCH, 5)
  assert np.isfinite(out["nll"]).all()
  np.testing.assert_allclose(out["nll"], out["level_nll"].sum(1), rtol=1e-6)
  log_q = out["level_bound"] - out["level_nll"]
  np.testing.assert_array_equal(log_q[:, 0], 0.0)  # x_t0 is not a target of q
  np.testing.assert_allclose(out["bound"], out["nll"] + log_q.sum(1), rtol=1e-5)


def test_a_level_prediction_does_not_change_when_cleaner_levels_change(model):
  images, text, mask = data(model)
  x, times = sampled_trajectory(model, images)
  nll = jax.jit(lambda x: ntm.nll_of_trajectory(model, x, times, text, mask)["level_nll"])
  base = nll(x)
  for k in range(1, times.shape[1]):
    noise = jax.random.normal(jax.random.key(k), x[:, :k].shape)
    changed = nll(x.at[:, :k].add(noise))
    np.testing.assert_array_equal(changed[:, k:], base[:, k:])
    assert np.abs(changed[:, k - 1] - base[:, k - 1]).min() > 1e-3  # its own target did change
  # The conditioning level does matter: level k's factor reads x_t(k+1).
  changed = nll(x.at[:, 2].add(0.5))
  assert np.abs(changed[:, 1] - base[:, 1]).min() > 1e-4


@pytest.mark.parametrize("sampling_power", [0.0, 2.0])
def test_pair_wise_is_an_unbiased_estimate_of_the_trajectory_nll(model, sampling_power):
  """However levels are sampled, the pair-wise NLL estimates the trajectory NLL and its objective
  the end-to-end weighted objective (importance weights correct the sampling)."""
  images, text, mask = data(model, batch=1)
  many = lambda a: jnp.repeat(a, 4096, axis=0)
  kwargs = dict(t_min_range=(0.0, 0.05), level_weight_power=1.0)
  full = jax.jit(lambda r: ntm.trajectory_nll(model, many(images), many(text), many(mask), r,
                                              num_steps=4, **kwargs))(jax.random.key(0))
  pair = jax.jit(lambda r: ntm.pair_wise_nll(model, many(images), many(text), many(mask), r,
                                             num_steps_set=(4,), level_sampling_power=sampling_power,
                                             **kwargs))(jax.random.key(1))
  for key in ("nll", "objective"):
    stderr = math.sqrt(np.var(full[key]) / full[key].size + np.var(pair[key]) / full[key].size)
    assert abs(np.mean(full[key]) - np.mean(pair[key])) < 4 * stderr, key
  # Per example, the objective is the NLL estimate's factor term times the level's loss weight.
  prior = pair["nll"] - pair["factor"] * 4 / ntm.relative_level_weight(
      pair["level"], pair["num_steps"], sampling_power, max_steps=4)
  weight = ntm.relative_level_weight(pair["level"], pair["num_steps"], 1.0, max_steps=4)
  np.testing.assert_allclose(pair["objective"] - prior, (pair["nll"] - prior) * weight,
                             rtol=1e-5, atol=1e-2)
  assert np.ptp(np.asarray(weight)) > 1.0
  frequencies = np.bincount(np.asarray(pair["level"], int), minlength=4) / pair["level"].size
  expected = np.arange(1, 5) ** sampling_power / np.sum(np.arange(1, 5) ** sampling_power)
  np.testing.assert_allclose(frequencies, expected, atol=0.025)


def test_level_weights_have_mean_one_and_power_favours_noisy_levels():
  np.testing.assert_array_equal(ntm.level_weights(4, 0.0), np.ones(4))
  for power in (1.0, 3.0):
    w = np.asarray(ntm.level_weights(4, power))
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    assert (np.diff(w) > 0).all()  # cleanest level first
  np.testing.assert_allclose(ntm.level_weights(4, 1.0), np.arange(1, 5) / 2.5, rtol=1e-6)
  # Per example, for T drawn from a set: the same weights, looked up at each example's level.
  levels, steps = jnp.array([0.0, 3.0, 0.0, 7.0]), jnp.array([4.0, 4.0, 8.0, 8.0])
  np.testing.assert_allclose(ntm.relative_level_weight(levels, steps, 3.0, max_steps=8),
                             [ntm.level_weights(4, 3.0)[0], ntm.level_weights(4, 3.0)[3],
                              ntm.level_weights(8, 3.0)[0], ntm.level_weights(8, 3.0)[7]],
                             rtol=1e-6)


def test_unweighted_objective_is_exactly_the_nll(model):
  images, text, mask = data(model)
  e2e = ntm.trajectory_nll(model, images, text, mask, jax.random.key(5), num_steps=4)
  pair = ntm.pair_wise_nll(model, images, text, mask, jax.random.key(5), num_steps_set=(4, 8))
  np.testing.assert_array_equal(e2e["objective"], e2e["nll"])
  np.testing.assert_array_equal(pair["objective"], pair["nll"])
  weighted = ntm.trajectory_nll(model, images, text, mask, jax.random.key(5), num_steps=4,
                                level_weight_power=2.0)
  np.testing.assert_array_equal(weighted["nll"], e2e["nll"])  # the reported NLL stays unweighted
  w = ntm.level_weights(4, 2.0)
  np.testing.assert_allclose(weighted["objective"], (e2e["level_nll"][:, :4] * w).sum(1)
                             + e2e["level_nll"][:, 4], rtol=1e-6)


def test_pair_wise_draws_t_per_example_from_the_set(model):
  images, text, mask = data(model, batch=64)
  out = jax.jit(lambda *args: ntm.pair_wise_nll(model, *args, jax.random.key(2),
                                                num_steps_set=(4, 8, 16)))(images, text, mask)
  assert set(np.unique(out["num_steps"])) == {4.0, 8.0, 16.0}
  assert (out["level"] < out["num_steps"]).all() and (out["level"] >= 0).all()
  assert np.isfinite(out["factor"]).all()


def test_cfg_dropout_replaces_text_with_the_null_condition(model):
  _, text, mask = data(model)
  null_text, null_mask = model.null_condition(*text.shape[:2])
  dropped = text_to_image.drop_condition(model, jax.random.key(0), text, mask, 1.0)
  np.testing.assert_array_equal(dropped[0], null_text)
  np.testing.assert_array_equal(dropped[1], null_mask)
  kept = text_to_image.drop_condition(model, jax.random.key(0), text, mask, 0.0)
  np.testing.assert_array_equal(kept[0], text)


def test_guidance_zero_is_exactly_the_conditional():
  keys = jax.random.split(jax.random.key(0), 4)
  mu_c, ls_c, mu_u, ls_u = (jax.random.normal(k, (5, 3)) for k in keys)
  mu, ls = ntm.guided_gaussian(mu_c, ls_c, mu_u, ls_u, 0.0)
  np.testing.assert_array_equal(mu, mu_c)
  np.testing.assert_array_equal(ls, ls_c)


@pytest.mark.parametrize("w", [0.5, 1.0, 4.0])
def test_guided_gaussian_is_the_normalized_product(w):
  """log N_guided - [(1 + w) log p_c - w log p_u] is constant in x where sigma_c <= sigma_u."""
  mu_c, ls_c, mu_u, ls_u = 0.3, math.log(0.5), -0.4, math.log(0.8)
  mu, ls = ntm.guided_gaussian(*(jnp.float32(v) for v in (mu_c, ls_c, mu_u, ls_u)), w)
  xs = jnp.linspace(-3.0, 3.0, 61)
  log_p = lambda m, s: distrax.Normal(m, math.exp(s)).log_prob(xs)
  diff = distrax.Normal(mu, jnp.exp(ls)).log_prob(xs) - ((1 + w) * log_p(mu_c, ls_c)
                                                         - w * log_p(mu_u, ls_u))
  assert np.ptp(np.asarray(diff)) < 1e-4


def test_sampler_with_guidance_zero_uses_the_conditional_predictor(model):
  _, text, mask = data(model)
  u = jax.random.normal(jax.random.key(0), (BATCH, model.num_tokens, model.channels))
  t, s, steps = jnp.full((BATCH,), 0.6), jnp.full((BATCH,), 0.3), jnp.full((BATCH,), 4.0)

  @jax.jit
  def means(u, t, s, steps, text, mask):
    return (ntm.guided_prediction(model, u, t, s, steps, text, mask, 0.0)[0],
            model.predictor(u, t, s, steps, text, mask)[0],
            ntm.guided_prediction(model, u, t, s, steps, text, mask, 3.0)[0])

  guided, plain, strong = means(u, t, s, steps, text, mask)
  np.testing.assert_array_equal(guided, plain)
  assert np.abs(strong - plain).max() > 1e-3


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_sampler_inverts_the_transporter_at_t_min(model, guidance):
  _, text, mask = data(model)
  kwargs = dict(num_steps=4, guidance=guidance, t_min=0.02)
  rng = jax.random.key(7)
  images = jax.jit(lambda r: ntm.sample(model, r, text, mask, **kwargs))(rng)
  u_t0 = jax.jit(lambda r: ntm.predictor_chain(model, r, text, mask, **kwargs))(rng)
  assert images.shape == (BATCH,) + model.image_shape and np.isfinite(images).all()
  u, _ = model.transporter(model.tokens(images), jnp.full((BATCH,), 0.02), jnp.full((BATCH,), 4.))
  np.testing.assert_allclose(u, u_t0, atol=1e-4)
  jacobi = jax.jit(lambda r: ntm.sample(model, r, text, mask, **kwargs, inverse="jacobi"))(rng)
  np.testing.assert_allclose(jacobi, images, atol=1e-5)  # the parallel inverse, same sample


def test_bits_per_dim():
  np.testing.assert_allclose(ntm.bits_per_dim(10.0 * math.log(2), 10), 1.0, rtol=1e-7)
  np.testing.assert_allclose(ntm.bits_per_dim(0.0, 10, data_scale=127.5),
                             math.log2(127.5), rtol=1e-7)


def test_bad_inputs(model):
  images, text, mask = data(model)
  with pytest.raises(ValueError, match="height 5 is not divisible by patch_size 2"):
    ntm.NTM(tiny_model_config(image_shape=(5, 4, 2)), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"got 3 channels, expected 2"):
    ntm.trajectory_nll(model, jnp.zeros((2, 4, 4, 3)), text[:2], mask[:2], jax.random.key(0),
                       num_steps=4)
  with pytest.raises(ValueError, match="num_steps"):
    ntm.trajectory_nll(model, images, text, mask, jax.random.key(0), num_steps=0)
  with pytest.raises(ValueError, match="num_steps"):
    ntm.pair_wise_nll(model, images, text, mask, jax.random.key(0), num_steps_set=(4, 0))
  with pytest.raises(ValueError, match="t_min_range"):
    ntm.trajectory_nll(model, images, text, mask, jax.random.key(0), num_steps=4,
                       t_min_range=(0.0, 1.0))
  with pytest.raises(ValueError, match=r"t_min must lie in \[0, 1\), got 1.5"):
    ntm.sample(model, jax.random.key(0), text, mask, num_steps=4, t_min=1.5)
  with pytest.raises(ValueError, match="guidance scale w must be >= 0, got -1.0"):
    ntm.sample(model, jax.random.key(0), text, mask, num_steps=4, guidance=-1.0)
