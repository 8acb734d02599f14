"""The transporter is an exact flow: identity at init and at t = 1, exact log-det, triangular
Jacobian per block, invertible, and the KV-cached and parallel (Jacobi) inverses equal the
full-recompute inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import build, randomize
from ntm_jax import transporter

TOKENS, CHANNELS = 6, 3


def make(num_blocks=2, depth=2, seed=0, random=True, channel_mixing=False):
  model = build(transporter.Transporter, channels=CHANNELS, num_tokens=TOKENS, num_blocks=num_blocks,
                                  depth=depth, width=32, num_heads=4, num_kv_heads=2,
                                  channel_mixing=channel_mixing, seed=seed)
  return randomize(model, seed) if random else model


def inputs(batch=3, seed=1):
  x = jax.random.normal(jax.random.key(seed), (batch, TOKENS, CHANNELS))
  t = jnp.linspace(0.05, 0.9, batch)
  return x, t, jnp.full((batch,), 4.0)


def block(model, index):
  """The index-th flow block as a standalone module."""
  graphdef, state = nnx.split(model.blocks)
  return nnx.merge(graphdef, jax.tree.map(lambda p: p[index], state))


@pytest.mark.parametrize("channel_mixing", [False, True])
def test_identity_at_init(channel_mixing):
  model = make(random=False, channel_mixing=channel_mixing)
  x, t, steps = inputs()
  u, logdet = jax.jit(model)(x, t, steps)
  np.testing.assert_array_equal(u, x)
  np.testing.assert_array_equal(logdet, 0.0)


@pytest.mark.parametrize("channel_mixing", [False, True])
def test_exact_identity_at_t_equal_one_for_random_parameters(channel_mixing):
  model = make(channel_mixing=channel_mixing)
  x, _, steps = inputs()
  forward = jax.jit(model)
  u, logdet = forward(x, jnp.ones(x.shape[0]), steps)
  np.testing.assert_array_equal(u, x)
  np.testing.assert_array_equal(logdet, 0.0)
  assert not np.allclose(forward(x, jnp.full(x.shape[0], 0.3), steps)[0], x)


@pytest.mark.parametrize("num_blocks, channel_mixing", [(1, False), (2, False), (3, False),
                                                         (2, True)])
def test_logdet_equals_slogdet_of_autodiff_jacobian(num_blocks, channel_mixing):
  model = make(num_blocks=num_blocks, channel_mixing=channel_mixing)
  x, t, steps = inputs()
  _, logdet = jax.jit(model)(x, t, steps)

  def jacobian(v, t_i, steps_i):
    f = lambda v: model(v.reshape(1, TOKENS, CHANNELS), t_i[None], steps_i[None])[0].ravel()
    return jax.jacfwd(f)(v.ravel())

  sign, expected = jnp.linalg.slogdet(jax.jit(jax.vmap(jacobian))(x, t, steps))
  np.testing.assert_array_equal(sign, 1.0)
  np.testing.assert_allclose(logdet, expected, atol=2e-5, rtol=1e-5)
  assert np.abs(logdet).min() > 0.1  # the check is about a non-trivial map


@pytest.mark.parametrize("num_blocks, channel_mixing", [(1, False), (3, False), (2, True)])
def test_per_token_logdet_is_each_positions_diagonal_jacobian_blocks_and_sums_to_the_total(
    num_blocks, channel_mixing):
  """Entry n of the per-token log-det = sum over blocks of slogdet(dz_i/dx_i) at the token i
  that is image position n (blocks applied one by one here, flipping as the stack does)."""
  model = make(num_blocks=num_blocks, channel_mixing=channel_mixing)
  x, t, steps = inputs()
  u, per_token = jax.jit(model.forward)(x, t, steps)
  np.testing.assert_allclose(per_token.sum(-1), jax.jit(model)(x, t, steps)[1], rtol=1e-6)
  np.testing.assert_array_equal(u, jax.jit(model)(x, t, steps)[0])

  expected, h, position = np.zeros(per_token.shape), x, np.arange(TOKENS)
  for index in range(num_blocks):
    flow = block(model, index)
    f = lambda v, t_b, steps_b: flow.forward(v[None], t_b[None], steps_b[None])[0][0]
    jacobian = np.asarray(jax.jit(jax.vmap(jax.jacfwd(f)))(h, t, steps))  # [b, T, C, T, C]
    diagonal_blocks = jacobian[:, np.arange(TOKENS), :, np.arange(TOKENS), :]  # [T, b, C, C]
    expected[:, position] += np.linalg.slogdet(diagonal_blocks)[1].T
    h, position = jnp.flip(flow.forward(h, t, steps)[0], axis=1), position[::-1]
  np.testing.assert_allclose(per_token, expected, atol=2e-5, rtol=1e-5)
  assert np.abs(per_token - per_token.mean(-1, keepdims=True)).max() > 1e-2  # not a flat split


@pytest.mark.parametrize("index", [0, 1])
def test_each_block_has_triangular_jacobian_in_its_scan_order(index):
  """dz_i/dx_j = 0 for tokens j > i, and dz_i/dx_i is diagonal (elementwise affine)."""
  model = make()
  x, t, steps = inputs(batch=1)
  flow = block(model, index)
  f = lambda v: flow.forward(v.reshape(1, TOKENS, CHANNELS), t, steps)[0].ravel()
  jacobian = np.asarray(jax.jit(jax.jacfwd(f))(x.ravel())).reshape(TOKENS, CHANNELS, TOKENS, CHANNELS)
  for i in range(TOKENS):
    for j in range(TOKENS):
      if j > i:
        np.testing.assert_array_equal(jacobian[i, :, j, :], 0.0)
    diag = jacobian[i, :, i, :]
    np.testing.assert_array_equal(diag - np.diag(np.diag(diag)), 0.0)
  # The conditioner is not trivial: later tokens do depend on earlier ones.
  assert np.abs(jacobian[-1, :, 0, :]).max() > 1e-4


def test_scan_direction_alternates_between_blocks():
  """Two blocks compose a lower- and an upper-triangular map: the Jacobian is neither."""
  model = make(num_blocks=2)
  x, t, steps = inputs(batch=1)
  f = lambda v: model(v.reshape(1, TOKENS, CHANNELS), t, steps)[0].ravel()
  jacobian = np.asarray(jax.jit(jax.jacfwd(f))(x.ravel())).reshape(TOKENS, CHANNELS, TOKENS, CHANNELS)
  assert np.abs(jacobian[0, :, -1, :]).max() > 1e-4  # first token depends on the last
  assert np.abs(jacobian[-1, :, 0, :]).max() > 1e-4  # last token depends on the first


@pytest.mark.parametrize("num_blocks, channel_mixing", [(1, False), (2, False), (3, False),
                                                         (2, True)])
def test_round_trip_and_cached_inverse_equals_reference(num_blocks, channel_mixing):
  model = make(num_blocks=num_blocks, channel_mixing=channel_mixing)
  x, t, steps = inputs()
  u, _ = jax.jit(model)(x, t, steps)
  cached = jax.jit(lambda u: model.inverse(u, t, steps))(u)
  reference = jax.jit(lambda u: model.reference_inverse(u, t, steps))(u)
  assert np.abs(cached - x).max() < 1e-5
  assert np.abs(reference - x).max() < 1e-5
  np.testing.assert_allclose(cached, reference, atol=5e-6)
  assert np.abs(u - x).max() > 0.1
  # The parallel (Jacobi) inverse: exact to float tolerance in at most TOKENS iterations per
  # block; a tolerance stops it earlier, still close.
  jacobi = jax.jit(lambda u, tol: model.jacobi_inverse(u, t, steps, tol))
  exact, iterations = jacobi(u, 0.0)
  np.testing.assert_allclose(exact, cached, atol=1e-5)
  assert iterations.shape == (num_blocks,) and np.all((1 <= iterations) & (iterations <= TOKENS))
  close, fewer = jacobi(u, 1e-3)
  assert np.all(fewer <= iterations) and np.abs(close - cached).max() < 1e-2
  np.testing.assert_allclose(model.inverse(u, t, steps, "jacobi"), exact, atol=1e-5)


def test_bad_shapes_raise_clear_errors():
  model = make()
  x, t, steps = inputs()
  with pytest.raises(ValueError, match=r"expects \[batch, 6, 3\] tokens, got shape \(3, 6, 4\)"):
    model(jnp.zeros((3, TOKENS, 4)), t, steps)
  with pytest.raises(ValueError, match="got shape"):
    model.inverse(jnp.zeros((3, TOKENS + 1, CHANNELS)), t, steps)
  with pytest.raises(ValueError, match="num_blocks"):
    make(num_blocks=-1)
  with pytest.raises(ValueError, match="inverse must be one of"):
    model.inverse(x, t, steps, method="newton")
