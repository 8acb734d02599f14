"""The autoencoder and generators on its latents: the module's shapes and loss, its training,
export and evaluation through main's machinery, NTM and FM trained on its latents with every
sampler decoding, and the refusals (missing, unfinished or mismatched autoencoder)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import autoencoder as autoencoder_configs
from configs import fm as fm_configs
from configs import t2i
from helpers import build
from ntm_jax import autoencoder
from ntm_jax import files
from ntm_jax import latents
from ntm_jax import text as text_lib
from ntm_jax.data import loaders
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.evaluate import suite
from ntm_jax.methods import inputs
from ntm_jax.runtime import denoiser
from ntm_jax.runtime import runtime
from ntm_jax.train import distill
from ntm_jax.train import loop

SETTINGS = dict(factor=4, latent_channels=3, widths=(8, 16, 16), latent_noise=0.1,
                prior_weight=1e-2, statistics_batches=1)


def test_space_to_depth_is_inverted_by_depth_to_space():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  y = autoencoder.space_to_depth(x)
  assert y.shape == (2, 2, 3, 12)
  np.testing.assert_array_equal(y[0, 0, 0], x[0, :2, :2].reshape(-1))  # one 2x2 block
  np.testing.assert_array_equal(autoencoder.depth_to_space(y), x)


def test_autoencoder_shapes_and_fixed_variance_kl_loss():
  model = build(autoencoder.Autoencoder, SETTINGS, 3)
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)
  rng = jax.random.key(1)

  @nnx.jit
  def run(model):
    mean = model.encode(images)
    noisy = mean + 0.1 * jax.random.normal(rng, mean.shape)
    loss = autoencoder.loss(model, images, rng, latent_noise=0.1, prior_weight=0.5)
    return mean, model.decode(mean), model.decode(noisy), loss

  mean, decoded, decoded_noisy, (per_example, mse) = run(model)
  assert mean.shape == (2, 4, 4, 3) == (2, *model.latent_shape((16, 16, 3)))
  assert decoded.shape == images.shape
  expected_mse = jnp.mean(jnp.square(decoded_noisy - images), axis=(1, 2, 3))
  np.testing.assert_allclose(mse, expected_mse, rtol=1e-5)
  np.testing.assert_allclose(per_example,
                             expected_mse + 0.5 * jnp.mean(mean**2, axis=(1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(autoencoder.psnr(jnp.array(0.04)), 20.0, rtol=1e-6)


@pytest.mark.parametrize("key, value, message", [
    ("factor", 3, "factor must be one of"),
    ("widths", (8, 16), "log2"),
    ("latent_channels", 0, "latent_channels must be >= 1"),
    ("latent_noise", -1.0, "must be >= 0"),
])
def test_bad_autoencoder_settings_are_refused(key, value, message):
  with pytest.raises(ValueError, match=message):
    autoencoder.validate({**SETTINGS, key: value})
  with pytest.raises(ValueError, match="image_size 18 is not divisible"):
    autoencoder.validate(SETTINGS, image_size=18)


def test_latent_statistics_normalize_per_channel():
  rng = np.random.default_rng(0)
  z = rng.normal([1.0, -2.0], [3.0, 0.5], size=(500, 2, 2, 2))
  mean, std = latents.latent_statistics(z)
  normalized = (z - mean) / std
  np.testing.assert_allclose(normalized.reshape(-1, 2).mean(0), 0.0, atol=1e-9)
  np.testing.assert_allclose(normalized.reshape(-1, 2).std(0), 1.0, atol=1e-9)


def _autoencoder_config():
  config = autoencoder_configs.get_config("micro")
  config.data.image_size = 8
  config.train.update(num_steps=6, checkpoint_every=6, sample_every=6, eval_every=6)
  config.eval.update(per_kind=1, samples_per_prompt=1)
  return config


def _generator_config(make, autoencoder_workdir: str):
  config = make("micro")
  config.latent.autoencoder_workdir = autoencoder_workdir
  config.model.patch_size = 2  # 8x8 images -> 4x4x4 latents -> 4 tokens of 16 channels
  config.train.update(num_steps=4, checkpoint_every=4, sample_every=4, eval_every=4)
  config.eval.update(per_kind=1, samples_per_prompt=1)
  return config


@pytest.fixture(scope="module")
def trained_autoencoder(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("autoencoder"))
  config = _autoencoder_config()
  loop.train_and_evaluate(config, workdir)
  return config, workdir


def test_autoencoder_trains_exports_and_evaluates(trained_autoencoder):
  config, workdir = trained_autoencoder
  record = latents.read_record(workdir)
  assert record["checkpoint_step"] == 6 and record["image_shape"] == [8, 8, 3]
  assert len(record["mean"]) == len(record["std"]) == 4
  assert os.path.isfile(os.path.join(workdir, "samples", "reconstructions_step_00000006.png"))
  report = files.read_json(suite.evaluate(config, workdir))
  assert np.isfinite(report["likelihood"]["eval/psnr_db"])
  # The judge accepts every clean render; reconstructions are scored on the same suite.
  assert report["shapes_eval_ceiling"]["clean_renders"]["seen"]["overall"] == 1.0
  assert 0.0 <= report["shapes_eval_ceiling"]["reconstructions"]["seen"]["overall"] <= 1.0
  codec = latents.load(workdir)
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  z = codec.encode(images)
  assert z.shape == (2, 4, 4, 4)
  assert codec.decode(z).shape == (2, 8, 8, 3)
  with pytest.raises(ValueError, match="an autoencoder has no sampler"):
    sample_lib.sample(config, workdir)


def _decoded_grid(path: str) -> np.ndarray:
  grid = np.asarray(Image.open(path))
  # 8x8 RGB cells with 1-pixel gaps, scaled 16x (latents would be 4x4 with 4 channels).
  assert grid.shape[-1] == 3 and grid.shape[0] % 16 == 0 and (grid.shape[0] // 16) % 9 == 1
  return grid


def test_ntm_on_latents_trains_samples_distills_and_reports_latent_nats(trained_autoencoder,
                                                                        tmp_path):
  """The NTM's samplers decode (full NF in the training grid, the fast one in the eval and the
  distillation grid; full_nf_denoised shares full NF's path, runtime.sampler)."""
  _, ae_workdir = trained_autoencoder
  config = _generator_config(t2i.get_config, ae_workdir)
  config.distill.train.update(num_steps=2, sample_every=2, eval_every=2, checkpoint_every=2)
  workdir = str(tmp_path)
  state = loop.train_and_evaluate(config, workdir)
  assert state.params["transporter"]["blocks"]["head"]["kernel"].shape[-1] == 2 * 16
  assert files.read_json(os.path.join(workdir, latents.RECORD))["checkpoint_step"] == 6
  _decoded_grid(os.path.join(workdir, "samples", "step_00000004.png"))
  distill.distill(config, workdir)  # trajectory-denoised targets on latents
  _decoded_grid(os.path.join(denoiser.run_dir(workdir), "samples", "step_00000002.png"))
  config.eval.shapes_eval = False  # the fast sampler's decoding is in the distillation grid
  report_path = suite.evaluate(config, workdir)
  report = files.read_json(report_path)
  assert report["latent"]["latent_shape"] == [4, 4, 4]
  assert "eval_T4/nll_nats_per_dim" in report["likelihood"]
  assert not any("8bit" in k for k in report["likelihood"])  # a pixel-only unit
  assert np.isfinite(report["latent"]["autoencoder_recon_psnr_db"])
  assert os.path.basename(report_path).startswith("report_step_00000004_")
  markdown = files.path(report_path[:-len(".json")] + ".md").read_text()
  assert "latent nats/dim" in markdown


