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

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax.data import pipeline
from ntm_jax.data import shapes
from ntm_jax.evaluate import shapes_eval

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


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


_caption_scores = nnx.jit(caption_scores, static_argnames=("num_steps", "trajectories"))


def score_images(rt, model: ntm.NTM, images, tokens, rng, *, num_steps: int, trajectories: int,
                 batch_size: int) -> dict:
  """uint8 images [n, H, W, C] against caption token ids [captions, length] (rt: the run's
  Runtime, for text inputs and latents) -> caption_scores' dict as numpy, [n, captions, K]."""
  text, mask = text_to_image.encode_text(model, rt.text_inputs(tokens))
  parts = [_caption_scores(model, rt.model_inputs(images[i:i + batch_size]), text, mask,
                           jax.random.fold_in(rng, i), num_steps=num_steps,
                           trajectories=trajectories)
           for i in range(0, len(images), batch_size)]
  return jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *parts)


def class_suite(rt, model: ntm.NTM, source, tokenizer, *, channels: int, examples: int,
                num_steps: int, trajectories: int, batch_size: int, seed: int) -> dict:
  """Held-out class images (the first `examples`) classified among the source's class captions:
  accuracy against K for both scores."""
  rgb, labels = source.arrays(np.arange(min(examples, len(source))))
  scores = score_images(rt, model, pipeline.to_channels(rgb, channels),
                        tokenizer.encode(list(source.class_captions)), jax.random.key(seed),
                        num_steps=num_steps, trajectories=trajectories, batch_size=batch_size)
  accuracy = accuracy_against_trajectories(scores, jnp.asarray(labels))
  return {"examples": len(labels), "classes": len(source.class_captions),
          "accuracy": {k: [round(float(a), 4) for a in v] for k, v in accuracy.items()}}


def _swap_first(caption: str, words, replacement) -> str | None:
  pattern = r"\b(" + "|".join(map(re.escape, words)) + r")\b"
  if not re.search(pattern, caption):
    return None
  return shapes_eval.agree_articles(re.sub(pattern, replacement, caption, count=1))


def near_misses(caption: str) -> list:
  """[(edit kind, caption)]: the first colour, shape (number kept) or count word changed to
  each other value, or the relation reversed."""
  misses = []
  colours, numbers = list(shapes.COLORS), list(shapes.NUMBERS.values())
  for colour in colours:
    misses.append(("colour", _swap_first(caption, colours, colour)))
  for shape in shapes.SHAPES:
    misses.append(("shape", _swap_first(caption, shapes.SHAPES + tuple(shapes.PLURALS.values()),
                                        lambda m, s=shape: shapes.PLURALS[s]
                                        if m.group(1).endswith("s") else s)))
  for number in numbers:
    misses.append(("count", _swap_first(caption, numbers, number)))
  misses.append(("relation", _swap_first(caption, list(OPPOSITE),
                                         lambda m: OPPOSITE[m.group(1)])))
  return sorted({(kind, c) for kind, c in misses if c and c != caption})


def near_miss_suite(rt, model: ntm.NTM, tokenizer, *, image_size: int, held_out_combinations,
                    per_kind: int, renders: int, num_steps: int, trajectories: int,
                    seed: int) -> dict:
  """Clean renders of every ShapesEval prompt, scored against the true caption and each near
  miss (mean trajectory NLL over K): per split and category, how often the true caption ranks
  first of all; per kind of edit, how often it beats that near miss."""
  suite = shapes_eval.prompt_suite(tuple(map(tuple, held_out_combinations)), per_kind=per_kind)
  rng = np.random.default_rng(seed)
  best, beats = collections.defaultdict(list), collections.defaultdict(list)
  # Every prompt is scored against the same number of captions (padded with the true one), so
  # the scorer compiles once.
  width = 1 + len(shapes.COLORS) + len(shapes.SHAPES) + len(shapes.NUMBERS)
  for i, prompt in enumerate(suite):
    misses = near_misses(prompt.caption)
    captions = [prompt.caption] + [c for _, c in misses]
    images = np.stack([shapes_eval.render_prompt(prompt, image_size, rng)
                       for _ in range(renders)])
    nll = score_images(rt, model, images,
                       tokenizer.encode(captions + [prompt.caption] * (width - len(captions))),
                       jax.random.key(seed + i), num_steps=num_steps, trajectories=trajectories,
                       batch_size=renders)["trajectory_nll"].mean(-1)[:, :len(captions)]
    split = "held_out" if prompt.held_out else "seen"
    best[(split, prompt.kind)] += list(np.argmin(nll, axis=1) == 0)
    for j, (kind, _) in enumerate(misses):
      beats[(split, kind)] += list(nll[:, 0] < nll[:, j + 1])
  mean = lambda d: {f"{s} {k}": round(float(np.mean(v)), 3) for (s, k), v in sorted(d.items())}
  return {"prompts": len(suite), "renders": renders, "ranked_first": mean(best),
          "beats_near_miss": mean(beats)}


def caption_posteriors(nll, dimension: int) -> dict:
  """Per image, from importance-weighted NLLs [n, captions] in nats: NLL in nats/dim, the argmax
  caption and p(caption | image) by Bayes' rule with equal priors."""
  return {"nll_nats_per_dim": np.asarray(nll) / dimension, "best": np.argmin(nll, axis=1),
          "posterior": np.asarray(jax.nn.softmax(-jnp.asarray(nll), axis=1))}
