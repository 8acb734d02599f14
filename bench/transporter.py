"""Transporter exactness (round trip, log-det vs slogdet) and inverse compile time.

The inverse is a lax.scan over tokens with a preallocated cache and a scan over stacked layers,
so its compile time should not grow with sequence length or depth. Prints one JSON object.

  python bench/transporter.py
"""

import time

import jax
import jax.numpy as jnp
from flax import nnx

import cli  # bench/cli.py
from ntm_jax import transporter


def compile_seconds(num_tokens: int, depth: int, width: int = 64, channels: int = 4) -> dict:
  model = nnx.eval_shape(lambda: transporter.Transporter(
      channels=channels, num_tokens=num_tokens, num_blocks=2, depth=depth, width=width,
      num_heads=4, num_kv_heads=2, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  inverse = jax.jit(lambda state, u, t, steps: nnx.merge(graphdef, state).inverse(u, t, steps))
  args = (state, jax.ShapeDtypeStruct((2, num_tokens, channels), jnp.float32),
          jax.ShapeDtypeStruct((2,), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32))
  start = time.perf_counter()
  lowered = inverse.lower(*args)
  lowered_at = time.perf_counter()
  lowered.compile()
  end = time.perf_counter()
  return {"num_tokens": num_tokens, "depth": depth, "trace_lower_s": round(lowered_at - start, 3),
          "compile_s": round(end - lowered_at, 3)}


def exactness(num_tokens: int = 16, channels: int = 3, scale: float = 0.1) -> dict:
  """Errors of a 2-block, depth-2 transporter with parameters perturbed by scale * N(0, 1)."""
  model = transporter.Transporter(channels=channels, num_tokens=num_tokens, num_blocks=2, depth=2,
                                  width=32, num_heads=4, num_kv_heads=2, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)
  batch = 8
  x = jax.random.normal(jax.random.key(2), (batch, num_tokens, channels))
  t, steps = jnp.linspace(0.02, 0.95, batch), jnp.full((batch,), 4.0)
  u, logdet = jax.jit(model)(x, t, steps)
  cached = jax.jit(model.inverse)(u, t, steps)
  reference = jax.jit(model.reference_inverse)(u, t, steps)

  def jacobian(v, t_i, s_i):
    f = lambda v: model(v.reshape(1, num_tokens, channels), t_i[None], s_i[None])[0].ravel()
    return jax.jacfwd(f)(v.ravel())

  _, slogdet = jnp.linalg.slogdet(jax.jit(jax.vmap(jacobian))(x, t, steps))
  return {"num_tokens": num_tokens, "param_noise": scale,
          "mean_abs_logdet": float(jnp.abs(logdet).mean()),
          "max_logdet_error_vs_slogdet": float(jnp.abs(logdet - slogdet).max()),
          "max_round_trip_error_cached": float(jnp.abs(cached - x).max()),
          "max_round_trip_error_reference": float(jnp.abs(reference - x).max()),
          "max_cached_vs_reference": float(jnp.abs(cached - reference).max())}


def main():
  compile_seconds(16, 1)  # warm up JAX's own one-time costs
  rows = [compile_seconds(n, d) for n, d in [(64, 2), (256, 2), (64, 8)]]
  cli.print_json("transporter", {"exactness_float32": exactness(), "inverse_compile": rows})


if __name__ == "__main__":
  main()