def test_flow_matching_on_latents_decodes_and_refuses_another_autoencoder(trained_autoencoder,
                                                                           tmp_path):
  config_ae, ae_workdir = trained_autoencoder
  config = _generator_config(fm_configs.get_config, ae_workdir)
  config.train.update(num_steps=1, checkpoint_every=1, sample_every=0, eval_every=0)
  run = str(tmp_path / "run")
  loop.train_and_evaluate(config, run)
  for sampler in ("euler", "heun", "posterior"):
    sample_config = config.copy_and_resolve_references()
    sample_config.sample.update(sampler=sampler, per_prompt=1, num_steps=2)
    _decoded_grid(sample_lib.sample(sample_config, run))
  # The same autoencoder trained further: another checkpoint step and other statistics.
  other = str(tmp_path / "other_autoencoder")
  shutil.copytree(ae_workdir, other)
  config_ae = config_ae.copy_and_resolve_references()
  config_ae.train.num_steps = 8
  loop.train_and_evaluate(config_ae, other)
  config.latent.autoencoder_workdir = other
  with pytest.raises(ValueError, match="autoencoder mismatch.*checkpoint_step"):
    sample_lib.sample(config, run)
  config.train.num_steps = 2
  with pytest.raises(ValueError, match="autoencoder mismatch"):
    loop.train_and_evaluate(config, run)
  # A moved copy of the same autoencoder is accepted.
  moved = str(tmp_path / "moved")
  shutil.copytree(ae_workdir, moved)
  config.latent.autoencoder_workdir = moved
  config.train.num_steps = 1
  assert os.path.isfile(sample_lib.sample(config, run))
  # A run with checkpoints but no record was not trained on latents.
  pixels = str(tmp_path / "pixels")
  shutil.copytree(run, pixels)
  os.remove(os.path.join(pixels, latents.RECORD))
  with pytest.raises(ValueError, match="not trained on autoencoder latents"):
    sample_lib.sample(config, pixels)


