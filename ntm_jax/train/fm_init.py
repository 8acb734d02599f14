"""Starting an NTM from a flow-matching run of this codebase (docs/method.md §7, paper 3.3).

`--config.init.fm_workdir=DIR` names a run trained with configs/fm.py and the same preset. At
step 0 the NTM's text path and predictor (posterior form) become the FM network's EMA weights
and the transporter stays the identity, so the NTM starts as the FM posterior sampler. A frozen
copy of the FM network provides the mean-alignment loss for the whole run (resumes reload it).
"""

import jax
import ml_collections
from absl import logging

from ntm_jax import flow_matching
from ntm_jax import methods
from ntm_jax.runtime import checkpointing


def fm_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config of the FM run an NTM config starts from: same model sizes, method changed."""
  fm = ml_collections.ConfigDict(config.to_dict())
  fm.method = "flow_matching"
  return fm


def check(config: ml_collections.ConfigDict) -> None:
  method = methods.get(config)
  if method is not methods.NTM:
    raise ValueError(f"init.fm_workdir initializes an NTM; method is {method.name!r}")
  if config.model.predictor.parametrization != "posterior":
    raise ValueError("init.fm_workdir needs --config.model.predictor.parametrization=posterior "
                     "(the FM velocity becomes the predictor's posterior mean)")


def attach(rt, config: ml_collections.ConfigDict):
  """rt with the FM run's EMA parameters, loaded onto its mesh, as the frozen alignment
  reference (a new runtime: rt itself is not changed)."""
  check(config)
  fm_rt, fm_state = checkpointing.restore_latest(fm_config(config), config.init.fm_workdir,
                                                 devices=rt.mesh.devices.ravel().tolist())
  logging.info("Flow-matching network from %s, step %d", config.init.fm_workdir,
               int(fm_state.step))
  return rt.with_frozen_fm(fm_rt.graphdef, fm_state.ema_params)


def initial_state(rt, state):
  """A fresh NTM state whose parameters (and EMA) start from the attached FM network."""
  params = flow_matching.init_ntm_from_fm(state.params, rt.fm_params)
  # Fresh buffers: the training step donates params and EMA but keeps the frozen FM network.
  fresh = lambda: jax.device_put(params, rt.state_shardings.params, may_alias=False)
  return state.replace(params=fresh(), ema_params=fresh())
