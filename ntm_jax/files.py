"""Run outputs on a local disk or in cloud storage (gs://...).

Every file a run writes goes through etils.epath, which orbax also takes (and TensorFlow's file
writer behind clu's TensorBoard writer reads the same URLs), so a bucket workdir on a TPU pod
keeps checkpoints, metrics, sample grids and reports alike instead of a local "gs:" folder.
"""

import json

from etils import epath
from PIL import Image


def path(name) -> epath.Path:
  """Absolute: a local path resolved against the working directory, a URL as given."""
  p = epath.Path(name)
  return p if p.is_absolute() else p.resolve()


def writable_directory(name) -> epath.Path:
  """Creates the directory (and its parents) and returns it."""
  p = path(name)
  p.mkdir(parents=True, exist_ok=True)
  return p


def write_text(name, text: str) -> None:
  writable_directory(path(name).parent)
  path(name).write_text(text)


def write_json(name, value) -> None:
  write_text(name, json.dumps(value, indent=1, sort_keys=True))


def exists(name) -> bool:
  return path(name).exists()


def read_json(name):
  return json.loads(path(name).read_text())


def write_png(name, image: Image.Image) -> None:
  writable_directory(path(name).parent)
  with path(name).open("wb") as f:
    image.save(f, format="PNG")