def test_latent_presets_need_a_finished_autoencoder_of_the_same_image_shape(trained_autoencoder,
                                                                            tmp_path):
  _, ae_workdir = trained_autoencoder
  shapes_latent = t2i.get_config("shapes_latent")
  with pytest.raises(ValueError, match="autoencoder_workdir=DIR"):
    loop.validate(shapes_latent, shapes_latent.train.batch_size)
  shapes_latent.latent.autoencoder_workdir = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="no exported autoencoder"):
    loop.validate(shapes_latent, shapes_latent.train.batch_size)
  shapes_latent.latent.autoencoder_workdir = ae_workdir
  with pytest.raises(ValueError, match=r"images of shape \(8, 8, 3\)"):
    loop.validate(shapes_latent, shapes_latent.train.batch_size)


def test_latent_cache_gives_the_batches_per_step_encoding_gives(trained_autoencoder, tmp_path):
  """A finite split encoded once: the same model inputs, batch by batch, as encoding each batch;
  and a run trains on it."""
  _, ae_workdir = trained_autoencoder
  config = _generator_config(t2i.get_config, ae_workdir)
  config.data.num_train_examples = 300
  rt = runtime.build(config)
  tokenizer = text_lib.tokenizer_for(config)
  config.latent.cache_max_examples = 0
  plain = iter(loaders.train_loader(config, tokenizer, 8, rt.codec))
  config.latent.cache_max_examples = 300
  cached = iter(loaders.train_loader(config, tokenizer, 8, rt.codec))
  for _ in range(3):
    a, b = rt.global_batch(next(plain)), rt.global_batch(next(cached))
    jax.tree.map(np.testing.assert_array_equal, a["text"], b["text"])
    np.testing.assert_allclose(inputs.model_inputs(a), inputs.model_inputs(b), atol=1e-5)
  assert "latents" in next(cached) and "image" not in next(cached)
  state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == config.train.num_steps
