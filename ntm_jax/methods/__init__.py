"""The training methods, one module each, and the one place that reads `config.method`.

  ntm            the NTM, by exact trajectory likelihood (methods/ntm.py)
  flow_matching  the flow-matching baseline (methods/flow_matching.py)
  autoencoder    the autoencoder generators can work in the latents of (methods/autoencoder.py)

The NTM's distilled denoiser (--mode=distill) is defined in methods/denoiser.py. A new method is
one module defining a base.Method, registered below.
"""

from ntm_jax.methods import autoencoder
from ntm_jax.methods import base
from ntm_jax.methods import flow_matching
from ntm_jax.methods import ntm

Method = base.Method
NTM, FLOW_MATCHING, AUTOENCODER = ntm.METHOD, flow_matching.METHOD, autoencoder.METHOD
METHODS = {m.name: m for m in (NTM, FLOW_MATCHING, AUTOENCODER)}


def get(config) -> base.Method:
  """The Method of a config (its `method` field)."""
  if config.method not in METHODS:
    raise ValueError(f"method must be one of {tuple(METHODS)}, got {config.method!r}")
  return METHODS[config.method]
