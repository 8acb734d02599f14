"""Props. 1-3, the schedule and log q of the forward chain, checked by Monte Carlo and exactly."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntm_jax import trajectory

TIMES = jnp.array([0.03, 0.35, 0.62, 0.83, 1.0])


def _chain(num_samples, x0_value=0.7, times=TIMES, seed=0):
  x0 = jnp.full((num_samples, 1), x0_value)
  traj = trajectory.forward_trajectory(jax.random.key(seed), x0,
                                       jnp.broadcast_to(times, (num_samples, times.size)))
  return np.asarray(traj[..., 0], np.float64)  # [samples, levels]


def test_schedule_matches_sd3_shift_and_ends_at_one():
  times = np.asarray(trajectory.shifted_schedule(4, 0.02, num_tokens=256))
  shift = math.exp(0.5)
  expected = [0.02] + [shift / (shift + 4 / k - 1) for k in range(1, 5)]
  np.testing.assert_allclose(times, expected, rtol=1e-6)
  assert times[-1] == 1.0
  trajectory.validate_schedule(times)


def test_schedule_per_example_t_min_and_multi_t():
  times = trajectory.shifted_schedule(8, jnp.array([0.0, 0.05]), num_tokens=64)
  assert times.shape == (2, 9)
  np.testing.assert_allclose(times[:, 0], [0.0, 0.05])
  np.testing.assert_allclose(times[0, 1:], times[1, 1:])
  assert (np.diff(np.asarray(times), axis=-1) > 0).all()


def test_prop1_every_marginal_is_q_xt_given_x0():
  traj = _chain(200_000)
  for k, t in enumerate(np.asarray(TIMES)):
    assert abs(traj[:, k].mean() - (1 - t) * 0.7) < 4 * t / math.sqrt(traj.shape[0]) + 1e-6
    np.testing.assert_allclose(traj[:, k].std(), t, rtol=0.01)


def test_prop3_trajectory_covariance():
  traj = _chain(200_000)
  empirical = np.cov(traj, rowvar=False)
  analytic = np.asarray(trajectory.trajectory_covariance(TIMES))
  np.testing.assert_allclose(empirical, analytic, atol=0.006)
  np.testing.assert_allclose(np.diag(analytic), np.asarray(TIMES) ** 2, rtol=1e-6)


@pytest.mark.parametrize("s_index,t_index", [(0, 1), (1, 2), (2, 4), (0, 4)])
def test_prop2_posterior_by_regression(s_index, t_index):
  x0 = 0.7
  traj = _chain(200_000, x0)
  xs, xt = traj[:, s_index], traj[:, t_index]
  design = np.stack([xt, np.ones_like(xt)], axis=1)
  (slope, intercept), *_ = np.linalg.lstsq(design, xs, rcond=None)
  residual_var = np.var(xs - design @ np.array([slope, intercept]))
  a, b, c2 = (float(v) for v in trajectory.posterior_coefficients(TIMES[t_index], TIMES[s_index]))
  assert abs(slope - a) < 0.01
  assert abs(intercept - b * x0) < 0.01
  np.testing.assert_allclose(residual_var, c2, rtol=0.02, atol=1e-6)


def test_posterior_edge_cases():
  s = jnp.array([0.0, 0.2, 0.5])
  a, b, c2 = trajectory.posterior_coefficients(jnp.ones(3), s)
  np.testing.assert_allclose(a, 0.0, atol=0)  # x_1 carries no information about x_s
  a, b, c2 = trajectory.posterior_coefficients(jnp.array(0.6), jnp.array(0.0))
  np.testing.assert_allclose([a, b, c2], [0.0, 1.0, 0.0], atol=1e-7)  # s = 0 is x_0


def test_forward_log_prob_equals_joint_minus_marginal():
  """log q(x_t1..x_tT | x_t0) = log q(x_t0..x_tT | x0) - log q(x_t0 | x0), exactly."""
  rng = np.random.default_rng(0)
  x0 = rng.normal(size=(3, 5)).astype(np.float32)
  times = jnp.broadcast_to(TIMES, (3, TIMES.size))
  traj = trajectory.forward_trajectory(jax.random.key(1), jnp.asarray(x0), times)
  ours = np.asarray(trajectory.forward_log_prob(traj, times).sum(-1), np.float64)

  t = np.asarray(TIMES, np.float64)
  # Independent of Prop. 3: Var(x_ti) = t_i^2 and x_tj = prod(alpha) x_ti + independent noise.
  cov = np.array([[t[min(i, j)] ** 2 * (1 - t[max(i, j)]) / (1 - t[min(i, j)])
                   if i != j else t[i] ** 2 for j in range(t.size)] for i in range(t.size)])
  resid = np.asarray(traj, np.float64) - (1 - t)[None, :, None] * x0[:, None, :]  # [b, L, d]
  inv = np.linalg.inv(cov)
  _, logdet = np.linalg.slogdet(cov)
  quad = np.einsum("bid,ij,bjd->b", resid, inv, resid)
  dims = x0.shape[1]
  joint = -0.5 * quad - 0.5 * dims * (logdet + t.size * math.log(2 * math.pi))
  first = (-0.5 * (resid[:, 0] ** 2).sum(-1) / t[0] ** 2
           - dims * (math.log(t[0]) + 0.5 * math.log(2 * math.pi)))
  np.testing.assert_allclose(ours, joint - first, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_num_steps(bad):
  with pytest.raises(ValueError, match="num_steps"):
    trajectory.shifted_schedule(bad, 0.0, num_tokens=16)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_bad_t_min(bad):
  with pytest.raises(ValueError, match=r"t_min must lie in \[0, 1\)"):
    trajectory.shifted_schedule(4, bad, num_tokens=16)


@pytest.mark.parametrize("times", [[0.0, 0.5, 0.4, 1.0], [0.0, 0.5, 0.5, 1.0], [0.0, 0.3, 0.9]])
def test_bad_schedule(times):
  with pytest.raises(ValueError, match="schedule"):
    trajectory.validate_schedule(times)
