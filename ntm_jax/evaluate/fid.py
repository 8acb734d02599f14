"""Frechet Inception Distance and Kernel Inception Distance on the FID Inception's pool3.

FID (Heusel et al., 2017): ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians
fitted to the two feature sets. It is biased upwards at small sample sizes, so a figure is only
comparable at the same number of images: every result carries `fid_images` (FID-1k is not
FID-50k).
KID (Binkowski et al., 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets of equal size (mean and std reported);
unbiased at any size, hence the better figure at the few thousand images a CPU affords.

Real-image features are cached per (dataset, split, resolution) in a directory of .npz files, so
a reference set is pushed through the network once.
"""

import os

import numpy as np

from ntm_jax import files
from ntm_jax.data import emoji
from ntm_jax.data import sources

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets [n, d] (float64).

  tr((S_a S_b)^1/2) is the trace of the PSD square root of S_a^1/2 S_b S_a^1/2 (same
  eigenvalues), computed with symmetric eigendecompositions only: no complex sqrtm."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or a.shape[1:] != b.shape[1:] or min(len(a), len(b)) < 2:
    raise ValueError(f"need two feature sets [n >= 2, d] of equal d, got {a.shape}, {b.shape}")
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  values, vectors = np.linalg.eigh(cov_a)
  root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
  mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
  return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def kid(real: np.ndarray, generated: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple:
  """(mean, std) over `subsets` draws of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3;
  each draw takes min(subset_size, n_real, n_generated) of each set without replacement (one
  draw, std 0, when that is both whole sets)."""
  real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
  m = min(subset_size, len(real), len(generated))
  if m < 2:
    raise ValueError(f"KID needs at least 2 images per set, got {len(real)} real and "
                     f"{len(generated)} generated")
  dim = real.shape[1]
  rng = np.random.default_rng(seed)
  estimates = []
  whole_sets = m == len(real) == len(generated)  # every draw is the same two sets: draw once
  for _ in range(1 if whole_sets else subsets):
    x = real[rng.choice(len(real), m, replace=False)]
    y = generated[rng.choice(len(generated), m, replace=False)]
    kxx, kyy, kxy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    estimates.append(off_diagonal - 2 * kxy.mean())
  return float(np.mean(estimates)), float(np.std(estimates))


def scores(real: np.ndarray, generated: np.ndarray, *, min_images: int = 2) -> dict:
  """FID and KID of generated against real features, with the image counts they rest on."""
  for name, feats in (("real", real), ("generated", generated)):
    if len(feats) < min_images:
      raise ValueError(f"FID/KID asked for at least {min_images} images, but the {name} set has "
                       f"{len(feats)}: sample more or lower the requested size")
  kid_mean, kid_std = kid(real, generated)
  return {"fid": frechet_distance(real, generated), "kid": kid_mean, "kid_std": kid_std,
          "kid_subset_size": min(KID_SUBSET_SIZE, len(real), len(generated)),
          "fid_images": int(len(generated)), "fid_reference_images": int(len(real))}


def cached_features(cache_dir: str, key: str, images_fn, extractor) -> np.ndarray:
  """Features of the real images named by `key` (e.g. 'emoji_seen_32px'): read from
  cache_dir/key.npz, or computed from images_fn() (uint8 [n, H, W, C]) and written there."""
  path = os.path.join(cache_dir, f"{key}.npz")
  if files.exists(path):
    with files.path(path).open("rb") as f:
      return np.load(f)["features"]
  features = extractor(images_fn()).astype(np.float32)
  files.writable_directory(cache_dir)
  if files.writes():
    with files.path(path).open("wb") as f:
      np.savez(f, features=features)
  return features


def default_cache_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "ntm_jax", "fid")


def held_out_examples(data, count: int) -> tuple:
  """(uint8 RGB images [count, H, W, 3], captions) of the first `count` held-out examples: the
  captions a FID samples from and the real images it compares with."""
  source = sources.make_source(data, "eval")
  if len(source) < count:
    raise ValueError(f"eval.fid.images={count}, but the held-out split has {len(source)} "
                     "examples: ask for at most that many")
  examples = [source[i] for i in range(count)]
  return np.stack([e["image"] for e in examples]), [str(e["caption"]) for e in examples]


def held_out_key(data, count: int) -> str:
  """The cache key of the first `count` held-out images' features; the data settings' hash
  tells apart e.g. shapes with and without the held-out combinations."""
  return f"{reference_key(data, 'eval')}_first{count}_{files.settings_tag(data.to_dict())}"


def reference_key(data, split: str) -> str:
  """The cache key of a dataset split's real features: source, split, resolution, channels (and
  the emoji split's version, which decides which names are held out)."""
  version = f"_v{emoji.SPLIT_VERSION}" if data.source == "emoji" else ""
  return f"{data.source}{version}_{split}_{data.image_size}px_{data.channels}ch"
