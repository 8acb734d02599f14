"""The options the few-step quality ablations added: grey (1-channel) data through every stage,
the posterior form's finite start from scratch, the identity transporter, and sampling settings
refused before anything compiles."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import t2i
from helpers import build
from helpers import tiny_model_config
from helpers import training_losses
from helpers import write_synthetic_mnist
from ntm_jax import files
from ntm_jax import ntm
from ntm_jax import transporter as transporter_lib
from ntm_jax.data import pipeline
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.evaluate import score
from ntm_jax.evaluate import suite
from ntm_jax.methods import sampling
from ntm_jax.runtime import denoiser
from ntm_jax.train import distill
from ntm_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_grey_conversion_is_exact_on_grey_data_and_rgb_for_outputs():
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8)
  rgb = np.repeat(grey, 3, axis=-1)
  np.testing.assert_array_equal(pipeline.to_channels(rgb, 1), grey)
  np.testing.assert_array_equal(pipeline.to_channels(rgb, 3), rgb)
  np.testing.assert_array_equal(pipeline.to_rgb(grey), rgb)
  colour = np.array([[[30, 60, 91]]], np.uint8)
  assert pipeline.to_channels(colour, 1).item() == 60  # the channel mean, rounded
  with pytest.raises(ValueError, match="data.channels must be 1"):
    pipeline.to_channels(rgb, 2)


@pytest.fixture(scope="module")
def grey_config(tmp_path_factory):
  directory = tmp_path_factory.mktemp("grey")
  config = t2i.get_config("micro")
  config.data.update(source="mnist", image_size=8, channels=1,
                     mnist_path=write_synthetic_mnist(directory / "mnist.pkl.gz"))
  config.train.update(num_steps=6, sample_every=6, eval_every=6, checkpoint_every=6)
  config.sample.prompts = ("a handwritten one", "a handwritten seven")
  config.eval.update(samples_per_class=2, samplers=("fast",))
  config.eval.classifier.update(steps=20, batch_size=16, dir=str(directory / "classifier"))
  config.distill.train.update(num_steps=4, sample_every=4, eval_every=4)
  return config


def test_grey_data_runs_through_training_every_sampler_distillation_and_eval(grey_config,
                                                                             tmp_path):
  workdir = str(tmp_path)
  state = loop.train_and_evaluate(grey_config, workdir)
  # A token is a 4x4 patch of one channel: the transporter's head emits (a, b) for 16 values.
  assert state.params["transporter"]["blocks"]["head"]["kernel"].shape[-1] == 2 * 16
  grid = np.asarray(Image.open(os.path.join(workdir, "samples", "step_00000006.png")))
  assert grid.ndim == 3 and grid.shape[-1] == 3
  distill.distill(grey_config, workdir)
  assert os.path.isfile(os.path.join(denoiser.run_dir(workdir), "samples",
                                     "step_00000004.png"))
  for sampler in ("full_nf", "full_nf_denoised"):  # fast: in the eval below
    config = grey_config.copy_and_resolve_references()
    config.sample.update(sampler=sampler, per_prompt=2)
    assert os.path.isfile(sample_lib.sample(config, workdir))
  report = suite.evaluate(grey_config, workdir)
  assert os.path.isfile(report)
  metrics = files.read_json(report)
  assert np.isfinite(metrics["likelihood"]["eval_T4/nll_nats_per_dim"])
  samplers = [e["sampler"] for e in metrics["class_metrics"]["samplers"]]
  assert samplers == ["fast"]
  classes = files.read_json(score.score(grey_config, workdir))["classes"]
  assert classes["examples"] == 8 and classes["classes"] == 10
  assert len(classes["accuracy"]["importance_weighted_nll"]) == 2  # K = 1, 2


def test_grey_shapes_and_bad_options_are_refused_with_clear_errors():
  config = t2i.get_config("micro")
  config.data.channels = 1
  with pytest.raises(ValueError, match="drops colour"):
    loop.validate(config, config.train.batch_size)
  with pytest.raises(ValueError, match="data_variance >= 0"):
    build(ntm.NTM, tiny_model_config(**{"predictor.data_variance": -1.0}))
  with pytest.raises(ValueError, match="num_blocks must be >= 0"):
    build(ntm.NTM, tiny_model_config(**{"transporter.num_blocks": -1}))


@pytest.mark.parametrize("key, value, message", [
    ("num_steps", 8, r"trained for T in \(4,\)"),
    ("guidance", -1.0, "sample.guidance scale w must be >= 0"),
    ("temperature", -0.5, "sample.temperature must be >= 0"),
    ("t_min", 1.0, r"t_min must lie in \[0, 1\)"),
    ("inverse", "newton", r"sample.inverse must be one of \('kv_cache', 'jacobi'\)"),
    ("jacobi_tolerance", -1e-3, "sample.jacobi_tolerance must be >= 0"),
])
def test_bad_sampling_settings_are_refused_before_compiling(key, value, message):
  config = t2i.get_config("micro")
  sample = config.sample.copy_and_resolve_references()
  sample[key] = value
  with pytest.raises(ValueError, match=message):
    sampling.validate_settings(config, sample)


def test_main_refuses_an_untrained_step_count_without_a_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "ntm_jax.main", "--config=configs/t2i.py:micro",
       f"--workdir={tmp_path}", "--mode=sample", "--config.sample.num_steps=8"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert "Invalid configuration: sample.num_steps=8: this NTM was trained for T in (4,)" in (
      result.stderr)
  assert "Traceback" not in result.stderr


def test_posterior_form_from_scratch_starts_finite_and_trains():
  """C -> 0 near t_min: without the data term the first NLL is 4,236 nats/dim here; with
  data_variance = 0.5 the step-0 NLL stays below 10 nats/dim and training lowers it."""
  config = t2i.get_config("micro")
  config.model.predictor.update(parametrization="posterior", data_variance=0.5)
  config.optim.update(peak_lr=3e-3, warmup_steps=5)
  losses = training_losses(config, "nll_nats_per_dim", 40)
  assert np.isfinite(losses).all()
  assert losses[0] < 10.0
  assert np.mean(losses[-5:]) < losses[0] - 1.0


def test_posterior_sigma_adds_the_x0_uncertainty_of_gaussian_data():
  t, s = jnp.array([0.6, 0.3]), jnp.array([0.2, 0.0])
  x = jnp.zeros((2, 3, 4))
  _, plain = ntm.predictor_lib.posterior_gaussian(x, t, s, x, 1e-3)
  _, data = ntm.predictor_lib.posterior_gaussian(x, t, s, x, 1e-3, data_variance=0.5)
  a, b, c2 = ntm.trajectory.posterior_coefficients(t, s)
  v = 0.5 * t**2 / ((1 - t) ** 2 * 0.5 + t**2)  # Var(x0 | x_t) for x0 ~ N(0, 0.5)
  np.testing.assert_allclose(jnp.exp(2 * plain[:, 0, 0]), c2 + 1e-6, rtol=1e-5)
  np.testing.assert_allclose(jnp.exp(2 * data[:, 0, 0]), c2 + b**2 * v + 1e-6, rtol=1e-5)
  del a


def test_identity_transporter_is_exactly_the_identity():
  transporter = build(transporter_lib.Transporter, channels=3, num_tokens=4, num_blocks=0,
                      depth=1, width=8, num_heads=2, num_kv_heads=1)
  x = jax.random.normal(jax.random.key(0), (2, 4, 3))
  t, steps = jnp.array([0.1, 0.5]), jnp.array([4.0, 4.0])
  u, logdet = transporter(x, t, steps)
  np.testing.assert_array_equal(u, x)
  np.testing.assert_array_equal(logdet, 0.0)
  np.testing.assert_array_equal(transporter.inverse(x, t, steps), x)


def test_final_temperature_changes_only_the_last_step():
  """final_temperature = 0 returns the last step's mean; every noisier level is untouched."""
  gaussian = lambda u, t, s: (0.5 * u + s[:, None], jnp.full(u.shape, -1.0))
  times = jnp.array([0.05, 0.4, 0.7, 1.0])
  run = lambda **kw: ntm.gaussian_chain(gaussian, jax.random.key(0), (2, 3), times,
                                        return_levels=True, **kw)
  exact, mean_last = run(), run(final_temperature=0.0)
  np.testing.assert_array_equal(mean_last[:, 1:], exact[:, 1:])
  np.testing.assert_allclose(mean_last[:, 0], 0.5 * exact[:, 1] + 0.05, rtol=1e-6)
  np.testing.assert_array_equal(run(temperature=0.7, final_temperature=0.7),
                                run(temperature=0.7))
  with pytest.raises(ValueError, match="final_temperature must be >= 0"):
    run(final_temperature=-0.5)


def test_level_weighted_training_reports_the_unweighted_nll_and_learns():
  """Weights towards the noisy levels, sampled there too (pair-wise): the objective is logged
  beside the NLL, both finite, and the NLL falls."""
  config = t2i.get_config("micro")
  config.ntm.update(level_weight_power=2.0, level_sampling_power=2.0)
  nll, objective = training_losses(config, ("nll_nats_per_dim", "weighted_objective_per_dim"), 20)
  assert np.isfinite(nll).all() and np.isfinite(objective).all()
  assert np.mean(nll[-5:]) < np.mean(nll[:5]) - 0.3


@pytest.mark.parametrize("overrides, message", [
    ({"level_weight_power": float("nan")}, "level_weight_power must be a finite number"),
    ({"level_sampling_power": float("inf")}, "level_sampling_power must be a finite number"),
    ({"mode": "end_to_end", "level_sampling_power": 1.0}, "end_to_end trains every level"),
    ({"mode": "both"}, "ntm.mode must be one of"),
])
def test_bad_level_options_are_refused(overrides, message):
  config = t2i.get_config("micro")
  config.ntm.update(**overrides)
  with pytest.raises(ValueError, match=message):
    loop.validate(config, config.train.batch_size)
