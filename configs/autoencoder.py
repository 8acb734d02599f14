"""The image autoencoder whose latents a generator can model (ntm_jax/autoencoder.py).

  python -m ntm_jax.main --config=configs/autoencoder.py:shapes_latent --workdir=/tmp/ae
  python -m ntm_jax.main --config=configs/autoencoder.py:shapes_latent --workdir=/tmp/ae \\
      --mode=eval   # held-out PSNR, reconstruction grid, ShapesEval on reconstructions

It trains through the same loop as the generators (orbax checkpoints, clu metrics, resume) on
the preset's data, writes reconstruction grids to workdir/samples/, and when it finishes exports
its EMA parameters and per-channel latent statistics to workdir/latents/. A generator then
models those latents: --config=configs/t2i.py:shapes_latent (or fm.py) with
--config.latent.autoencoder_workdir=/tmp/ae.
"""

from ntm_jax import config_files


def get_config(preset: str = "shapes_latent"):
  config = config_files.sibling(__file__, "t2i").get_config(preset)
  config.method = "autoencoder"
  config.latent.autoencoder_workdir = ""  # it is the autoencoder
  config.model.text_encoder.kind = "hashed"  # captions pass through the pipeline unused
  config.model.autoencoder = dict(
      factor=4,  # downsampling factor per side (2, 4 or 8): 32x32 images -> 8x8 latents
      latent_channels=4,  # channels per latent pixel
      widths=(16, 32, 64),  # convolution width per resolution, full resolution first
                            # (log2(factor) + 1 entries)
      latent_noise=0.1,  # std of the fixed-variance posterior q(z | x) = N(E(x), s^2)
      prior_weight=1e-4,  # weight of the KL to N(0, I): mean squared latent mean
      statistics_batches=50,  # training batches the exported latent statistics average over
  )
  config.optim.update(peak_lr=2e-3, end_lr=1e-5, warmup_steps=100, weight_decay=0.0,
                      ema_decay=0.999)
  PRESET_CHANGES.get(preset, lambda config: None)(config)
  return config


# What the autoencoder changes in a configs/t2i.py preset, by preset name.
PRESET_CHANGES = {
    # Shapes are flat colours on white: 1,200 steps of 64 reach ~34 dB held-out PSNR.
    "shapes_latent": lambda config: config.train.update(num_steps=1_200),
    # The shapes widths (doubling them cost 4x per step, 0.5 steps/s on one core).
    "emoji_latent": lambda config: config.train.update(num_steps=1_500),
    "micro": lambda config: config.model.autoencoder.update(factor=2, widths=(8, 16),
                                                            statistics_batches=2),
}
