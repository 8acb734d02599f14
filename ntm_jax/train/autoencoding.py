"""What an autoencoder run (configs/autoencoder.py) does beside the shared training loop:
reconstruction grids while it trains, and the export a generator on its latents loads
(ntm_jax/latents.py) when it finishes."""

import os

import jax
import numpy as np
from absl import logging
from flax import nnx

from ntm_jax import files
from ntm_jax import latents
from ntm_jax.data import pipeline
from ntm_jax.evaluate import likelihood
from ntm_jax.evaluate import shapes_eval
from ntm_jax.train import grids


def reconstructor(rt):
  """(params, uint8 images) -> uint8 reconstructions through the latent means (no posterior
  noise); jitted once per runtime, so repeated grids and chunks reuse one compilation."""
  def run(params, images):
    model = nnx.merge(rt.graphdef, params)
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


def training_images(config, tokenizer, count: int) -> list:
  """`count` training batches of uint8 images (the latent statistics' sample)."""
  from ntm_jax.train import loop  # pylint: disable=g-import-not-at-top
  loader = loop.make_train_loader(config, tokenizer, config.train.batch_size)
  return [batch["image"] for batch, _ in zip(loader, range(count))]


def grid_fn(rt, config, tokenizer, workdir: str, writer):
  """(params, done) -> None: a grid of originals and reconstructions of 32 held-out images at
  workdir/samples/reconstructions_step_N.png (and in TensorBoard, given a writer)."""
  held_out = likelihood.held_out_local_batches(config, tokenizer, config.train.batch_size, 1)[0]
  images = held_out["image"][:32]
  reconstruct = reconstructor(rt)

  def grid(params, done):
    path = os.path.join(workdir, "samples", f"reconstructions_step_{done:08d}.png")
    image = write_grid(reconstruct, params, images, path)
    if writer is not None:
      writer.write_images(done, {"reconstructions": image[None]})
    logging.info("Wrote reconstructions to %s", path)
  return grid


def export_if_finished(rt, config, tokenizer, workdir: str, state) -> None:
  """Once the run reached train.num_steps, exports its EMA parameters and latent statistics
  (unless that step is exported already: a rerun of a finished run, or an interrupted export)."""
  step = int(state.step)
  if step != config.train.num_steps:
    return
  record = os.path.join(latents.export_dir(workdir), latents.RECORD)
  if files.exists(record) and files.read_json(record)["checkpoint_step"] == step:
    return
  psnr = likelihood.evaluate(rt, state.ema_params, config, tokenizer, step)["eval/psnr_db"]
  a = config.model.autoencoder
  exported = latents.export(
      workdir, settings=a.to_dict(), step=step, params=state.ema_params, graphdef=rt.graphdef,
      image_shape=(config.data.image_size, config.data.image_size, config.data.channels),
      training_images=training_images(config, tokenizer, a.statistics_batches),
      held_out_psnr=psnr)
  logging.info("Exported the autoencoder to %s (held-out PSNR %.2f dB; latent std %s)",
               latents.export_dir(workdir), psnr, np.round(exported["std"], 3))


def shapes_eval_ceiling(rt, params, config) -> dict:
  """ShapesEval of clean renders of the fixed suite and of their reconstructions: the best a
  generator on these latents can score."""
  e = config.eval
  suite = shapes_eval.prompt_suite(tuple(map(tuple, config.data.held_out_combinations)),
                                   per_kind=e.per_kind)
  renders = shapes_eval.render_suite(suite, config.data.image_size, e.samples_per_prompt)
  reconstruct = reconstructor(rt)
  recon = np.concatenate([reconstruct(params, renders[i:i + 256])
                          for i in range(0, len(renders), 256)])
  return {"suite": shapes_eval.SUITE_VERSION, "prompts": len(suite),
          "samples_per_prompt": e.samples_per_prompt,
          "clean_renders": shapes_eval.score(suite, renders, e.samples_per_prompt),
          "reconstructions": shapes_eval.score(suite, recon, e.samples_per_prompt)}


def evaluation_report(rt, params, config, workdir: str, step: int) -> dict:
  """--mode=eval of an autoencoder run: held-out reconstruction error, a reconstruction grid
  and, on the shapes data, the ShapesEval ceiling."""
  from ntm_jax.train import loop  # pylint: disable=g-import-not-at-top
  tokenizer = loop.tokenizer_for(config)
  report = {"likelihood": likelihood.evaluate(rt, params, config, tokenizer, step)}
  grid_fn(rt, config, tokenizer, workdir, writer=None)(params=params, done=step)
  if config.data.source == "shapes" and config.eval.shapes_eval:
    report["shapes_eval_ceiling"] = shapes_eval_ceiling(rt, params, config)
  return report
