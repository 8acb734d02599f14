"""Out-of-distribution detection with the exact likelihood: higher NLL = more likely foreign.

Images are scored under the model's unconditional (CFG null) condition, i.e. -log p(x) of the
data the model was trained on, by K forward trajectories each: the trajectory NLL, its marginal
bound on -log p(x_t0) (the NLL plus log q of the trajectory, which differs from image to image),
and every level's factor. AUROC is the Mann-Whitney probability that a foreign image scores
higher than a held-out in-distribution one (ties count half).
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


def unconditional_scores(model: ntm.NTM, images, rng, *, num_steps: int,
                         trajectories: int) -> dict:
  """Per image [batch], in nats averaged over `trajectories` (t_min = 0): "nll", "bound" and
  "level_k" for every level k = 0..T."""
  text, mask = model.null_condition(images.shape[0], 1)

  def per_trajectory(k):
    out = ntm.trajectory_nll(model, images, text, mask, jax.random.fold_in(rng, k),
                             num_steps=num_steps, t_min_range=(0.0, 0.0))
    return out["nll"], out["bound"], out["level_nll"]

  nll, bound, levels = jax.tree.map(lambda a: jnp.mean(a, axis=0),
                                    jax.lax.map(per_trajectory, jnp.arange(trajectories)))
  return {"nll": nll, "bound": bound,
          **{f"level_{k}": levels[:, k] for k in range(levels.shape[1])}}
