"""The autoencoder whose latents a generator can model (configs/autoencoder.py): trained on
reconstruction, evaluated on held-out reconstruction error, shown as grids of originals and
reconstructions. It reads no captions and has no sampler."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from ntm_jax import autoencoder
from ntm_jax import grids
from ntm_jax.data import loaders
from ntm_jax.data import pipeline
from ntm_jax.methods import base


def make_model(config, rngs):
  return autoencoder.Autoencoder(config.model.autoencoder, config.data.channels, rngs=rngs)


def loss(model, batch, rng, *, config, step, num_steps, frozen_fm=None):
  """The reconstruction loss (with latent noise and the prior weight of model.autoencoder)."""
  del step, num_steps, frozen_fm
  a = config.model.autoencoder
  per_example, mse = autoencoder.loss(model, pipeline.normalize_images(batch["image"]), rng,
                                      latent_noise=a.latent_noise, prior_weight=a.prior_weight)
  return jnp.mean(per_example), {"mse": jnp.mean(mse), "psnr_db": jnp.mean(autoencoder.psnr(mse))}


def eval_metrics(model, batch, rng, *, config, num_steps):
  """The reconstruction error of one held-out batch through the latent means."""
  del rng, config, num_steps
  images = pipeline.normalize_images(batch["image"])
  mse = jnp.mean(jnp.square(model.decode(model.encode(images)) - images), axis=(1, 2, 3))
  return {"mse": jnp.mean(mse), "psnr_db": jnp.mean(autoencoder.psnr(mse))}


def reconstructor(graphdef):
  """(params, uint8 images) -> uint8 reconstructions through the latent means (no posterior
  noise); jitted once, so repeated grids and chunks reuse one compilation."""
  def run(params, images):
    model = nnx.merge(graphdef, params)
    return model.decode(model.encode(pipeline.normalize_images(images)))
  jitted = jax.jit(run)
  return lambda params, images: pipeline.to_uint8(jitted(params, images))


def write_grid(reconstruct, params, images: np.ndarray, path: str,
               columns: int = 8) -> np.ndarray:
  """Rows of originals, each followed by its row of reconstructions; returns the grid."""
  recon = reconstruct(params, images)
  rows = len(images) // columns
  pairs = np.stack([images[:rows * columns].reshape(rows, columns, *images.shape[1:]),
                    recon[:rows * columns].reshape(rows, columns, *images.shape[1:])], axis=1)
  grid = grids.make_grid(pipeline.to_rgb(pairs.reshape(-1, *images.shape[1:])), columns)
  grids.save_png(path, grid, scale=max(1, 128 // images.shape[1]))
  return grid


def grid_fn(graphdef, config, tokenizer, workdir: str, writer):
  """(params, done) -> None: a grid of originals and reconstructions of 32 held-out images at
  workdir/samples/reconstructions_step_N.png (and in TensorBoard, given a writer)."""
  held_out = loaders.held_out_local_batches(config, tokenizer, config.train.batch_size, 1)[0]
  images = held_out["image"][:32]
  reconstruct = reconstructor(graphdef)

  def grid(params, done):
    path = os.path.join(workdir, "samples", f"reconstructions_step_{done:08d}.png")
    image = write_grid(reconstruct, params, images, path)
    if writer is not None:
      writer.write_images(done, {"reconstructions": image[None]})
    logging.info("Wrote reconstructions to %s", path)
  return grid


def validate(config):
  autoencoder.validate(config.model.autoencoder, config.data.image_size)
  if config.latent.autoencoder_workdir:
    raise ValueError("an autoencoder run cannot itself train on latents: leave "
                     "latent.autoencoder_workdir empty")


METHOD = base.Method(name="autoencoder", make_model=make_model, loss=loss,
                     eval_metrics=eval_metrics, text_conditioned=False, validate=validate)
