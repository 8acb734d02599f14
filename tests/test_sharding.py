"""Sharding: an 8-device (data, fsdp, tensor) step equals the 1-device step, and the mesh,
tensor-parallel and replication rules place each parameter as documented."""

import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from helpers import micro_config
from ntm_jax.runtime import runtime
from ntm_jax.runtime import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EIGHT_DEVICES = """
import json
import jax, numpy as np
from absl import flags
flags.FLAGS.mark_as_parsed()
from configs import t2i
from ntm_jax import text
from ntm_jax.data import pipeline, sources
from ntm_jax.runtime import runtime
config = t2i.get_config("micro")
config.mesh.min_shard_size = 1  # shard even tiny parameters
batch = next(iter(pipeline.make_loader(sources.make_source(config.data, "train"),
                                       text.tokenizer_for(config), global_batch_size=8, seed=0)))
out = {}
for name, devices, data, fsdp, tensor in [("one", jax.devices()[:1], 1, 1, 1),
                                          ("eight", jax.devices(), 2, 2, 2)]:
  config.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
  rt = runtime.build(config, devices=devices)
  state = rt.create_state()
  state, metrics, _ = rt.train_step(4)(state, rt.global_batch(batch))
  # Data-parallel sampling: the 8 prompts' text split over the batch axes, images gathered.
  config.sample.sampler = "full_nf"
  images = rt.sampler(config.sample)(state.ema_params, batch["tokens"], jax.random.key(1))
  spec = str(rt.prompt_batch(batch["tokens"]).sharding.spec)
  layers = state.params["predictor"]["backbone"]["transformer"]["layers"]
  kernel, out_kernel = layers["mlp"]["fc1"]["kernel"][...], layers["attn"]["out"]["kernel"][...]
  out[name] = {"loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
               "kernel": np.asarray(kernel).ravel()[:64].tolist(),
               "out_kernel": np.asarray(out_kernel).ravel()[:64].tolist(),
               "spec": str(kernel.sharding.spec), "out_spec": str(out_kernel.sharding.spec),
               "shard": list(kernel.addressable_shards[0].data.shape),
               "shape": list(kernel.shape), "devices": len(kernel.sharding.device_set),
               "images": np.asarray(images).ravel()[::7].tolist(), "prompt_spec": spec,
               "images_on_host": isinstance(images, np.ndarray)}
print("RESULT" + json.dumps(out))
"""


def test_eight_devices_give_the_same_step_as_one_with_sharded_parameters():
  """A (data 2, fsdp 2, tensor 2) step on 8 devices equals the 1-device step (float32: loss to
  1e-5 relative, gradient norm to 1e-4, updated weights to 1e-6), and so do the data-parallel
  samples of the updated model (to 1e-4). One mesh with all three axes: each axis's sharding
  is checked in the same run."""
  eight = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "XLA_FLAGS": eight})
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.split("RESULT")[-1])
  one, eight = result["one"], result["eight"]
  assert eight["devices"] == 8
  # Column-parallel fc1 (hidden units over tensor), row-parallel attention output, each also
  # split over fsdp along another axis.
  assert eight["spec"] == "P(None, 'fsdp', 'tensor')"
  assert eight["out_spec"] == "P(None, 'tensor', 'fsdp')"
  assert np.prod(eight["shard"]) * 4 == np.prod(eight["shape"])  # fsdp 2 x tensor 2
  assert eight["prompt_spec"] == "P(('data', 'fsdp'),)" and eight["images_on_host"]
  np.testing.assert_allclose(eight["images"], one["images"], atol=1e-4)
  np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
  np.testing.assert_allclose(eight["grad_norm"], one["grad_norm"], rtol=1e-4)
  np.testing.assert_allclose(eight["kernel"], one["kernel"], atol=1e-6)
  np.testing.assert_allclose(eight["out_kernel"], one["out_kernel"], atol=1e-6)


