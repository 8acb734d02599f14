"""records.check: the one mechanism behind the text-encoder, latent and classifier records."""

import json

import pytest

from ntm_jax import records


def _mismatch(recorded, differ):
  return f"differs in {differ}, recorded {recorded}"


def test_a_fresh_run_writes_its_record_and_a_resume_accepts_the_same(tmp_path):
  path = str(tmp_path / "record.json")
  records.check(path, {"kind": "a", "shape": (2, 3)}, fresh=True, mismatch=_mismatch)
  assert json.loads((tmp_path / "record.json").read_text()) == {"kind": "a", "shape": [2, 3]}
  records.check(path, {"kind": "a", "shape": [2, 3]}, fresh=False, mismatch=_mismatch)


def test_another_record_is_refused_naming_the_keys_that_differ(tmp_path):
  path = str(tmp_path / "record.json")
  records.check(path, {"kind": "a", "size": 1, "note": "x"}, fresh=True, mismatch=_mismatch)
  with pytest.raises(ValueError, match=r"differs in \['kind', 'size'\]"):
    records.check(path, {"kind": "b", "size": 2, "note": "x"}, fresh=False, mismatch=_mismatch)
  # Only the identifying keys count.
  records.check(path, {"kind": "a", "size": 1, "note": "y"}, fresh=False, mismatch=_mismatch,
                keys=("kind", "size"))


def test_an_existing_run_without_a_record(tmp_path):
  path = str(tmp_path / "record.json")
  with pytest.raises(ValueError, match="has checkpoints but no record.json: not on latents"):
    records.check(path, {"kind": "a"}, fresh=False, mismatch=_mismatch, missing="not on latents")
  with pytest.raises(ValueError, match="differs in"):
    records.check(path, {"kind": "b"}, fresh=False, mismatch=_mismatch, legacy={"kind": "a"})
  assert not (tmp_path / "record.json").exists()
  records.check(path, {"kind": "a"}, fresh=False, mismatch=_mismatch, legacy={"kind": "a"})
  assert json.loads((tmp_path / "record.json").read_text()) == {"kind": "a"}
