"""Emoji sample quality: Inception FID / KID and a caption-following judge no model here shaped.

Prompts: a fixed subset of the seen names (every k-th of the sorted seen captions,
eval.emoji.seen_names of them) and every held-out name, eval.emoji.samples_per_name each.

* FID / KID of the seen-name samples against every real seen-name image (the training split),
  and of the held-out-name samples against every real held-out image.
* Retrieval: each sample's nearest real emoji (Euclidean, in the same pool3 space) in a gallery
  of every real image, seen and held-out names together. A seen-name sample scores when that
  neighbour (or one of the 5 nearest) carries the prompted name; a held-out-name sample when the
  neighbour is in the prompted name's subcategory ("animal-mammal" for "panda face"), and by
  name as well. `retrieval_bounds` gives the judge's ceiling (real images as queries, each left
  out of its own gallery) and its floor (uniform noise).
Real features are computed once per (source, split, resolution) and cached (fid.py).
"""

import numpy as np

from ntm_jax.data import sources
from ntm_jax.evaluate import fid

TOP_K = 5


class Gallery:
  """Real emoji features with their captions and subcategories (seen split, then held-out)."""

  def __init__(self, config, extractor, cache_dir: str):
    self.splits = {}
    for split in ("train", "eval"):
      source = sources.make_source(config.data, split)
      feats = fid.cached_features(cache_dir, fid.reference_key(config.data, split),
                                  lambda source=source: source.images, extractor)
      self.splits[split] = (feats, np.asarray(source.captions),
                            np.asarray(source.subcategories))
    self.features = np.concatenate([self.splits[s][0] for s in ("train", "eval")])
    self.captions = np.concatenate([self.splits[s][1] for s in ("train", "eval")])
    self.subcategories = np.concatenate([self.splits[s][2] for s in ("train", "eval")])
    self.subcategory_of = dict(zip(self.captions, self.subcategories))

  def nearest(self, queries: np.ndarray, k: int = TOP_K, exclude=None) -> np.ndarray:
    """Indices [n, k] of each query's k nearest gallery images; exclude[i] (a gallery index)
    is never returned for query i."""
    queries = np.asarray(queries, np.float64)
    gallery = np.asarray(self.features, np.float64)
    distance = (np.sum(queries**2, 1)[:, None] - 2 * queries @ gallery.T
                + np.sum(gallery**2, 1)[None, :])
    if exclude is not None:
      distance[np.arange(len(queries)), exclude] = np.inf
    return np.argsort(distance, axis=1)[:, :k]


def prompt_sets(config) -> dict:
  """{'seen': names, 'held_out': names} the report samples."""
  seen = sorted(set(sources.make_source(config.data, "train").captions))
  held_out = sorted(set(sources.make_source(config.data, "eval").captions))
  count = config.eval.emoji.seen_names
  if not 0 < count <= len(seen):
    raise ValueError(f"eval.emoji.seen_names={count}, but the data has {len(seen)} seen names: "
                     "ask for at most that many (the FID would otherwise rest on fewer images "
                     "than asked)")
  stride = max(1, len(seen) // count)
  return {"seen": seen[::stride][:count], "held_out": held_out}


def retrieval(gallery: Gallery, features: np.ndarray, prompts, exclude=None) -> dict:
  """Top-1 and top-5 name accuracy and top-1 subcategory accuracy of `features` prompted
  with `prompts` (one per row)."""
  nearest = gallery.nearest(features, exclude=exclude)
  prompts = np.asarray(prompts)
  names = gallery.captions[nearest]
  wanted_subcategory = np.asarray([gallery.subcategory_of[p] for p in prompts])
  return {"name_top1": float(np.mean(names[:, 0] == prompts)),
          "name_top5": float(np.mean(np.any(names == prompts[:, None], axis=1))),
          "subcategory_top1": float(np.mean(gallery.subcategories[nearest[:, 0]]
                                            == wanted_subcategory))}


def retrieval_bounds(gallery: Gallery, extractor, image_size: int, noise_images: int = 200,
                     seed: int = 0) -> dict:
  """The judge's ceiling, real images as queries (each excluded from its own gallery, so a
  name is found through its other artwork set), and its floor on uniform noise images."""
  bounds, offset = {}, 0
  for split, name in (("train", "seen"), ("eval", "held_out")):
    feats, captions, _ = gallery.splits[split]
    bounds[f"real_{name}"] = retrieval(gallery, feats, captions,
                                       exclude=offset + np.arange(len(feats)))
    offset += len(feats)
  rng = np.random.default_rng(seed)
  noise = rng.integers(0, 256, (noise_images, image_size, image_size, 3), dtype=np.uint8)
  bounds["noise"] = retrieval(gallery, extractor(noise), rng.choice(gallery.captions,
                                                                    noise_images))
  return bounds


def score(gallery: Gallery, extractor, images: dict, prompts: dict) -> dict:
  """FID / KID and retrieval of uint8 samples {'seen': [n, H, W, C], 'held_out': ...} drawn
  for prompts {'seen': [n] names, ...} (one name per image)."""
  report = {}
  for name, split in (("seen", "train"), ("held_out", "eval")):
    feats = extractor(images[name])
    report[name] = {**fid.scores(gallery.splits[split][0], feats),
                    **retrieval(gallery, feats, prompts[name])}
  return report
