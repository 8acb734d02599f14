"""What a training method is: the model it builds, the loss it trains, what its held-out
evaluation measures, and how it samples. One module per method defines one `Method`."""

import dataclasses
from typing import Callable

import ml_collections
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Method:
  """A method's definition; every function is pure, so the runtime can jit and shard it.

  make_model(config, rngs) -> the nnx model config.model describes.
  loss(model, batch, rng, *, config, step, num_steps, frozen_fm) -> (scalar, metrics): the
    training objective of one global batch ("text" inputs, and "latents" or "image"); frozen_fm
    is the flow-matching model an NTM started from, or None.
  eval_metrics(model, batch, rng, *, config, num_steps) -> metrics of one held-out batch.
  eval_step_counts(config) -> the T values a held-out evaluation runs at ((0,): no T).
  trained_step_counts(config) -> the T a sampler may use, or None for any.
  samplers: the samplers that need the trained model only (sampling.sample_images);
    default_sampler is what 'auto' means without a distilled denoiser ('' : none).
  distillable: whether --mode=distill can train a fast denoiser for it.
  exact_likelihood: whether it gives log p(image | caption) (--mode=score).
  text_conditioned: whether it reads captions (and records its text encoder in the workdir).
  validate(config): raises ValueError for settings the method cannot train with.
  """
  name: str
  make_model: Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]
  loss: Callable
  eval_metrics: Callable
  eval_step_counts: Callable[[ml_collections.ConfigDict], tuple] = lambda config: (0,)
  trained_step_counts: Callable[[ml_collections.ConfigDict], tuple | None] = (
      lambda config: None)
  samplers: tuple = ()
  default_sampler: str = ""
  distillable: bool = False
  exact_likelihood: bool = False
  text_conditioned: bool = True
  validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None

  @property
  def generator(self) -> bool:
    """Whether it samples images (every method but the autoencoder)."""
    return bool(self.samplers)
