"""Flow-matching baseline: configs/t2i.py's data, backbone, text encoder and presets, trained
with the flow-matching loss (ntm_jax/flow_matching.py).

  python -m ntm_jax.main --config=configs/fm.py:tiny --workdir=/tmp/fm_tiny
  python -m ntm_jax.main --config=configs/fm.py:tiny --workdir=/tmp/fm_tiny --mode=sample \\
      --config.sample.sampler=heun --config.sample.num_steps=50

Its checkpoint can start an NTM: configs/ntm_from_fm.py.
"""

from ntm_jax import config_files


def get_config(preset: str = ""):
  config = config_files.sibling(__file__, "t2i").get_config(preset)
  config.method = "flow_matching"
  config.sample.update(sampler="euler", t_min=0.0)  # Euler to t = 0 at sample.num_steps
  PRESET_CHANGES.get(preset, lambda config: None)(config)
  return config


def _latent(config, num_steps: int = 12_000):
  """The NTM's wall-clock (about 3.8 steps/s beside it on 2 cores), stopping partway down a
  30,000-step cosine (the rate still two thirds of its peak) instead of annealing to the floor:
  better samples at this length (docs/results/shapes_latent.md)."""
  config.train.num_steps = num_steps
  config.optim.schedule_steps = 30_000


# What flow matching changes in a configs/t2i.py preset, by preset name.
PRESET_CHANGES = {
    "shapes_latent": _latent,
    # With configs/ntm_from_fm.py's 2,000 steps after it: the NTM's wall-clock.
    "emoji_latent": lambda config: _latent(config, num_steps=8_000),
}
