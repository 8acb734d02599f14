"""The emoji source on a small fixture in the npm packages' layout, and its retrieval judge."""

import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from ntm_jax.data import emoji
from ntm_jax.data import sources
from ntm_jax.evaluate import emoji_eval

# (name as emoji.json spells it, subcategory); the last two are held out by split v1.
ENTRIES = (("GRINNING FACE", "face-smiling"), ("DOG FACE", "animal-mammal"),
           ("RED APPLE", "food-fruit"), ("PANDA FACE", "animal-mammal"),
           ("ICE CREAM", "food-sweet"))
COLOURS = ((250, 200, 0), (150, 100, 50), (220, 20, 20), (30, 30, 30), (240, 180, 200))


def write_fixture(root, corrupt=()):
  """Both artwork sets with ENTRIES as 64x64 RGBA discs on transparency, plus a skin-tone swatch
  (category 'Component'); files named in `corrupt` hold garbage."""
  for k, artwork_set in enumerate(emoji.SETS):
    folder = root / artwork_set / "img" / artwork_set / "64"
    folder.mkdir(parents=True)
    entries = []
    for i, ((name, subcategory), colour) in enumerate(zip(ENTRIES, COLOURS)):
      filename = f"{i:04x}.png"
      path = folder / filename
      if filename in corrupt:
        path.write_bytes(b"not a png")
      else:
        image = np.zeros((64, 64, 4), np.uint8)
        yy, xx = np.mgrid[:64, :64]
        inside = (yy - 32) ** 2 + (xx - 32) ** 2 < (20 + 6 * k) ** 2
        image[inside] = colour + (255,)
        Image.fromarray(image, "RGBA").save(path)
      entries.append({"name": name, "image": filename, "category": "Test",
                      "subcategory": subcategory, f"has_img_{artwork_set}": True})
    entries.append({"name": "EMOJI MODIFIER FITZPATRICK TYPE-3", "image": "1f3fc.png",
                    "category": "Component", "subcategory": "skin-tone",
                    f"has_img_{artwork_set}": True})
    (root / artwork_set / "emoji.json").write_text(json.dumps(entries))
  return str(root)


def test_split_v1_holds_out_whole_names_by_their_hash():
  assert [emoji.held_out(emoji.caption_of({"name": n})) for n, _ in ENTRIES] == [
      False, False, False, True, True]


def test_source_composites_on_white_and_captions_with_the_lower_case_name(tmp_path):
  root = write_fixture(tmp_path)
  train = emoji.EmojiSource(data_dir=root, split="train", image_size=16)
  held_out = emoji.EmojiSource(data_dir=root, split="eval", image_size=16)
  assert len(train) == 6 and len(held_out) == 4  # 3 and 2 names, both sets; no skin swatch
  assert sorted(set(train.captions)) == ["dog face", "grinning face", "red apple"]
  assert sorted(set(held_out.captions)) == ["ice cream", "panda face"]
  example = train[0]
  assert example["image"].shape == (16, 16, 3) and example["image"].dtype == np.uint8
  np.testing.assert_array_equal(example["image"][0, 0], [255, 255, 255])  # transparent -> white
  np.testing.assert_array_equal(example["image"][8, 8], COLOURS[0])
  assert "split_version=1" in repr(train)


def test_corrupt_pngs_are_skipped_and_counted(tmp_path):
  root = write_fixture(tmp_path, corrupt=("0001.png",))
  train = emoji.EmojiSource(data_dir=root, split="train", image_size=16)
  assert len(train) == 4 and train.skipped == [("google", "0001.png"), ("twitter", "0001.png")]
  assert "dog face" not in train.captions


def test_missing_artwork_names_the_fetch_command(tmp_path):
  config = ml_collections.ConfigDict(dict(source="emoji", emoji_dir=str(tmp_path / "none"),
                                          emoji_sets=("google",), image_size=16))
  with pytest.raises(FileNotFoundError, match="python -m ntm_jax.data.emoji"):
    sources.make_source(config, "train")


class FakeGallery(emoji_eval.Gallery):
  """A gallery of given features, without the Inception network."""

  def __init__(self, splits):  # pylint: disable=super-init-not-called
    self.splits = splits
    parts = [splits[s] for s in ("train", "eval")]
    self.features, self.captions, self.subcategories = (np.concatenate(x) for x in zip(*parts))
    self.subcategory_of = dict(zip(self.captions, self.subcategories))


def test_retrieval_reads_names_and_subcategories_of_the_nearest_real_image():
  feats = np.eye(4) * 10
  gallery = FakeGallery({
      "train": (feats[:2], np.array(["dog face", "red apple"]),
                np.array(["animal-mammal", "food-fruit"])),
      "eval": (feats[2:], np.array(["panda face", "ice cream"]),
               np.array(["animal-mammal", "food-sweet"]))})
  near_dog, near_apple = feats[0] + 0.1, feats[1] + 0.1
  result = emoji_eval.retrieval(gallery, np.stack([near_dog, near_apple]),
                                ["dog face", "dog face"])
  assert result["name_top1"] == 0.5 and result["name_top5"] == 1.0
  # A held-out "panda face" drawn like the seen dog: wrong name, right subcategory.
  held_out = emoji_eval.retrieval(gallery, near_dog[None], ["panda face"])
  assert held_out["name_top1"] == 0.0 and held_out["subcategory_top1"] == 1.0
  # Excluding a query's own image sends it to its next neighbour.
  own = emoji_eval.retrieval(gallery, feats[:1], ["dog face"], exclude=np.array([0]))
  assert own["name_top1"] == 0.0
