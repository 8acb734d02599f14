"""What an autoencoder run (configs/autoencoder.py) does when the shared training loop finishes:
the export a generator on its latents loads (ntm_jax/latents.py)."""

import os

import numpy as np
from absl import logging

from ntm_jax import files
from ntm_jax import latents
from ntm_jax.data import loaders
from ntm_jax.runtime import held_out


def training_images(config, tokenizer, count: int) -> list:
  """`count` training batches of uint8 images (the latent statistics' sample)."""
  loader = loaders.train_loader(config, tokenizer, config.train.batch_size)
  return [batch["image"] for batch, _ in zip(loader, range(count))]


def export_if_finished(rt, config, tokenizer, workdir: str, state) -> None:
  """Once the run reached train.num_steps, exports its EMA parameters and latent statistics
  (unless that step is exported already: a rerun of a finished run, or an interrupted export)."""
  step = int(state.step)
  if step != config.train.num_steps:
    return
  record = os.path.join(latents.export_dir(workdir), latents.RECORD)
  if files.exists(record) and files.read_json(record)["checkpoint_step"] == step:
    return
  psnr = held_out.evaluate(rt, state.ema_params, config, tokenizer, step)["eval/psnr_db"]
  a = config.model.autoencoder
  exported = latents.export(
      workdir, settings=a.to_dict(), step=step, params=state.ema_params, graphdef=rt.graphdef,
      image_shape=(config.data.image_size, config.data.image_size, config.data.channels),
      training_images=training_images(config, tokenizer, a.statistics_batches),
      held_out_psnr=psnr)
  logging.info("Exported the autoencoder to %s (held-out PSNR %.2f dB; latent std %s)",
               latents.export_dir(workdir), psnr, np.round(exported["std"], 3))
