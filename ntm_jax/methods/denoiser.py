"""The NTM's learned denoiser g_phi (paper Eq. 3.9, docs/method.md): its model, and the
distillation targets and error it is trained and evaluated on, with the NTM frozen. Its
runtime (state, jitted steps, fast sampler, checkpoints) is runtime/denoiser.py."""

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ntm_jax import autoencoder
from ntm_jax import denoise
from ntm_jax import text_to_image
from ntm_jax.methods import inputs
from ntm_jax.methods import ntm as ntm_method


def make_denoiser(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> denoise.Denoiser:
  """The denoiser of config.distill.model, on the NTM's tokens and text states."""
  model = nnx.eval_shape(lambda: ntm_method.make_model(config, nnx.Rngs(config.seed)))
  d = config.distill.model
  return denoise.Denoiser(channels=model.channels, grid_shape=model.grid_shape,
                          width=d.width, depth=d.depth, num_heads=d.num_heads,
                          num_kv_heads=d.num_kv_heads, text_dim=model.text_dim,
                          remat=config.model.remat, dtype=jnp.dtype(config.model.dtype),
                          rngs=rngs)


def targets(ntm_params, batch, rng, *, ntm_graphdef, config, num_steps: int):
  """The trajectory-score-denoised targets of a batch's real trajectories under the frozen NTM
  (denoise.distillation_targets), with the text they are conditioned on."""
  model = nnx.merge(ntm_graphdef, ntm_params)
  images = inputs.model_inputs(batch)
  text, mask = text_to_image.encode_text(model, batch["text"])
  d = config.distill
  targets = denoise.distillation_targets(
      model, images, text, mask, rng, num_steps=num_steps, t_min_range=tuple(d.t_min_range),
      clip_percentile=d.clip_percentile or None)
  return targets, text, mask  # constants: only the denoiser's parameters are differentiated


def error_metrics(mse, targets) -> dict:
  """MSE and PSNR (images in [-1, 1], peak-to-peak 2) against the target, and how far the
  target is from the noisy x_t0 the predictor chain stops at."""
  moved = jnp.mean(jnp.square(targets["x_t0"] - targets["target"]))
  return {"mse": mse, "psnr": autoencoder.psnr(mse), "target_vs_x_t0_mse": moved}
