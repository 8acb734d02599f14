"""The flow-matching baseline and NTM initialization from it (docs/method.md §7 and §9)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import fm as fm_configs
from configs import ntm_from_fm
from helpers import build, random_text, randomize, tiny_model_config, train_batches
from helpers import training_losses
from ntm_jax import flow_matching
from ntm_jax import ntm
from ntm_jax import predictor
from ntm_jax import trajectory
from ntm_jax.runtime import runtime
from ntm_jax.train import fm_init
from ntm_jax.train import loop


def fm_and_initialized_ntm(delta_mean=True):
  config = tiny_model_config(**{"predictor.parametrization": "posterior",
                                "predictor.delta_mean": delta_mean})
  fm = randomize(build(flow_matching.FlowMatching, config, seed=3), seed=4)
  model = build(ntm.NTM, config)
  nnx.update(model, flow_matching.init_ntm_from_fm(nnx.state(model), nnx.state(fm)))
  return fm, model


@pytest.mark.parametrize("delta_mean", [True, False])
def test_fm_initialized_ntm_steps_are_the_fm_posterior_steps(delta_mean):
  fm, model = fm_and_initialized_ntm(delta_mean)
  batch = 6
  u = jax.random.normal(jax.random.key(0), (batch, model.num_tokens, model.channels))
  t = jnp.array([1.0, 0.9, 0.7, 0.5, 0.3, 0.1])
  s = jnp.array([0.7, 0.5, 0.3, 0.1, 0.0, 0.0])  # s = 0: C = 0, only the floor is left
  steps = jnp.full((batch,), 4.0)
  text, mask = random_text(1, batch, dim=model.text_dim)
  mu, log_sigma = jax.jit(model.predictor)(u, t, s, steps, text, mask)
  velocity = jax.jit(fm)(u, t, text, mask)
  mu_fm, log_sigma_fm = predictor.posterior_gaussian(u, t, s, velocity, 1e-3)
  np.testing.assert_allclose(mu, mu_fm, atol=1e-6)
  np.testing.assert_allclose(log_sigma, jnp.broadcast_to(log_sigma_fm, mu.shape), atol=1e-6)
  x_same, logdet = jax.jit(model.transporter)(u, t, steps)  # the identity at init
  np.testing.assert_array_equal(x_same, u)
  np.testing.assert_array_equal(logdet, 0.0)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_fm_initialized_ntm_samples_equal_the_fm_posterior_sampler(guidance):
  fm, model = fm_and_initialized_ntm()
  text, mask = random_text(2, 4, dim=model.text_dim)
  kwargs = dict(num_steps=4, guidance=guidance, t_min=0.02)
  rng = jax.random.key(5)
  ours = jax.jit(lambda r: ntm.sample(model, r, text, mask, **kwargs))(rng)
  theirs = jax.jit(lambda r: flow_matching.sample_posterior(fm, r, text, mask, **kwargs))(rng)
  assert np.abs(theirs).max() > 0.5
  np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_mean_alignment_is_zero_at_init_and_grows_when_the_means_move():
  fm, model = fm_and_initialized_ntm()
  batch = 4
  images = jax.random.uniform(jax.random.key(0), (batch,) + model.image_shape, minval=-1.0)
  text, mask = random_text(3, batch, dim=model.text_dim)
  reference = flow_matching.posterior_mean_reference(fm)
  run = jax.jit(lambda m: (
      ntm.trajectory_nll(m, images, text, mask, jax.random.key(1), num_steps=4,
                         mean_reference=reference)["mean_alignment"],
      ntm.pair_wise_nll(m, images, text, mask, jax.random.key(1),
                        mean_reference=reference)["mean_alignment"]))
  end_to_end, pair_wise = run(model)
  np.testing.assert_allclose(end_to_end, 0.0, atol=1e-9)
  np.testing.assert_allclose(pair_wise, 0.0, atol=1e-9)
  moved = randomize(model, seed=7, scale=0.05)
  assert (run(moved)[0] > 1e-3).all()


def test_init_needs_the_posterior_form_and_matching_sizes():
  fm = build(flow_matching.FlowMatching, tiny_model_config())
  direct = build(ntm.NTM, tiny_model_config())
  with pytest.raises(ValueError, match="parametrization='posterior'"):
    flow_matching.init_ntm_from_fm(nnx.state(direct), nnx.state(fm))
  wider = build(ntm.NTM, tiny_model_config(**{"predictor.parametrization": "posterior",
                                              "predictor.width": 64}))
  with pytest.raises(ValueError, match="shape mismatch"):
    flow_matching.init_ntm_from_fm(nnx.state(wider), nnx.state(fm))


def test_training_times_cover_the_unit_interval_with_the_schedule_shift():
  t = np.asarray(flow_matching.sample_times(jax.random.key(0), 20_000, num_tokens=16))
  assert 0.0 <= t.min() < 0.01 and 0.99 < t.max() <= 1.0
  tau = np.linspace(0.0, 1.0, 9)[1:]  # the shifted schedule's levels are the same map
  np.testing.assert_allclose(np.quantile(t, tau[:-1]),
                             trajectory.shifted_time(np.arange(1, 8), 8, 0.0, 16), atol=0.01)


def test_euler_with_many_steps_approaches_heun():
  fm = randomize(build(flow_matching.FlowMatching, tiny_model_config(), seed=3), seed=4)
  text, mask = random_text(2, 4, dim=fm.text_dim)
  run = lambda sampler, n: jax.jit(lambda r: sampler(fm, r, text, mask, num_steps=n,
                                                     guidance=1.0))(jax.random.key(0))
  reference = run(flow_matching.sample_heun, 256)
  errors = [float(np.abs(run(flow_matching.sample_euler, n) - reference).max())
            for n in (8, 32, 128)]
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] < 0.15 * errors[0]  # first order: 16x the steps, ~1/16 the error asymptotically


@pytest.fixture(scope="module")
def fm_workdir(tmp_path_factory):
  """A micro FM run through the training system (checkpoints, logging, eval)."""
  workdir = str(tmp_path_factory.mktemp("fm"))
  config = fm_configs.get_config("micro")
  config.train.update(num_steps=40, eval_every=40, checkpoint_every=40)
  loop.train_and_evaluate(config, workdir)
  return workdir


def test_fm_loss_decreases():
  losses = training_losses(fm_configs.get_config("micro"), "fm_loss", 60)
  assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_finetuning_from_fm_starts_aligned_and_lowers_the_nll(fm_workdir):
  config = ntm_from_fm.get_config("micro")
  config.init.fm_workdir = fm_workdir
  rt = runtime.build(config)
  rt = fm_init.attach(rt, config)
  state = fm_init.initial_state(rt, rt.create_state())
  batches = [rt.global_batch(b) for b in train_batches(config, 31)]
  held_out = batches.pop()
  nll = lambda s: float(rt.eval_step(4)(s.params, held_out, jax.random.key(0))[
      "nll_nats_per_dim"])
  before = nll(state)
  step = rt.train_step(4)
  state, metrics, _ = step(state, batches[0])
  assert float(metrics["mean_alignment_per_dim"]) < 1e-9  # the NTM is the FM at step 0
  assert float(metrics["mean_alignment_weight"]) == pytest.approx(2.5)
  for batch in batches[1:]:
    state, metrics, _ = step(state, batch)
  after = nll(state)
  assert after < 0.5 * before, (before, after)
