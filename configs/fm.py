"""Flow-matching baseline: configs/t2i.py's data, backbone, text encoder and presets, trained
with the flow-matching loss (ntm_jax/flow_matching.py).

  python -m ntm_jax.main --config=configs/fm.py:tiny --workdir=/tmp/fm_tiny
  python -m ntm_jax.main --config=configs/fm.py:tiny --workdir=/tmp/fm_tiny --mode=sample \\
      --config.sample.sampler=heun --config.sample.num_steps=50

Its checkpoint can start an NTM: configs/ntm_from_fm.py.
"""

import importlib.util
import os


def _t2i():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "t2i.py")
  spec = importlib.util.spec_from_file_location("configs_t2i", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(preset: str = ""):
  config = _t2i().get_config(preset)
  config.method = "flow_matching"
  config.sample.update(sampler="euler", t_min=0.0)  # Euler to t = 0 at sample.num_steps
  return config
