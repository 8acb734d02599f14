"""Run outputs on a local disk or in cloud storage (gs://...).

Every file a run writes goes through etils.epath, which orbax also takes (and TensorFlow's file
writer behind clu's TensorBoard writer reads the same URLs), so a bucket workdir on a TPU pod
keeps checkpoints, metrics, sample grids and reports alike instead of a local "gs:" folder.

On several hosts every process computes the same outputs, and only process 0 writes them
(write_text, write_json, write_png do nothing elsewhere); orbax checkpoints are collective and
go through orbax. process_0_first orders a write before the other hosts' reads.
"""

import hashlib
import json

import jax
from etils import epath
from jax.experimental import multihost_utils
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


def writes() -> bool:
  """Whether this process writes run outputs: process 0 only."""
  return jax.process_index() == 0


def process_0_first(fn, name: str):
  """fn() on process 0, then, after a barrier called `name`, on every other process: what
  process 0 wrote there, the others read whole. Returns fn's result."""
  result = fn() if writes() else None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
  return result if writes() else fn()


def write_text(name, text: str) -> None:
  if not writes():
    return
  writable_directory(path(name).parent)
  path(name).write_text(text)


def write_json(name, value) -> None:
  write_text(name, json.dumps(value, indent=1, sort_keys=True))


def exists(name) -> bool:
  return path(name).exists()


def read_json(name):
  return json.loads(path(name).read_text())


def write_png(name, image: Image.Image) -> None:
  if not writes():
    return
  writable_directory(path(name).parent)
  with path(name).open("wb") as f:
    image.save(f, format="PNG")


def settings_tag(settings) -> str:
  """A short hash of JSON-able settings, for output names: a call with other prompts or settings
  writes new files, the same call again replaces its own identical output."""
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
