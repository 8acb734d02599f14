"""On Gaussian data the forward trajectory has a closed-form density. A trained NTM's held-out
trajectory NLL can never beat its entropy (cross-entropy >= entropy), and training approaches it.
The marginal bound on x_t0 likewise stays above the exact entropy of x_t0."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers import build, tiny_model_config
from ntm_jax import ntm
from ntm_jax import trajectory

NUM_STEPS, T_MIN, BATCH, TRAIN_STEPS = 4, 0.05, 128, 300


def gaussian_problem():
  config = tiny_model_config(image_shape=(2, 2, 2), patch_size=1, text_dim=4)
  config.transporter.update(num_blocks=1, depth=1)
  config.predictor.update(depth=1)
  rng = np.random.default_rng(0)
  mean = rng.uniform(-0.5, 0.5, config.image_shape)
  std = rng.uniform(0.1, 0.6, config.image_shape)
  return config, mean, std


def trajectory_law(mean, std, times):
  """Per data dimension: the mean [dims, levels] and covariance [dims, levels, levels]."""
  t = np.asarray(times, np.float64)
  levels = np.arange(t.size)
  lo, hi = np.minimum.outer(levels, levels), np.maximum.outer(levels, levels)
  with np.errstate(divide="ignore", invalid="ignore"):  # the (t_T, t_T) entry takes t_T^2
    noise_cov = np.where(lo == hi, t[lo] ** 2, t[lo] ** 2 * (1 - t[hi]) / (1 - t[lo]))
  scale = np.outer(1 - t, 1 - t)
  cov = scale[None] * (std.ravel() ** 2)[:, None, None] + noise_cov[None]
  return mean.ravel()[:, None] * (1 - t)[None], cov


def gaussian_log_prob(x, mean, cov):
  """x: [batch, dims, levels] -> [batch] (float64)."""
  resid = x - mean[None]
  quad = np.einsum("bdi,dij,bdj->b", resid, np.linalg.inv(cov), resid)
  logdet = np.linalg.slogdet(2 * math.pi * cov)[1].sum()
  return -0.5 * (quad + logdet)


def test_trained_nll_stays_above_and_approaches_the_trajectory_entropy():
  config, mean, std = gaussian_problem()
  model = build(ntm.NTM, config)
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  text, mask = jnp.zeros((BATCH, 1, config.text_dim)), jnp.ones((BATCH, 1), bool)
  draw = lambda key, n: mean + std * jax.random.normal(key, (n,) + config.image_shape)

  graphdef, trained = nnx.split((model, optimizer))

  def train_step(trained, key):
    model, optimizer = nnx.merge(graphdef, trained)
    key_data, key_traj = jax.random.split(key)

    def loss_fn(model):
      out = ntm.trajectory_nll(model, draw(key_data, BATCH), text, mask, key_traj,
                               num_steps=NUM_STEPS, t_min_range=(T_MIN, T_MIN))
      return out["nll"].mean() / model.num_dims

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss

  # 300 steps of one program: here running costs more than compiling, so this one program is
  # optimized (tests/conftest.py compiles everything else at level 0): the test takes 16 s
  # instead of 25 s on an idle core.
  train_step = jax.jit(train_step, donate_argnums=0,
                       compiler_options={"xla_backend_optimization_level": 2})
  losses = []
  for key in jax.random.split(jax.random.key(1), TRAIN_STEPS):
    trained, loss = train_step(trained, key)
    losses.append(float(loss))
  model, _ = nnx.merge(graphdef, trained)

  # Held-out trajectories drawn independently of training.
  num_eval = 8192
  times = trajectory.shifted_schedule(NUM_STEPS, T_MIN, num_tokens=4)
  key_data, key_traj = jax.random.split(jax.random.key(123))
  images = draw(key_data, num_eval)
  x = trajectory.forward_trajectory(key_traj, model.tokens(images),
                                    jnp.broadcast_to(times, (num_eval, times.size)))
  out = jax.jit(lambda x: ntm.nll_of_trajectory(
      model, x, jnp.broadcast_to(times, (num_eval, times.size)),
      jnp.zeros((num_eval, 1, config.text_dim)), jnp.ones((num_eval, 1), bool)))(x)

  dims = model.num_dims
  law_mean, law_cov = trajectory_law(mean, std, times)
  entropy = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * law_cov)[1].sum() / dims
  nll = np.asarray(out["nll"], np.float64) / dims
  # Tokens are pixels (patch 1), so x[b, level, token, channel] is data dim (token, channel).
  x_dims = np.asarray(x, np.float64).reshape(num_eval, NUM_STEPS + 1, dims).transpose(0, 2, 1)
  true_nll = -gaussian_log_prob(x_dims, law_mean, law_cov) / dims
  kl = nll - true_nll  # per-sample estimate of KL(q || p) per dim: low variance
  kl_stderr = kl.std() / math.sqrt(num_eval)

  print(f"held-out nll {nll.mean():.4f} nats/dim, entropy {entropy:.4f}, "
        f"KL {kl.mean():.4f} +- {kl_stderr:.4f}")
  assert losses[-1] < losses[0] - 1.0
  assert nll.mean() > entropy - 3 * nll.std() / math.sqrt(num_eval)
  assert kl.mean() > -3 * kl_stderr
  assert nll.mean() - entropy < 0.05
  assert kl.mean() < 0.05

  # -log p(x_t0) <= bound, so E[bound] >= H(x_t0) = sum_d 0.5 log(2 pi e Var(x_t0,d)).
  var_t0 = (1 - float(times[0])) ** 2 * std.ravel() ** 2 + float(times[0]) ** 2
  marginal_entropy = 0.5 * np.log(2 * math.pi * math.e * var_t0).sum() / dims
  bound = np.asarray(out["bound"], np.float64) / dims
  print(f"marginal bound {bound.mean():.4f} >= H(x_t0) {marginal_entropy:.4f} nats/dim")
  assert bound.mean() > marginal_entropy - 3 * bound.std() / math.sqrt(num_eval)
