"""Out-of-distribution detection with the exact likelihood: higher NLL = more likely foreign.

Images are scored under the model's unconditional (CFG null) condition, i.e. -log p(x) of the
data the model was trained on, by K forward trajectories each: the trajectory NLL, its marginal
bound on -log p(x_t0) (the NLL plus log q of the trajectory, which differs from image to image),
and every level's factor. AUROC is the Mann-Whitney probability that a foreign image scores
higher than a held-out in-distribution one (ties count half).

A raw likelihood fails one way round: a model of a complex dataset gives a simpler one a HIGHER
likelihood. An NTM has one factor per level, which no single-level flow has; the typicality test
fits the joint law of the per-level factors on the model's own training images (a Gaussian) and
scores an image by its Mahalanobis distance to it, so an image whose levels are unusually likely,
unusually unlikely or unusually related is flagged. It never sees the foreign data. The same test
runs on a finer vector: every level's factor split over image positions (the transporter's
log-det is a sum over tokens), so where in the image the likelihood sits counts too.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ntm_jax import ntm


def auroc(in_scores, out_scores) -> float:
  """P(out > in) + P(out = in) / 2 over all (in, out) pairs, from ranks."""
  in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
  ranks = stats.rankdata(np.concatenate([in_scores, out_scores]))
  n_in, n_out = len(in_scores), len(out_scores)
  return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def auroc_interval(in_scores, out_scores, *, level: float = 0.95, resamples: int = 1000,
                   seed: int = 0) -> tuple:
  """Percentile bootstrap interval of auroc: both sets resampled with replacement, each on its
  own, `resamples` times."""
  in_scores, out_scores = np.asarray(in_scores), np.asarray(out_scores)
  rng = np.random.default_rng(seed)
  draws = [auroc(in_scores[rng.integers(0, len(in_scores), len(in_scores))],
                 out_scores[rng.integers(0, len(out_scores), len(out_scores))])
           for _ in range(resamples)]
  low, high = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
  return float(low), float(high)


def unconditional_scores(model: ntm.NTM, images, rng, *, num_steps: int,
                         trajectories: int) -> dict:
  """Per image [batch], in nats averaged over `trajectories` (t_min = 0): "nll", "bound" and
  "level_k" for every level k = 0..T; and "level_tokens" [batch, T+1, tokens], every level's
  factor split over image positions (ntm.nll_of_trajectory)."""
  text, mask = model.null_condition(images.shape[0], 1)

  def per_trajectory(k):
    out = ntm.trajectory_nll(model, images, text, mask, jax.random.fold_in(rng, k),
                             num_steps=num_steps, t_min_range=(0.0, 0.0), per_token=True)
    return out["nll"], out["bound"], out["level_nll"], out["level_token_nll"]

  nll, bound, levels, tokens = jax.tree.map(lambda a: jnp.mean(a, axis=0),
                                            jax.lax.map(per_trajectory, jnp.arange(trajectories)))
  return {"nll": nll, "bound": bound, "level_tokens": tokens,
          **{f"level_{k}": levels[:, k] for k in range(levels.shape[1])}}


FEATURES = ("levels", "tokens")


def features(scores: dict, kind: str) -> np.ndarray:
  """The vector a typicality test is fitted on, [batch, features]: "levels", the T+1 per-level
  factors; "tokens", the per-position factors of levels 0..T-1 (the top level's is the
  N(0, I) density of the noise, whose law is the same for any data)."""
  if kind == "levels":
    names = sorted((k for k in scores if k.startswith("level_") and k[6:].isdigit()),
                   key=lambda k: int(k[6:]))
    return np.stack([np.asarray(scores[k], np.float64) for k in names], axis=1)
  if kind == "tokens":
    tokens = np.asarray(scores["level_tokens"], np.float64)[:, :-1]
    return tokens.reshape(tokens.shape[0], -1)
  raise ValueError(f"typicality features must be one of {FEATURES}, got {kind!r}")


def fit_typicality(x: np.ndarray) -> dict:
  """The mean and precision of feature vectors x [examples, features] of in-distribution
  training images; the covariance is shrunk by 1e-6 of its mean variance."""
  x = np.asarray(x, np.float64)
  if x.shape[0] < 3 * x.shape[1]:
    raise ValueError(f"the typicality test needs at least 3 fitting examples per feature "
                     f"({3 * x.shape[1]}), got {x.shape[0]}")
  covariance = np.cov(x, rowvar=False)
  covariance += 1e-6 * np.trace(covariance) / x.shape[1] * np.eye(x.shape[1])
  return {"mean": x.mean(0), "precision": np.linalg.inv(covariance)}


def typicality(test: dict, x: np.ndarray) -> np.ndarray:
  """Squared Mahalanobis distance of each feature vector to the fitted law (higher: more likely
  foreign)."""
  centred = np.asarray(x, np.float64) - test["mean"]
  return np.einsum("bi,ij,bj->b", centred, test["precision"], centred)
