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
  if preset in ("shapes_latent", "emoji_latent"):  # the NTM's wall-clock (3.8 steps/s beside it on 2 cores)
    config.train.num_steps = 12_000
    # Stop 12,000 steps into a 30,000-step cosine (the rate still two thirds of its peak)
    # instead of annealing to the floor:
    # ShapesEval Euler 50 at step 12,000 rose from 0.396 to 0.533 (seen), Euler 4 from 0.303 to
    # 0.423 (hashed text encoder; docs/results/shapes_latent.md).
    config.optim.schedule_steps = 30_000
  if preset == "emoji_latent":  # with configs/ntm_from_fm.py's 2,000 steps, the NTM's wall-clock
    config.train.num_steps = 8_000
  return config
