"""Bench helpers: the matmul FLOP counter, and the prepared accelerator run
(bench/accelerator.sh) smoke-tested on the CPU."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import flops  # pylint: disable=g-import-not-at-top,wrong-import-position


def _layers(x, w, depth: int):
  body = lambda h, _: (jnp.tanh(h @ w), None)
  return jax.lax.scan(body, x, None, length=depth)[0].sum()


def test_flop_count_multiplies_a_scanned_layer_by_its_length():
  x, w = jnp.ones((8, 16)), jnp.ones((16, 16))
  one_layer = 2 * 8 * 16 * 16
  assert flops.matmul_flops(lambda a, b: _layers(a, b, 10), x, w) == {
      "flops": 10 * one_layer, "unbounded_loops": 0}
  # The backward pass doubles it; remat recomputes the forward pass once more.
  grad = jax.grad(lambda a, b: _layers(a, b, 10), argnums=1)
  assert flops.matmul_flops(grad, x, w)["flops"] == 30 * one_layer
  remat = jax.jit(jax.grad(jax.checkpoint(lambda a, b: _layers(a, b, 10)), argnums=1))
  assert flops.matmul_flops(remat, x, w)["flops"] == 40 * one_layer


def test_flop_count_of_a_convolution_and_a_while_loop():
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert flops.matmul_flops(conv, jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 5)))["flops"] == (
      2 * (2 * 8 * 8 * 5) * 3 * 9)
  loop = lambda x, n: jax.lax.while_loop(lambda c: c[1] < n, lambda c: (c[0] @ c[0], c[1] + 1),
                                         (x, 0))[0]
  assert flops.matmul_flops(loop, jnp.ones((4, 4)), 3) == {"flops": 2 * 4**3,
                                                           "unbounded_loops": 1}


def test_accelerator_script_runs_every_section_and_prints_one_json(tmp_path, monkeypatch,
                                                                   capsys):
  """bench/accelerator.sh is valid bash around `python bench/accelerator.py`, run here in this
  process: a subprocess would spend ~4 s importing the stack again."""
  script = os.path.join(ROOT, "bench", "accelerator.sh")
  subprocess.run(["bash", "-n", script], check=True)
  with open(script, encoding="utf-8") as f:
    assert 'python bench/accelerator.py "$@"' in f.read()
  import accelerator  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "argv", ["accelerator.py", "--smoke", f"--workdir={tmp_path}"])
  accelerator.main()
  out = json.loads(capsys.readouterr().out)
  assert set(out["seconds"]) == {"mfu", "samplers", "train_ntm", "train_fm"}
  assert not [name for name in out["seconds"] if "error" in out[name]], out
  mfu = out["mfu"]["result"]
  assert mfu["step_tflop"] > 0 and mfu["achieved_tflops"] > 0 and mfu["step_s"] > 0
  assert mfu["mfu"] is None  # a CPU has no entry in the peak table
  assert set(out["samplers"]["samplers"]) == {"full_nf", "full_nf_denoised", "fast", "fm_euler"}
  for name, method in (("train_ntm", "ntm"), ("train_fm", "flow_matching")):
    run = out[name]
    assert run["method"] == method and run["train_steps"] >= 2
    assert 0.0 <= run["shapes_eval"]["seen"]["overall"] <= 1.0


def test_paper_scale_train_step_lowers_on_eight_fake_devices():
  done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "aot.py"), "--devices=8",
                         "--no_compile"], capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout)
  assert out["preset"] == "default" and out["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  assert out["dtype"] == "bfloat16" and out["remat"] and out["batch"] == 1024
  assert 3.0 < out["params_b"] < 3.7  # 8 transporter + 24 predictor layers at width 3072
  # ~6 FLOPs per parameter per token: 1024 images x 4 levels x 256 tokens through both nets.
  assert 15_000 < out["step_tflop_model"] < 30_000
  # Every Transformer layer stack keeps its activations split over (data, fsdp): without it XLA
  # planned ~55 GiB more per device at 64 devices (BENCHMARKS.md, paper scale).
  assert out["batch_sharding_constraints"] >= 6


def test_quality_overrides_apply_to_every_run_then_to_one():
  import argparse  # pylint: disable=g-import-not-at-top
  import quality  # pylint: disable=g-import-not-at-top
  from configs import fm  # pylint: disable=g-import-not-at-top
  from configs import t2i  # pylint: disable=g-import-not-at-top
  # pylint: disable=protected-access
  args = argparse.Namespace(preset="micro", set=["sample.guidance=5.0", "sample.t_min=0.1"])
  ntm = quality._config(t2i.get_config, args, ["sample.guidance=7.0"])
  baseline = quality._config(fm.get_config, args, [])
  assert (ntm.sample.guidance, ntm.sample.t_min) == (7.0, 0.1)
  assert (baseline.sample.guidance, baseline.sample.t_min) == (5.0, 0.1)


def test_quality_rows_name_every_run_in_table_order():
  import argparse  # pylint: disable=g-import-not-at-top
  import quality  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  args = argparse.Namespace(
      ntm_workdir="", ntm_set=[], ntm_from_fm_workdir="A", ntm_from_fm_set=["sample.guidance=6"],
      fm_workdir="F", fm_set=[], run=["weighted:ntm_from_fm:B"],
      run_set=["weighted:sample.guidance=4", "other:sample.guidance=9"])
  rows = quality._rows(args, parser)  # pylint: disable=protected-access
  assert rows == [("ntm_from_fm", "ntm_from_fm", "A", ["sample.guidance=6"]),
                  ("weighted", "ntm_from_fm", "B", ["sample.guidance=4"]),
                  ("fm", "fm", "F", [])]
  for bad in (["x:nope:B"], ["fm:fm:B"]):  # an unknown config file; a name taken twice
    bad_args = argparse.Namespace(**{**vars(args), "run": bad})
    with pytest.raises(SystemExit):
      quality._rows(bad_args, parser)  # pylint: disable=protected-access


def test_quality_tables_name_the_denoiser_step_of_the_fast_rows():
  import quality  # pylint: disable=g-import-not-at-top
  entry = lambda sampler, **extra: {"sampler": sampler, "num_steps": 4, "class_accuracy": 0.5,
                                    "frechet_distance": 1.0, **extra}
  runs = {"ntm": {"config": "t2i", "likelihood": {"eval_T4/nll_nats_per_dim": 1.0},
                  "class_metrics": {"classifier": {"source": "mnist", "steps": 1, "test_accuracy": 0.9,
                                                   "test_images": 10},
                                    "reference_images": 10, "real_floor": 0.1,
                                    "samplers": [entry("full_nf"),
                                                 entry("fast", denoiser_step=492)]}}}
  table = "\n".join(quality._tables(runs))  # pylint: disable=protected-access
  assert "| ntm fast (denoiser step 492) | 4 |" in table
  assert "| ntm full_nf | 4 |" in table


def test_ood_figure_stacks_the_nll_above_the_per_position_test(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import ood  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  same = lambda: rng.normal(3.0, 0.3, 500)  # the NLL: both sets alike
  inside = {"nll": same(), "typicality_tokens": rng.chisquare(64, 500)}
  outside = {"nll": same(), "typicality_tokens": 10 * rng.chisquare(64, 500)}
  path = tmp_path / "ood.png"
  ood.figure(str(path), inside, outside, ("in", "out"), {"nll": 0.5, "typicality_tokens": 1.0})
  image = np.asarray(Image.open(path).convert("RGB")).astype(int)
  assert image.shape == (2 * 260 + 8, 600, 3)
  orange = (np.abs(image - (245, 130, 30)).sum(-1) < 30)
  blue = (np.abs(image - (40, 80, 220)).sum(-1) < 30)
  columns = lambda mask, rows: np.nonzero(mask[rows].any(0))[0]
  bottom = slice(268 + 36, 268 + 238)  # the bottom panel's plot area, below its legend
  # Below, the foreign set's curve rises right of the in-distribution one's (log10 of 10x more).
  peak = lambda mask: columns(mask, bottom).mean()
  assert peak(orange) > peak(blue) + 100
