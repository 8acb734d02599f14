"""--mode=distill on the `micro` preset: the denoiser trains with its own checkpoints, resumes
exactly, and becomes the default sampler once it exists."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from configs import t2i
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import denoiser
from ntm_jax.train import distill
from ntm_jax.train import loop


def micro(**overrides):
  config = t2i.get_config("micro")
  config.update_from_flattened_dict({"train.num_steps": 10, **overrides})
  return config


@pytest.fixture(scope="module")
def ntm_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ntm"))
  loop.train_and_evaluate(micro(), workdir)
  return workdir


def _copy_of(ntm_workdir, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(os.path.join(ntm_workdir, "checkpoints"), os.path.join(workdir, "checkpoints"))
  return workdir


def test_distill_checkpoints_resumes_exactly_and_reports(ntm_workdir, tmp_path):
  workdir = _copy_of(ntm_workdir, tmp_path)
  config = micro(**{"distill.train.eval_every": 10, "distill.train.sample_every": 10})
  straight = distill.distill(config, workdir)
  out = denoiser.run_dir(workdir)
  manager = checkpointing.make_manager(out, config.distill.train, asynchronous=False)
  assert manager.all_steps() == [5, 10]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
  assert os.path.isfile(os.path.join(out, "samples", "step_00000010.png"))
  # The NTM's own checkpoints are untouched.
  assert checkpointing.make_manager(workdir, config.train).all_steps() == [10]

  shutil.rmtree(os.path.join(out, "checkpoints", "10"))
  # From step 5, data position included (without the grid and eval, which change no state).
  resumed = distill.distill(micro(), workdir)
  assert int(resumed.step) == 10
  for name in ("params", "ema_params", "opt_state", "rng"):
    jax.tree.map(np.testing.assert_array_equal, getattr(straight, name), getattr(resumed, name))


def test_fast_sampler_is_the_default_once_a_denoiser_exists(ntm_workdir, tmp_path):
  workdir = _copy_of(ntm_workdir, tmp_path)
  config = micro(**{"sample.per_prompt": 2})
  assert config.sample.sampler == "auto"
  assert "_full_nf_" in sample_lib.sample(config, workdir, ["a red circle"])
  with pytest.raises(FileNotFoundError, match="--mode=distill"):
    sample_lib.sample(micro(**{"sample.sampler": "fast"}), workdir, ["a red circle"])

  distill.distill(micro(**{"distill.train.num_steps": 5}), workdir)
  path = sample_lib.sample(config, workdir, ["a red circle", "two squares"])
  assert "_fast_" in path
  with open(path[:-len(".png")] + ".json", encoding="utf-8") as f:
    settings = json.load(f)
  assert settings["sampler"] == "fast" and settings["denoiser_step"] == 5


def test_distill_without_a_trained_ntm_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    distill.distill(micro(), str(tmp_path))
