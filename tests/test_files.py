"""Run-output paths: local paths become absolute, cloud URLs are never turned into local
folders, and the writers create what they need."""

import os

import numpy as np
from PIL import Image

from ntm_jax import files


def test_local_paths_become_absolute_and_urls_stay_urls(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(files.path("run/a")) == os.path.join(str(tmp_path), "run", "a")
  url = files.path("gs://bucket/ntm")
  assert str(url / "checkpoints") == "gs://bucket/ntm/checkpoints"
  assert str(files.path(os.path.join("gs://bucket/ntm", "eval"))) == "gs://bucket/ntm/eval"
  assert not os.path.exists(tmp_path / "gs:")


def test_writers_create_parent_directories_and_round_trip(tmp_path):
  files.write_json(tmp_path / "a" / "b.json", {"x": [1, 2]})
  assert files.read_json(tmp_path / "a" / "b.json") == {"x": [1, 2]}
  files.write_text(str(tmp_path / "c" / "d.md"), "# t\n")
  assert (tmp_path / "c" / "d.md").read_text() == "# t\n"
  image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
  files.write_png(tmp_path / "e" / "f.png", Image.fromarray(image))
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "e" / "f.png")), image)
