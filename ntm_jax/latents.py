"""Generators on autoencoder latents: export a trained autoencoder, load it, encode and decode.

An autoencoder run (configs/autoencoder.py) ends by exporting, under AUTOENCODER_WORKDIR/latents/:
  params/        the EMA parameters (orbax), the only weights a generator run loads;
  latents.json   the record: the model.autoencoder settings, the image shape, the checkpoint
                 step, per-channel latent mean and std over training images, held-out PSNR.
A generator run with --config.latent.autoencoder_workdir=DIR models (E(x) - mean) / std on a
grid of H/f x W/f latent "pixels": its model.image_shape is the latent shape, every sampler
decodes D(z * std + mean), and its likelihood is in latent nats/dim.

The generator run copies the record into its own workdir (latents.json) when it starts. Every
later load (resume, sample, eval, distill, an NTM started from an FM run) compares the
autoencoder's current record with that copy and refuses a mismatch: latents of another
autoencoder checkpoint or settings would be silently meaningless to the model.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from ntm_jax import autoencoder as autoencoder_lib
from ntm_jax import errors
from ntm_jax import files
from ntm_jax import records
from ntm_jax.data import pipeline

RECORD = "latents.json"
# What must agree between a generator run and the autoencoder it loads; the path may differ
# (runs move between machines).
IDENTITY = ("settings", "image_shape", "checkpoint_step", "mean", "std")


def export_dir(autoencoder_workdir: str) -> str:
  return os.path.join(autoencoder_workdir, "latents")


def enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.get("latent") and config.latent.autoencoder_workdir)


def validate(config: ml_collections.ConfigDict) -> None:
  """Clear errors before anything compiles: a latent preset without its autoencoder, a missing
  or unfinished autoencoder run, or data of another image shape than it was trained on."""
  latent = config.get("latent")
  if latent is None:
    return
  if latent.autoencoder_workdir is None:
    raise ValueError("this preset models autoencoder latents: pass "
                     "--config.latent.autoencoder_workdir=DIR of a finished configs/"
                     "autoencoder.py run (same preset)")
  if not latent.autoencoder_workdir:
    return
  record = read_record(latent.autoencoder_workdir)
  image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
  if tuple(record["image_shape"]) != image_shape:
    raise ValueError(f"the autoencoder in {latent.autoencoder_workdir} was trained on images of "
                     f"shape {tuple(record['image_shape'])}; this run's data has {image_shape}")


def read_record(autoencoder_workdir: str) -> dict:
  path = os.path.join(export_dir(autoencoder_workdir), RECORD)
  if not files.exists(path):
    raise errors.MissingInputError(
        f"no exported autoencoder at {path}: train one first with python -m ntm_jax.main "
        f"--config=configs/autoencoder.py:PRESET --workdir={autoencoder_workdir} (it exports "
        "when it finishes)")
  return files.read_json(path)


def model_image_shape(config: ml_collections.ConfigDict) -> tuple:
  """The shape of one example the generator models: the latent shape on latents, else the
  data's (image_size, image_size, channels)."""
  image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
  if not enabled(config):
    return image_shape
  record = read_record(config.latent.autoencoder_workdir)
  settings = record["settings"]
  return autoencoder_lib.latent_shape(settings["factor"], settings["latent_channels"],
                                      record["image_shape"])


def latent_statistics(latents: np.ndarray) -> tuple:
  """Per-channel mean and std of latents [n, h, w, c] (std floored to keep the map invertible)."""
  flat = np.asarray(latents, np.float64).reshape(-1, latents.shape[-1])
  return flat.mean(0), np.maximum(flat.std(0), 1e-6)


class Codec:
  """A loaded autoencoder: uint8 images <-> normalized latents, both jitted."""

  def __init__(self, record: dict, graphdef, params):
    self.record = record
    self.graphdef, self.params = graphdef, params
    self.mean = jnp.asarray(record["mean"], jnp.float32)
    self.std = jnp.asarray(record["std"], jnp.float32)
    self.encode = jax.jit(self._encode)
    self.decode = jax.jit(self._decode)

  def _encode(self, images):
    """uint8 images [b, H, W, C] -> normalized latents [b, H/f, W/f, c]."""
    model = nnx.merge(self.graphdef, self.params)
    return (model.encode(pipeline.normalize_images(images)) - self.mean) / self.std

  def _decode(self, latents):
    """Normalized latents -> images in about [-1, 1]."""
    model = nnx.merge(self.graphdef, self.params)
    return model.decode(latents * self.std + self.mean)

  def decoding(self, sampler):
    """A sampler (params, text input, rng) -> latents, turned into one that returns images."""
    return lambda params, text_input, rng: self.decode(sampler(params, text_input, rng))


