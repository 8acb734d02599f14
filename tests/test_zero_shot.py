"""Zero-shot classification by the exact likelihood (evaluate/zero_shot.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from helpers import build, tiny_model_config
from ntm_jax import ntm
from ntm_jax import trajectory
from ntm_jax.evaluate import zero_shot


def two_class_data(rng, batch):
  """Class 0: images near -0.6, class 1: near +0.6 (4x4x2), and each class's caption."""
  labels = jax.random.bernoulli(rng, 0.5, (batch,)).astype(jnp.int32)
  noise = 0.1 * jax.random.normal(jax.random.fold_in(rng, 1), (batch, 4, 4, 2))
  return (labels * 1.2 - 0.6)[:, None, None, None] + noise, labels


def trained_two_class_model():
  model = build(ntm.NTM, tiny_model_config())
  captions = jax.random.normal(jax.random.key(9), (2, 3, model.text_dim))
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, rng):
    images, labels = two_class_data(rng, 32)
    loss_fn = lambda m: jnp.mean(ntm.trajectory_nll(
        m, images, captions[labels], jnp.ones((32, 3), bool), jax.random.fold_in(rng, 2),
        num_steps=4)["nll"])
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  for i in range(60):  # 40 already separate the classes perfectly
    step(model, optimizer, jax.random.key(i))
  return model, captions


def test_zero_shot_separates_two_trained_classes_and_scores_agree():
  model, captions = trained_two_class_model()
  images, labels = two_class_data(jax.random.key(1000), 64)
  scores = jax.jit(lambda images, rng: zero_shot.caption_scores(
      model, images, captions, jnp.ones((2, 3), bool), rng, num_steps=4, trajectories=3))(
          images, jax.random.key(3))
  accuracy = zero_shot.accuracy_against_trajectories(scores, labels)
  assert float(accuracy["mean_trajectory_nll"][-1]) >= 0.9
  assert float(accuracy["importance_weighted_nll"][-1]) >= 0.9
  # At K = 1 the importance-weighted estimate is the trajectory's bound: its NLL plus
  # log q(trajectory | x), the same for every caption (common random numbers).
  gap = scores["importance_weighted_nll"][..., 0] - scores["trajectory_nll"][..., 0]
  np.testing.assert_allclose(gap[:, 0], gap[:, 1], atol=1e-3)
  times = trajectory.shifted_schedule(4, jnp.zeros(64), model.num_tokens)
  x = trajectory.forward_trajectory(jax.random.split(jax.random.fold_in(jax.random.key(3), 0),
                                                     3)[1], model.tokens(images), times)
  np.testing.assert_allclose(gap[:, 0], trajectory.forward_log_prob(x, times).sum(-1),
                             rtol=1e-4, atol=1e-2)
