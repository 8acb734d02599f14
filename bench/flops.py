"""Matrix-multiply FLOPs of a JAX function, counted on its jaxpr.

XLA's compiled.cost_analysis() counts the body of a while loop once, whatever its trip count,
and every Transformer here scans its layers: a depth-24 predictor reads as one layer. This
counter walks the jaxpr instead and multiplies a scan body by its length. It counts
dot_general and convolutions (2 FLOPs per multiply-add), the numerator of model FLOP
utilization; elementwise work is left out, as is customary. A while loop whose trip count the
jaxpr does not state is counted once and reported in `unbounded_loops`.
"""

import math

import jax
from jax.extend import core


def _dot_general(eqn) -> float:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  batch = math.prod(lhs[d] for d in lhs_batch)
  contract = math.prod(lhs[d] for d in lhs_contract)
  lhs_free = math.prod(s for d, s in enumerate(lhs) if d not in (*lhs_contract, *lhs_batch))
  rhs_free = math.prod(s for d, s in enumerate(rhs) if d not in (*rhs_contract, *rhs_batch))
  return 2.0 * batch * contract * lhs_free * rhs_free


def _convolution(eqn) -> float:
  kernel = eqn.invars[1].aval.shape
  rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, spatial...)
  per_output = kernel[rhs_spec[1]] * math.prod(kernel[d] for d in rhs_spec[2:])
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output


def _count(jaxpr, stats: dict) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name, params = eqn.primitive.name, eqn.params
    if name == "dot_general":
      total += _dot_general(eqn)
    elif name == "conv_general_dilated":
      total += _convolution(eqn)
    elif name == "scan":
      total += params["length"] * _count(params["jaxpr"].jaxpr, stats)
    elif name == "while":
      stats["unbounded_loops"] += 1
      total += _count(params["body_jaxpr"].jaxpr, stats)
    elif name == "cond":
      total += max(_count(b.jaxpr, stats) for b in params["branches"])
    else:
      for value in params.values():
        if isinstance(value, (core.ClosedJaxpr, core.Jaxpr)):
          total += _count(value.jaxpr if isinstance(value, core.ClosedJaxpr) else value, stats)
  return total


def matmul_flops(fn, *args, **kwargs) -> dict:
  """{"flops": matmul FLOPs of one call of fn(*args, **kwargs), "unbounded_loops": n}; args
  may be arrays or jax.ShapeDtypeStruct (nothing is computed)."""
  stats = {"unbounded_loops": 0}
  flops = _count(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr, stats)
  return {"flops": flops, **stats}
