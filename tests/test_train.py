"""The training system end to end on the `micro` preset: train, checkpoint, the sample, eval and
score modes, non-finite updates, and mistakes found at run time. Interruption, sharding and
command-line mistakes have their own modules (test_preemption, test_sharding, test_command_line)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import test_emoji
from helpers import micro_config, train_batches, training_losses
from ntm_jax import errors
from ntm_jax import files
from ntm_jax.evaluate import emoji_eval
from ntm_jax.evaluate import sample as sample_lib
from ntm_jax.evaluate import score
from ntm_jax.evaluate import suite
from ntm_jax.runtime import checkpointing
from ntm_jax.runtime import runtime
from ntm_jax.runtime import sharding
from ntm_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("micro_run"))
  config = micro_config(**{"train.num_steps": 20, "train.sample_every": 20, "train.eval_every": 20})
  state = loop.train_and_evaluate(config, workdir)
  return workdir, config, state


def test_training_writes_checkpoints_metrics_and_a_sample_grid(trained):
  workdir, config, state = trained
  assert int(state.step) == 20
  manager = checkpointing.make_manager(workdir, config.train, asynchronous=False)
  assert manager.all_steps() == [10, 20]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  grid = Image.open(os.path.join(workdir, "samples", "step_00000020.png"))
  cell, scale = 8 + 1, 128 // 8  # 8-pixel images, 1-pixel gaps, scaled for viewing
  assert grid.size == ((3 * cell + 1) * scale, (2 * cell + 1) * scale)  # 3 per prompt x 2


def test_a_named_checkpoint_step_restores_and_a_missing_one_is_named(trained):
  workdir, config, _ = trained
  _, state = checkpointing.restore_latest(config, workdir, step=10)  # a training curve's point
  assert int(state.step) == 10
  with pytest.raises(errors.MissingInputError, match="no checkpoint of step 15 .* steps 10, 20"):
    checkpointing.restore_latest(config, workdir, step=15)


def test_sample_mode_writes_a_grid_of_the_requested_size(trained):
  workdir, config, _ = trained
  config = micro_config(**{"sample.per_prompt": 4, "sample.guidance": 1.5, "sample.seed": 3})
  prompts = ["a red circle", "two squares", "a blue triangle left of a green square"]
  path = sample_lib.sample(config, workdir, prompts)
  cell, scale = 9, 16
  assert Image.open(path).size == ((4 * cell + 1) * scale, (3 * cell + 1) * scale)
  with open(path[:-len(".png")] + ".json", encoding="utf-8") as f:
    settings = json.load(f)
  assert settings["prompts"] == prompts and settings["guidance"] == 1.5
  assert settings["seed"] == 3 and settings["checkpoint_step"] == 20
  # Other prompts write other files; the same call again replaces only its own output.
  other = sample_lib.sample(config, workdir, prompts[:1])
  assert other != path and os.path.exists(path) and os.path.exists(other)
  assert sample_lib.sample(config, workdir, prompts[:1]) == other


def test_sample_mode_with_trajectory_denoising(trained):
  workdir, _, _ = trained
  config = micro_config(**{"sample.per_prompt": 2, "sample.sampler": "full_nf_denoised"})
  path = sample_lib.sample(config, workdir, ["a red circle"])
  assert "full_nf_denoised" in path
  assert Image.open(path).size == ((2 * 9 + 1) * 16, (1 * 9 + 1) * 16)
  with pytest.raises(ValueError, match="sample.sampler must be one of"):
    sample_lib.sample(micro_config(**{"sample.sampler": "magic"}), workdir, ["a red circle"])


class PixelFeatures:
  """Stands in for the Inception network (its port has its own tests): flattened pixels."""

  def __init__(self, batch_size):
    del batch_size

  def __call__(self, images):
    return np.asarray(images, np.float64).reshape(len(images), -1) / 255.0


def test_emoji_sample_quality_reports_fid_kid_and_retrieval(trained, tmp_path, monkeypatch):
  workdir, _, _ = trained
  monkeypatch.setattr(suite.inception, "FeatureExtractor", PixelFeatures)
  config = micro_config(**{"data.source": "emoji",
                    "data.emoji_dir": test_emoji.write_fixture(tmp_path / "emoji"),
                    "eval.emoji.seen_names": 2, "eval.emoji.samples_per_name": 1,
                    "eval.emoji.noise_images": 4, "eval.fid.batch_size": 4,
                    "eval.fid.cache_dir": str(tmp_path / "fid")})
  rt, state = checkpointing.restore_latest(config, workdir)
  report = suite.sample_quality(config, workdir, rt, state.ema_params, [("full_nf", None)])
  (entry,) = report["emoji"]["samplers"]
  assert entry["seen"]["fid_images"] == 2 and entry["seen"]["fid_reference_images"] == 6
  assert entry["held_out"]["fid_images"] == 2 and entry["held_out"]["fid_reference_images"] == 4
  for split in ("seen", "held_out"):
    assert np.isfinite(entry[split]["fid"]) and np.isfinite(entry[split]["kid"])
    assert 0.0 <= entry[split]["name_top1"] <= entry[split]["name_top5"] <= 1.0
  assert entry["images_per_s"] > 0
  bounds = report["emoji"]["retrieval_bounds"]
  assert set(bounds) == {"real_seen", "real_held_out", "noise"}
  assert sorted(p.name for p in (tmp_path / "fid").iterdir()) == [
      "emoji_v1_eval_8px_3ch.npz", "emoji_v1_train_8px_3ch.npz"]
  config.eval.emoji.seen_names = 4
  with pytest.raises(ValueError, match="the data has 3 seen names"):
    emoji_eval.prompt_sets(config)


def test_eval_mode_writes_the_likelihood_and_shapes_eval_reports(trained):
  workdir, config, _ = trained
  path = suite.evaluate(config, workdir)
  with open(path, encoding="utf-8") as f:
    report = json.load(f)
  assert report["step"] == 20
  for key in ("nll_nats_per_dim", "bits_per_dim", "bound_x_t0_nats_per_dim",
              "level_0_nats_per_dim", "level_4_nats_per_dim"):
    assert np.isfinite(report["likelihood"][f"eval_T4/{key}"])
  (entry,) = report["shapes_eval"]
  assert entry["sampler"] == "full_nf" and entry["prompts"] == 2 * 7 + 2 * 3
  assert 0.0 <= entry["seen"]["overall"] <= 1.0 and "held_out" in entry
  with open(path[:-len(".json")] + ".md", encoding="utf-8") as f:
    text = f.read()
  assert "| T | NLL nats/dim" in text and "### Held-out combinations" in text


def test_eval_mode_reports_fid_kid_on_held_out_captions(trained, tmp_path, monkeypatch):
  workdir, _, _ = trained
  monkeypatch.setattr(suite.inception, "FeatureExtractor", PixelFeatures)
  config = micro_config(**{"eval.fid.images": 6, "eval.fid.batch_size": 4,
                    "eval.fid.cache_dir": str(tmp_path / "fid"), "eval.shapes_eval": False})
  path = suite.evaluate(config, workdir)
  with open(path, encoding="utf-8") as f:
    (entry,) = json.load(f)["fid"]["samplers"]
  assert entry["fid_images"] == entry["fid_reference_images"] == 6
  assert np.isfinite(entry["fid"]) and np.isfinite(entry["kid"]) and entry["fid"] > 0
  (cached,) = (tmp_path / "fid").iterdir()  # the real features, computed once
  assert cached.name.startswith("shapes_eval_8px_3ch_first6_")
  with open(path[:-len(".json")] + ".md", encoding="utf-8") as f:
    assert "## Inception FID / KID (6 held-out captions" in f.read()
  config = micro_config(**{"eval.fid.images": 6, "data.num_eval_examples": 4})
  with pytest.raises(ValueError, match="the held-out split has 4 examples"):
    suite.sample_quality(config, workdir, None, None, [("full_nf", None)])


def test_score_mode_ranks_shapes_near_misses_and_classifies_given_images(trained, tmp_path):
  workdir, config, _ = trained
  path = score.score(config, workdir)
  assert os.path.basename(path).startswith("score_step_00000020_") and path.endswith(".json")
  near = files.read_json(path)["near_misses"]
  assert near["prompts"] == 7 + 3 and near["renders"] == 1
  assert "seen colors" in near["ranked_first"] and "held_out composite" in near["ranked_first"]
  assert {k.split()[1] for k in near["beats_near_miss"]} == {"colour", "shape", "count",
                                                            "relation"}
  assert all(0.0 <= v <= 1.0 for v in [*near["ranked_first"].values(),
                                       *near["beats_near_miss"].values()])
  Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "red.png")
  Image.new("RGB", (12, 12), (30, 30, 200)).save(tmp_path / "blue.png")  # resized to 8x8
  captions = ["a red circle", "a blue square", "two green triangles"]
  path = score.score(config, workdir, [str(tmp_path / "*.png")], captions)
  assert os.path.basename(path).startswith("score_images_step_00000020_")
  result = files.read_json(path)["images"]
  assert result["resized"] == 1 and result["dimension"] == 8 * 8 * 3
  assert [os.path.basename(e["path"]) for e in result["images"]] == ["blue.png", "red.png"]
  for entry in result["images"]:
    assert np.all(np.isfinite(entry["nll_nats_per_dim"]))
    assert entry["best"] == captions[int(np.argmin(entry["nll_nats_per_dim"]))]
    np.testing.assert_allclose(sum(entry["posterior"]), 1.0, atol=1e-3)
  with open(path[:-len(".json")] + ".md", encoding="utf-8") as f:
    assert "| blue.png |" in f.read()
  with pytest.raises(ValueError, match="matched no files"):
    score.score(config, workdir, [str(tmp_path / "*.jpg")], captions)
  (tmp_path / "notes.png").write_text("not an image")
  with pytest.raises(ValueError, match="cannot read .*notes.png as an image"):
    score.score(config, workdir, [str(tmp_path / "notes.png")], captions)


@pytest.mark.parametrize("overrides, images, prompts, message", [
    ({"method": "flow_matching"}, None, None, "needs an exact likelihood"),
    ({"score.trajectories": 0}, None, None, "score.trajectories must be a positive integer"),
    ({}, ["*.png"], None, "go together"),
    ({}, ["*.png"], ["a red circle"], "at least two"),
    ({"data.source": "folder"}, None, None, "has no held-out captions"),
])
def test_score_mode_refuses_bad_settings(overrides, images, prompts, message):
  with pytest.raises(ValueError, match=message):
    score.validate(micro_config(**overrides), images, prompts)


def test_loss_decreases_over_a_short_run():
  # The preset's 20 steps, so the train step is the one the compilation cache holds. The NLL
  # falls from 6.17 to 4.50 nats/dim (mean of the first and of the last 5 steps).
  losses = training_losses(micro_config(), "loss", 20)
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3


def test_non_finite_update_is_skipped_and_counted():
  config = micro_config()
  rt = runtime.build(config)
  state, step = rt.create_state(), rt.train_step(4)
  batch = train_batches(config, 1)[0]
  before = jax.tree.map(np.asarray, (state.params, state.ema_params, state.opt_state.inner_state))
  poisoned = {**batch, "image": np.where(np.arange(8)[:, None, None, None] == 0, np.nan,
                                         batch["image"].astype(np.float32))}
  state, metrics, consecutive = step(state, rt.global_batch(poisoned))
  after = jax.tree.map(np.asarray, (state.params, state.ema_params, state.opt_state.inner_state))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert int(consecutive) == 1 and float(metrics["skipped_updates_total"]) == 1.0
  for _ in range(2):  # the warmup schedule starts at 0: the first applied update is zero
    state, metrics, consecutive = step(state, rt.global_batch(batch))
  assert int(consecutive) == 0 and np.isfinite(float(metrics["loss"]))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before[0], state.params)
  assert any(jax.tree.leaves(changed))


def test_mistakes_found_at_run_time_are_user_errors(trained, tmp_path):
  workdir, _, _ = trained
  from configs import fm  # pylint: disable=g-import-not-at-top
  from ntm_jax import latents  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.RunMismatchError, match="holds a checkpoint of another model"):
    checkpointing.restore_latest(fm.get_config("micro"), workdir)
  with pytest.raises(errors.BadInputError, match="--images matched no files"):
    score.read_images([str(tmp_path / "*.png")], 8, 3)
  with pytest.raises(errors.NotWritableError, match="is not writable"):
    loop.check_workdir("/proc/ntm_jax_cannot_write_here")
  with pytest.raises(errors.MissingInputError, match="no exported autoencoder"):
    latents.read_record(str(tmp_path))
  # Through the command line: the message alone, one line, a nonzero exit.
  proc = subprocess.run([sys.executable, "-m", "ntm_jax.main", "--config=configs/fm.py:micro",
                         f"--workdir={workdir}", "--mode=sample"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  lines = [l for l in proc.stderr.splitlines() if l.startswith("ntm_jax: ")]
  assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert len(lines) == 1 and "holds a checkpoint of another model" in lines[0]


def test_weight_decay_applies_to_matrices_only():
  from ntm_jax.runtime import state as state_lib  # pylint: disable=g-import-not-at-top
  params = runtime.build(micro_config()).abstract_state.params
  mask = {sharding.path_string(p): m for p, m in
          jax.tree_util.tree_flatten_with_path(state_lib.decay_mask(params))[0]}
  assert mask["predictor/backbone/transformer/layers/mlp/fc1/kernel"]
  assert mask["text_encoder/embed/embedding"]
  assert not mask["predictor/backbone/transformer/layers/mlp/fc1/bias"]
  assert not mask["predictor/backbone/transformer/layers/attn_norm/scale"]


def test_schedule_steps_stretch_the_cosine_beyond_training():
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  from ntm_jax.runtime import state as state_lib  # pylint: disable=g-import-not-at-top
  optim = ConfigDict({"peak_lr": 1.0, "end_lr": 0.0, "warmup_steps": 10, "schedule_steps": 0})
  assert float(state_lib.lr_schedule(optim, 110)(110)) == pytest.approx(0.0, abs=1e-6)
  optim.schedule_steps = 210  # stops halfway down the cosine: cos(pi / 2) -> half the peak
  assert float(state_lib.lr_schedule(optim, 110)(110)) == pytest.approx(0.5, abs=1e-6)


def test_progress_line_every_interval_with_an_eta_at_the_mean_speed(monkeypatch):
  clock, lines = [0.0], []
  monkeypatch.setattr(loop.time, "monotonic", lambda: clock[0])
  monkeypatch.setattr(loop.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  progress = loop._ProgressLine(0, 100, every_s=25.0)  # pylint: disable=protected-access
  for step, now in ((1, 30.0), (11, 40.0), (21, 55.0), (31, 155.0), (100, 200.0)):
    clock[0] = now
    progress(step, {"nll_nats_per_dim": 2.5})
  # The first step says what compiling took (no speed yet); nothing 10 s later; then one line
  # per 25 s and the last.
  assert lines[0] == "step 1/100 | compiled and ran the first step in 0m30s"
  assert lines[1] == "step 21/100 | NLL 2.5 nats/dim | 0.80 steps/s | ETA 1m39s"
  # A 100 s pause (e.g. an evaluation) slows this interval's speed, not the ETA's mean: 30/125 s.
  assert lines[2] == "step 31/100 | NLL 2.5 nats/dim | 0.10 steps/s | ETA 4m48s"
  assert lines[3].startswith("step 100/100") and len(lines) == 4
