"""Evaluation of an autoencoder run: reconstructions of held-out images (the grid its training
writes, the grid and report of --mode=eval) and the ShapesEval ceiling its latents allow."""

import os

import jax
import numpy as np
from absl import logging
from flax import nnx

from ntm_jax import text as text_lib
from ntm_jax.data import pipeline
from ntm_jax.evaluate import grids
from ntm_jax.evaluate import likelihood
from ntm_jax.evaluate import shapes_eval


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
  tokenizer = text_lib.tokenizer_for(config)
  report = {"likelihood": likelihood.evaluate(rt, params, config, tokenizer, step)}
  grid_fn(rt, config, tokenizer, workdir, writer=None)(params=params, done=step)
  if config.data.source == "shapes" and config.eval.shapes_eval:
    report["shapes_eval_ceiling"] = shapes_eval_ceiling(rt, params, config)
  return report
