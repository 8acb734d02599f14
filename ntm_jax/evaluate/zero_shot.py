"""Zero-shot classification by Bayes' rule with the exact likelihood: argmax_y log p(x | y).

For an image x and candidate captions y_1..y_C (equal priors), each caption is scored by the
trajectory likelihood of K forward trajectories of x (t_min = 0, so level t_0 is x itself). The
same K trajectories serve every caption (common random numbers), so caption differences are not
drowned in trajectory noise. Two scores per caption:

  * mean trajectory NLL, E_q[-log p(x_t0..x_tT | y)]. The marginal bound on -log p(x | y) is this
    plus E_q[log q(x_t1..x_tT | x_t0)], which does not depend on y: the two rank captions
    identically, so one column serves both;
  * the importance-weighted estimate -log (1/K sum_k p(traj_k | y) / q(traj_k | x)), a tighter
    bound on -log p(x | y) that approaches it as K grows (it equals the bound at K = 1).
"""

import jax
import jax.numpy as jnp

from ntm_jax import ntm


def caption_scores(model: ntm.NTM, images, text, text_mask, rng, *, num_steps: int,
                   trajectories: int) -> dict:
  """images [batch, H, W, C]; text [captions, length, dim], text_mask [captions, length] ->
  {"trajectory_nll", "importance_weighted_nll"}: [batch, captions, trajectories] per-trajectory
  NLLs and the per-K importance-weighted estimates (the first k trajectories), in nats."""
  batch = images.shape[0]

  def per_caption(caption):
    caption_text, caption_mask = caption
    expand = lambda a: jnp.broadcast_to(a, (batch,) + a.shape)

    def per_trajectory(k):
      out = ntm.trajectory_nll(model, images, expand(caption_text), expand(caption_mask),
                               jax.random.fold_in(rng, k), num_steps=num_steps,
                               t_min_range=(0.0, 0.0))
      return out["nll"], out["bound"]

    return jax.lax.map(per_trajectory, jnp.arange(trajectories))  # [K, batch] each

  nll, bound = jax.lax.map(per_caption, (text, text_mask))  # [captions, K, batch]
  nll, bound = (jnp.transpose(a, (2, 0, 1)) for a in (nll, bound))
  counts = jnp.arange(1, trajectories + 1)
  # -log mean_k exp(-bound_k) over the first k trajectories, for every k at once.
  running = -jax.lax.cumlogsumexp(-bound, axis=2) + jnp.log(counts)
  return {"trajectory_nll": nll, "importance_weighted_nll": running}


def accuracy_against_trajectories(scores: dict, labels) -> dict:
  """{score name: [accuracy using the first k trajectories, k = 1..K]} from caption_scores."""
  nll = scores["trajectory_nll"]
  mean_nll = jnp.cumsum(nll, axis=-1) / jnp.arange(1, nll.shape[-1] + 1)
  correct = lambda s: jnp.mean(jnp.argmin(s, axis=1) == labels[:, None], axis=0)
  return {"mean_trajectory_nll": correct(mean_nll),
          "importance_weighted_nll": correct(scores["importance_weighted_nll"])}
