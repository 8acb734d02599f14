"""Emoji artwork captioned with its Unicode names: real captions, offline.

Two npm packages ship the artwork with its names (neither is fetched at run time):
  emoji-datasource-google@16.0.0   Noto Emoji images, Apache-2.0
  emoji-datasource-twitter@16.0.0  Twemoji images, CC-BY-4.0
Each holds `emoji.json` (name, category, subcategory, ... per emoji) and 64x64 RGBA PNGs under
`img/<set>/64/`. `python -m ntm_jax.data.emoji` fetches both with `npm pack` and unpacks them
into DATA_DIR/<set>/ in that layout; EmojiSource reads that layout.

What the source holds:
  * one image per (artwork set, base emoji): skin-tone variants are left out (they repeat a name
    with another colour), and so are the five 'Component' swatches (skin tones, not pictures);
  * each image composited on white and resized to data.image_size;
  * caption = the emoji's name in lower case ("grimacing face", "kuwait flag");
  * a fixed held-out split of whole names (SPLIT_VERSION 1: a name is held out when the SHA-1 of
    its caption is 0 mod 10, about 10%), with every artwork set of a held-out name. It is never
    trained on: split "train" is the seen names, split "eval" the held-out ones.
Unreadable or corrupt PNGs are skipped, counted and logged.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import numpy as np
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from ntm_jax import errors

VERSION = "16.0.0"
SETS = ("google", "twitter")
LICENSES = {"google": "Apache-2.0 (Noto Emoji)", "twitter": "CC-BY-4.0 (Twemoji)"}
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ntm_jax", "emoji")
FETCH_COMMAND = "python -m ntm_jax.data.emoji"
SPLIT_VERSION = 1
HELD_OUT_MODULUS = 10  # a name is held out when sha1(caption) % 10 == 0
EXCLUDED_CATEGORIES = ("Component",)


def caption_of(entry: dict) -> str:
  """The caption rule: the emoji's name in lower case."""
  return " ".join(entry["name"].lower().split())


def held_out(caption: str) -> bool:
  """Split v1: a deterministic tenth of the names, independent of the package's order."""
  digest = hashlib.sha1(caption.encode("utf-8")).hexdigest()
  return int(digest[:8], 16) % HELD_OUT_MODULUS == 0


def set_dir(data_dir: str, artwork_set: str) -> str:
  return os.path.join(data_dir, artwork_set)


def read_entries(data_dir: str, artwork_set: str) -> list:
  """The set's emoji.json, or an error naming the fetch command."""
  path = os.path.join(set_dir(data_dir, artwork_set), "emoji.json")
  if not os.path.isfile(path):
    raise errors.MissingInputError(f"emoji artwork not found at {path}: fetch it with `{FETCH_COMMAND} "
                            f"--dir={data_dir}` (npm packages emoji-datasource-google and "
                            f"-twitter @{VERSION})")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def composite_on_white(image: Image.Image, size: int) -> np.ndarray:
  """RGBA artwork over a white background, resized: uint8 [size, size, 3]."""
  rgba = image.convert("RGBA")
  white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
  rgb = Image.alpha_composite(white, rgba).convert("RGB")
  if rgb.size != (size, size):
    rgb = rgb.resize((size, size), Image.LANCZOS)
  return np.asarray(rgb, np.uint8)


class EmojiSource:
  """(image, caption) pairs of the seen ("train") or held-out ("eval") names; decoded once.

  Attributes: images uint8 [n, size, size, 3]; captions, artwork_sets, subcategories: n each;
  skipped: the (set, file) pairs that could not be read.
  """

  def __init__(self, *, data_dir: str, split: str, image_size: int, sets=SETS):
    if split not in ("train", "eval"):
      raise ValueError(f"emoji split must be 'train' (seen names) or 'eval' (held-out names), "
                       f"got {split!r}")
    unknown = set(sets) - set(SETS)
    if unknown or not sets:
      raise ValueError(f"data.emoji_sets must be a non-empty subset of {SETS}, got {tuple(sets)}")
    images, self.captions, self.artwork_sets, self.subcategories = [], [], [], []
    self.skipped = []
    for artwork_set in sets:
      folder = os.path.join(set_dir(data_dir, artwork_set), "img", artwork_set, "64")
      for entry in read_entries(data_dir, artwork_set):
        caption = caption_of(entry)
        if (entry["category"] in EXCLUDED_CATEGORIES or not entry.get(f"has_img_{artwork_set}")
            or held_out(caption) != (split == "eval")):
          continue
        try:
          with Image.open(os.path.join(folder, entry["image"])) as image:
            images.append(composite_on_white(image, image_size))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
          self.skipped.append((artwork_set, entry["image"]))
          logging.warning("Skipping unreadable emoji %s/%s: %s", artwork_set, entry["image"], err)
          continue
        self.captions.append(caption)
        self.artwork_sets.append(artwork_set)
        self.subcategories.append(entry["subcategory"])
    if not images:
      raise ValueError(f"no readable emoji images for split {split!r} in {data_dir} "
                       f"({len(self.skipped)} skipped as unreadable)")
    self.images = np.stack(images)
    self.split, self.image_size, self.sets = split, image_size, tuple(sets)
    logging.info("EmojiSource[%s]: %d images of %d names, %d skipped as unreadable", split,
                 len(self.images), len(set(self.captions)), len(self.skipped))

  def __repr__(self):  # grain checks the checkpointed source against this
    return (f"EmojiSource(split={self.split!r}, split_version={SPLIT_VERSION}, sets={self.sets}, "
            f"image_size={self.image_size}, images={len(self.images)})")

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    index = int(index)
    return {"image": self.images[index], "caption": self.captions[index]}


def fetch(data_dir: str = DEFAULT_DIR, sets=SETS) -> None:
  """npm pack each artwork set and unpack emoji.json, LICENSE and img/<set>/64 into data_dir."""
  if shutil.which("npm") is None:
    raise FileNotFoundError("npm is needed to fetch the emoji artwork (e.g. apt-get install npm)")
  for artwork_set in sets:
    package = f"emoji-datasource-{artwork_set}@{VERSION}"
    with tempfile.TemporaryDirectory() as tmp:
      subprocess.run(["npm", "pack", "--silent", package], cwd=tmp, check=True,
                     stdout=subprocess.DEVNULL)
      (tarball,) = [name for name in os.listdir(tmp) if name.endswith(".tgz")]
      wanted = ("package/emoji.json", "package/LICENSE", f"package/img/{artwork_set}/64/")
      out = set_dir(data_dir, artwork_set)
      with tarfile.open(os.path.join(tmp, tarball)) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(wanted)]
        for member in members:
          member.name = member.name[len("package/"):]
        archive.extractall(out, members=members, filter="data")
    print(f"{package}: {len(members)} files -> {out} (licence {LICENSES[artwork_set]})")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; usage: {FETCH_COMMAND} [--dir=DIR]")
  fetch(flags.FLAGS.dir)


if __name__ == "__main__":
  flags.DEFINE_string("dir", DEFAULT_DIR, "where to unpack the artwork (data.emoji_dir)")
  app.run(main)
