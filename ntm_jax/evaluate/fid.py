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
import scipy.linalg

from ntm_jax import files
from ntm_jax.data import emoji

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def statistics(features: np.ndarray) -> tuple:
  """(mean [d], covariance [d, d]) in float64."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)); a tiny diagonal offset when the product is
  singular (fewer images than feature dimensions), as the reference TF implementation does."""
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = np.eye(len(sigma1)) * 1e-6
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  covmean = np.real(covmean)
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(real: np.ndarray, generated: np.ndarray) -> float:
  return frechet_distance(*statistics(real), *statistics(generated))


def kid(real: np.ndarray, generated: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple:
  """(mean, std) over `subsets` draws of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3;
  each draw takes min(subset_size, n_real, n_generated) of each set without replacement."""
  real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
  m = min(subset_size, len(real), len(generated))
  if m < 2:
    raise ValueError(f"KID needs at least 2 images per set, got {len(real)} real and "
                     f"{len(generated)} generated")
  dim = real.shape[1]
  rng = np.random.default_rng(seed)
  estimates = []
  for _ in range(subsets):
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
  return {"fid": fid(real, generated), "kid": kid_mean, "kid_std": kid_std,
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


def reference_key(data, split: str) -> str:
  """The cache key of a dataset split's real features: source, split, resolution, channels (and
  the emoji split's version, which decides which names are held out)."""
  version = f"_v{emoji.SPLIT_VERSION}" if data.source == "emoji" else ""
  return f"{data.source}{version}_{split}_{data.image_size}px_{data.channels}ch"
