"""Run records: small JSON files in a workdir saying what the run was built with (its text
encoder, the autoencoder whose latents it models, the classifier a report was judged by). A
fresh run writes its record; anything that later resumes or loads the run compares its own
record with the stored one and refuses a mismatch, naming the keys that differ. Writes happen
on process 0 only (files.write_json)."""

import json
import os

from ntm_jax import errors
from ntm_jax import files


def _canonical(value):
  """JSON's view of a value (tuples and lists alike), so a record read back compares equal."""
  return json.loads(json.dumps(value, default=str))


def differing_keys(recorded: dict, mine: dict, keys=None) -> list:
  """The keys (default: of either record) on which two records disagree, sorted."""
  keys = sorted(set(recorded) | set(mine)) if keys is None else list(keys)
  return [k for k in keys if _canonical(recorded.get(k)) != _canonical(mine.get(k))]


def check(path: str, mine: dict, *, fresh: bool, mismatch, keys=None, legacy=None,
          missing: str = "") -> None:
  """Writes `mine` at path for a fresh run; for an existing one, compares it with the stored
  record on `keys` and raises ValueError(mismatch(recorded, differing keys)) when they differ.

  An existing run without a record holds `legacy` (what runs made before the record existed
  used; it is then written down if it agrees), or is refused with `missing` when legacy is None.
  """
  if files.exists(path):
    recorded = files.read_json(path)
  elif fresh:
    files.write_json(path, mine)
    return
  elif legacy is not None:
    recorded = legacy
  else:
    raise errors.RunMismatchError(f"{os.path.dirname(path)} has checkpoints but no "
                     f"{os.path.basename(path)}: {missing}")
  differ = differing_keys(recorded, mine, keys)
  if differ:
    raise errors.RunMismatchError(mismatch(recorded, differ))
  if not files.exists(path):
    files.write_json(path, mine)