def test_mesh_shapes():
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  assert sharding.mesh_shape(ConfigDict({"data": -1, "fsdp": 2}), 8) == (4, 2, 1)
  assert sharding.mesh_shape(ConfigDict({"data": 1, "fsdp": -1}), 8) == (1, 8, 1)
  assert sharding.mesh_shape(ConfigDict({"data": 2, "fsdp": -1, "tensor": 2}), 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="mesh.data=3"):
    sharding.mesh_shape(ConfigDict({"data": 3, "fsdp": -1}), 8)
  with pytest.raises(ValueError, match="mesh.tensor=3"):
    sharding.mesh_shape(ConfigDict({"data": 1, "fsdp": -1, "tensor": 3}), 8)
  assert sharding.param_spec((4, 64, 256), 8, 1) == jax.sharding.PartitionSpec(None, None, "fsdp")
  assert sharding.param_spec((3, 5), 8, 1) == jax.sharding.PartitionSpec()


def test_tensor_rules_split_heads_and_hidden_units():
  rules = tuple(map(tuple, micro_config().mesh.tensor_rules))
  layer = "params/predictor/backbone/transformer/layers/"
  spec = lambda path, shape, tensor=2: sharding.leaf_spec(layer + path, shape, 2, 1,
                                                          (r"/bias$",), rules, tensor)
  P = jax.sharding.PartitionSpec
  assert spec("attn/q/kernel", (2, 64, 64)) == P(None, "fsdp", "tensor")
  assert spec("attn/out/kernel", (2, 64, 64)) == P(None, "tensor", "fsdp")
  assert spec("mlp/fc1/kernel", (2, 64, 256)) == P(None, "fsdp", "tensor")
  assert spec("mlp/fc2/kernel", (2, 256, 64)) == P(None, "tensor", "fsdp")
  assert spec("attn/kv/kernel", (2, 64, 32)) == P(None, "fsdp", None)  # GQA keys/values whole
  assert spec("mlp/fc1/bias", (2, 256)) == P()  # replicate wins
  assert spec("mlp/fc1/kernel", (2, 64, 255)) == P(None, "fsdp", None)  # 255 % 2: no tensor
  assert spec("mlp/fc1/kernel", (2, 64, 256), tensor=1) == P(None, None, "fsdp")


def test_hybrid_mesh_puts_the_data_axis_across_slices():
  """mesh.dcn_data = 2: the data axis spans the two slices; fsdp and tensor stay inside one."""
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  cpu = jax.devices()[0]
  devices = [types.SimpleNamespace(id=i, slice_index=i // 4, process_index=0,
                                   platform=cpu.platform, device_kind=cpu.device_kind)
             for i in range(8)]
  grid = sharding.device_grid(
      ConfigDict({"data": 2, "fsdp": 2, "tensor": 2, "dcn_data": 2}), devices)
  assert grid.shape == (2, 2, 2)
  assert {d.slice_index for d in grid[0].ravel()} == {0}
  assert {d.slice_index for d in grid[1].ravel()} == {1}
  with pytest.raises(ValueError, match="dcn_data=3"):
    sharding.make_mesh(ConfigDict({"data": 2, "fsdp": 1, "tensor": 1, "dcn_data": 3}),
                       jax.devices()[:1] * 2)


def test_path_rules_keep_matching_parameters_replicated():
  rules = (r"norm", r"/bias$")
  kernel = "params/predictor/backbone/transformer/layers/mlp/fc1/kernel"
  assert sharding.leaf_spec(kernel, (2, 64, 256), 4, 1, rules) == \
      jax.sharding.PartitionSpec(None, None, "fsdp")
  assert sharding.leaf_spec("params/predictor/head/bias", (256,), 4, 1, rules) == \
      jax.sharding.PartitionSpec()
  assert sharding.leaf_spec("params/x/attn_norm/scale", (2, 256), 4, 1, rules) == \
      jax.sharding.PartitionSpec()
  config = micro_config()
  shapes = runtime.build(config).abstract_state
  paths = [sharding.path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
  assert "params/predictor/backbone/embed/bias" in paths
  assert "params/predictor/backbone/transformer/layers/mlp/fc1/kernel" in paths
