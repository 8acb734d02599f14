"""A convolutional image autoencoder whose latents the NTM and flow matching can model.

The paper (like STARFlow) models the latents of a pretrained autoencoder, not pixels. None can be
downloaded here, so the project trains its own (configs/autoencoder.py) and the generators model
its normalized latents (ntm_jax/latents.py).

Design: a KL-regularized autoencoder with a fixed-variance Gaussian posterior, q(z | x) =
N(E(x), s^2 I) with s = `latent_noise`. Against a N(0, I) prior its KL is ||E(x)||^2 / 2 plus a
constant, so the loss is MSE(D(E(x) + s eps), x) + prior_weight * mean(E(x)^2). Why this and not
a plain autoencoder or a learned-variance VAE:
  * the decoder learns to be robust to latent errors of size s, which is exactly what a few-step
    generator leaves in its samples;
  * the prior term bounds the latent scale, so s stays meaningful (a plain autoencoder can grow
    its latents until any noise is negligible);
  * encoding is deterministic (the mean), so the latents of an image never change between runs
    and the generator's likelihood is of a fixed data set.
A learned variance adds nothing for generation at this scale and lets the posterior collapse
channels; latent normalization (per-channel statistics, latents.py) takes care of the scale the
generator sees.

Shapes: images [batch, H, W, C] in [-1, 1] <-> latents [batch, H / f, W / f, latent_channels] with
f = `factor` (a power of two). Resolution halves with a space-to-depth (pixel-unshuffle) and a
convolution per level: cheaper than strided convolutions at the full resolution, which matters on
a CPU where the encoder runs over every training batch of the generator.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

FACTORS = (2, 4, 8)


def validate(settings, image_size: int | None = None) -> None:
  """Clear errors for bad `model.autoencoder` settings (a dict or ConfigDict), and for an image
  size the factor does not divide."""
  if settings["factor"] not in FACTORS:
    raise ValueError(f"model.autoencoder.factor must be one of {FACTORS}, got "
                     f"{settings['factor']!r}")
  widths = tuple(settings["widths"])
  levels = int(math.log2(settings["factor"]))
  if len(widths) != levels + 1 or min(widths) < 1:
    raise ValueError(f"model.autoencoder.widths needs log2(factor) + 1 = {levels + 1} positive "
                     f"widths (full resolution first), got {widths}")
  if any(w % min(8, w) for w in widths):
    raise ValueError(f"model.autoencoder.widths must be multiples of 8 (group norm), got {widths}")
  if settings["latent_channels"] < 1:
    raise ValueError(f"model.autoencoder.latent_channels must be >= 1, got "
                     f"{settings['latent_channels']!r}")
  if settings["latent_noise"] < 0 or settings["prior_weight"] < 0:
    raise ValueError("model.autoencoder.latent_noise and prior_weight must be >= 0")
  if image_size is not None and image_size % settings["factor"]:
    raise ValueError(f"data.image_size {image_size} is not divisible by the autoencoder's "
                     f"factor {settings['factor']}")


def latent_shape(factor: int, latent_channels: int, image_shape) -> tuple:
  """(H / f, W / f, latent_channels) for images of shape (H, W, C)."""
  height, width, _ = image_shape
  return height // factor, width // factor, latent_channels


def space_to_depth(x):
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x):
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c // 4)


def _groups(width: int) -> int:
  return min(8, width)


class ResidualBlock(nnx.Module):
  """x + conv(silu(norm(conv(silu(norm(x)))))), the second convolution zero-initialized."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.norm1 = nnx.GroupNorm(width, _groups(width), rngs=rngs)
    self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
    self.norm2 = nnx.GroupNorm(width, _groups(width), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x):
    return x + self.conv2(nnx.silu(self.norm2(self.conv1(nnx.silu(self.norm1(x))))))


class Encoder(nnx.Module):
  """Image -> latent mean: a residual block per level, space-to-depth between levels."""

  def __init__(self, channels: int, widths: tuple, latent_channels: int, *, rngs: nnx.Rngs):
    self.stem = nnx.Conv(channels, widths[0], (3, 3), rngs=rngs)
    self.blocks = nnx.List([ResidualBlock(w, rngs=rngs) for w in widths])
    self.downs = nnx.List([nnx.Conv(4 * a, b, (1, 1), rngs=rngs)
                           for a, b in zip(widths[:-1], widths[1:])])
    self.norm = nnx.GroupNorm(widths[-1], _groups(widths[-1]), rngs=rngs)
    self.out = nnx.Conv(widths[-1], latent_channels, (1, 1), rngs=rngs)

  def __call__(self, images):
    x = self.stem(images)
    for i, block in enumerate(self.blocks):
      x = block(x)
      if i < len(self.downs):
        x = self.downs[i](space_to_depth(x))
    return self.out(nnx.silu(self.norm(x)))


class Decoder(nnx.Module):
  """Latent -> image: the encoder mirrored, depth-to-space between levels."""

  def __init__(self, channels: int, widths: tuple, latent_channels: int, *, rngs: nnx.Rngs):
    top = widths[::-1]  # coarsest first
    self.stem = nnx.Conv(latent_channels, top[0], (3, 3), rngs=rngs)
    self.blocks = nnx.List([ResidualBlock(w, rngs=rngs) for w in top])
    self.ups = nnx.List([nnx.Conv(a, 4 * b, (3, 3), rngs=rngs) for a, b in zip(top[:-1], top[1:])])
    self.norm = nnx.GroupNorm(top[-1], _groups(top[-1]), rngs=rngs)
    self.out = nnx.Conv(top[-1], channels, (3, 3), rngs=rngs)

  def __call__(self, latents):
    x = self.stem(latents)
    for i, block in enumerate(self.blocks):
      x = block(x)
      if i < len(self.ups):
        x = depth_to_space(self.ups[i](x))
    return self.out(nnx.silu(self.norm(x)))


class Autoencoder(nnx.Module):
  """encode: images [b, H, W, C] in [-1, 1] -> latent means [b, H/f, W/f, latent_channels];
  decode: the inverse map (approximately). Settings: `model.autoencoder`
  (configs/autoencoder.py)."""

  def __init__(self, settings, channels: int, *, rngs: nnx.Rngs):
    validate(settings)
    widths = tuple(settings["widths"])
    self.factor = settings["factor"]
    self.latent_channels = settings["latent_channels"]
    self.encoder = Encoder(channels, widths, self.latent_channels, rngs=rngs)
    self.decoder = Decoder(channels, widths, self.latent_channels, rngs=rngs)

  def latent_shape(self, image_shape) -> tuple:
    return latent_shape(self.factor, self.latent_channels, image_shape)

  def encode(self, images):
    return self.encoder(images.astype(jnp.float32))

  def decode(self, latents):
    return self.decoder(latents.astype(jnp.float32))


def loss(model: Autoencoder, images, rng, *, latent_noise: float, prior_weight: float):
  """Per-example (negative ELBO up to constants, reconstruction MSE): MSE of decoding a
  posterior sample plus prior_weight times the mean squared latent mean (the fixed-variance KL)."""
  mean = model.encode(images)
  latents = mean + latent_noise * jax.random.normal(rng, mean.shape)
  mse = jnp.mean(jnp.square(model.decode(latents) - images), axis=(1, 2, 3))
  prior = jnp.mean(jnp.square(mean), axis=(1, 2, 3))
  return mse + prior_weight * prior, mse


def psnr(mse, peak_to_peak: float = 2.0):
  """PSNR in dB of a mean squared error on images in [-1, 1]."""
  return 10.0 * jnp.log10(peak_to_peak**2 / jnp.maximum(mse, 1e-12))
