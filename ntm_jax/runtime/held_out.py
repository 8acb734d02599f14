"""Held-out evaluation of a runtime's eval step: for the NTM the trajectory NLL (nats/dim,
bits/dim), per level, and the marginal bound on x_t0 at every trained T; for flow matching the
velocity error; for the autoencoder the reconstruction error (methods/*.eval_metrics)."""

import jax
import numpy as np
from clu import metrics as clu_metrics

from ntm_jax import methods
from ntm_jax.data import loaders


def average(history: list) -> dict:
  """Averages a list of per-step metric dicts with clu's Average metric."""
  averages = {}
  for metrics in history:
    for name, value in metrics.items():
      metric = clu_metrics.Average.from_model_output(np.asarray(value))
      averages[name] = averages[name].merge(metric) if name in averages else metric
  return {name: float(metric.compute()) for name, metric in averages.items()}


def held_out_batches(rt, config, tokenizer, batch_size: int, count: int) -> list:
  """The first `count` global batches of the evaluation split, in a fixed order (encoded to
  latents when the model generates latents)."""
  return [rt.global_batch(b)
          for b in loaders.held_out_local_batches(config, tokenizer, batch_size, count)]


def average_per_step_count(eval_fn, batches: list, step_counts, step: int) -> dict:
  """{"eval_T<T>/<metric>": mean over batches} of eval_fn(T, batch, rng) for every T (T = 0:
  "eval/<metric>"); batch i gets the key fold_in(key(step), i) at every T."""
  results = {}
  for num_steps in step_counts:
    history = [eval_fn(num_steps, batch, jax.random.fold_in(jax.random.key(step), i))
               for i, batch in enumerate(batches)]
    prefix = f"eval_T{num_steps}" if num_steps else "eval"
    results.update({f"{prefix}/{k}": v for k, v in average(history).items()})
  return results


def evaluate(rt, params, config, tokenizer, step: int) -> dict:
  """The method's held-out metrics at each of its evaluation T, averaged over
  train.eval_batches batches."""
  batches = held_out_batches(rt, config, tokenizer, config.train.batch_size,
                             config.train.eval_batches)
  return average_per_step_count(
      lambda num_steps, batch, rng: rt.eval_step(num_steps)(params, batch, rng), batches,
      methods.get(config).eval_step_counts(config), step)