class CachedSource:
  """A finite training source encoded once: records {"latents", "caption"}.

  Encoding is deterministic, so the model sees the latents that encoding every batch would give
  it, without the encoder's cost per step (22% of a shapes_latent NTM step). grain sees the
  wrapped source's repr, so checkpoints of runs with and without the cache resume each other."""

  def __init__(self, source, latents: np.ndarray, captions: list):
    self.source, self.latents, self.captions = source, latents, captions

  def __len__(self):
    return len(self.captions)

  def __getitem__(self, index):
    index = int(index)
    return {"latents": self.latents[index], "caption": self.captions[index]}

  def __repr__(self):
    return repr(self.source)


def cache_source(codec: Codec, source, channels: int, batch_size: int = 256) -> CachedSource:
  """Encodes every record of `source` (host memory: its latents, float32) in fixed-size chunks
  (the last one padded, so the encoder compiles once)."""
  latents, captions = [], []
  for start in range(0, len(source), batch_size):
    records = [source[i] for i in range(start, min(start + batch_size, len(source)))]
    images = np.stack([pipeline.to_channels(r["image"], channels) for r in records])
    padded = np.concatenate([images, np.repeat(images[-1:], batch_size - len(images), 0)])
    latents.append(np.asarray(codec.encode(padded))[:len(images)])
    captions += [r["caption"] for r in records]
  return CachedSource(source, np.concatenate(latents), captions)


def abstract_autoencoder(settings, channels: int):
  return nnx.eval_shape(lambda: autoencoder_lib.Autoencoder(settings, channels,
                                                            rngs=nnx.Rngs(0)))


def load(autoencoder_workdir: str) -> Codec:
  """The exported autoencoder of a finished run (parameters replicated on every device)."""
  record = read_record(autoencoder_workdir)
  graphdef, abstract = nnx.split(abstract_autoencoder(record["settings"],
                                                      record["image_shape"][-1]))
  path = files.path(export_dir(autoencoder_workdir)) / "params"
  params = ocp.StandardCheckpointer().restore(path, abstract)
  return Codec(record, graphdef, params)


def export(autoencoder_workdir: str, *, settings, image_shape, step: int, params,
           graphdef, training_images, held_out_psnr: float) -> dict:
  """Writes params/ and the record (statistics over `training_images`, uint8); returns it."""
  model = nnx.merge(graphdef, params)
  encode = jax.jit(lambda x: model.encode(pipeline.normalize_images(x)))
  latents = np.concatenate([np.asarray(encode(chunk)) for chunk in training_images])
  mean, std = latent_statistics(latents)
  out = files.path(export_dir(autoencoder_workdir))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out / "params", params, force=True)
  checkpointer.wait_until_finished()
  record = {"settings": dict(settings), "image_shape": list(image_shape),
            "checkpoint_step": int(step), "mean": mean.tolist(), "std": std.tolist(),
            "statistics_images": int(len(latents)), "held_out_psnr_db": float(held_out_psnr),
            "autoencoder_workdir": os.path.abspath(autoencoder_workdir)}
  files.write_json(str(out / RECORD), record)
  return record


def check_run(workdir: str, codec: Codec, fresh: bool) -> None:
  """Records the codec in a fresh run's workdir; for an existing run, refuses another one."""
  actual = codec.record
  records.check(
      os.path.join(workdir, RECORD), actual, fresh=fresh, keys=IDENTITY,
      missing="it was not trained on autoencoder latents; drop "
              "--config.latent.autoencoder_workdir",
      mismatch=lambda expected, differ: (
          f"autoencoder mismatch: {workdir} was trained on the latents of "
          f"{expected.get('autoencoder_workdir')} (step {expected['checkpoint_step']}), but "
          f"{actual.get('autoencoder_workdir')} now holds step {actual['checkpoint_step']}; they "
          f"differ in {', '.join(differ)}. Point latent.autoencoder_workdir at the autoencoder "
          "the run was trained with"))


def reconstruction_report(codec: Codec, images: np.ndarray) -> dict:
  """Held-out reconstruction error of uint8 images through encode -> decode (no noise)."""
  original = pipeline.normalize_images(jnp.asarray(images))
  mse = jnp.mean(jnp.square(codec.decode(codec.encode(images)) - original), axis=(1, 2, 3))
  return {"autoencoder_recon_mse": float(jnp.mean(mse)),
          "autoencoder_recon_psnr_db": float(jnp.mean(autoencoder_lib.psnr(mse)))}

