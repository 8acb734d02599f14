"""Every sampler in one place: their names, the checks on their settings, what a report records
about them, and the functions the runtimes jit.

  NTM               full_nf: T predictor steps, then the transporter inverse (Algorithm 2),
                    KV-cached token by token or parallel Jacobi iteration (sample.inverse);
                    full_nf_denoised: full_nf, then trajectory score denoising with the model's
                    own joint score (Algorithm 3); fast: T predictor steps and one pass of the
                    distilled denoiser, no inversion (needs --mode=distill).
  flow matching     euler and heun (the probability-flow ODE) and posterior (its Gaussian
                    posterior steps, the NTM's sampler at FM initialization).
  auto              fast once a distilled denoiser exists, else full_nf; euler for flow matching.

Which method has which sampler is part of its definition (Method.samplers, methods/). The
numerics live with their models (ntm.sample, denoise.sample_denoised and sample_fast,
flow_matching.sample_*); the jitted, cached and sharded versions live in the runtimes
(runtime/runtime.py Runtime.sampler, runtime/denoiser.py DistillRuntime.fast_sampler).
"""

import ml_collections
from flax import nnx

from ntm_jax import denoise
from ntm_jax import flow_matching
from ntm_jax import methods
from ntm_jax import ntm
from ntm_jax import text_to_image
from ntm_jax import trajectory
from ntm_jax import transporter

def allowed(method: methods.Method) -> tuple:
  """The sample.sampler values a method accepts: its model's samplers (Method.samplers), 'auto',
  and 'fast' (the distilled denoiser, fast_sample_images) where it can be distilled."""
  return ("auto",) + method.samplers + (("fast",) if method.distillable else ())


def resolve(method: methods.Method, name: str, has_denoiser: bool) -> str:
  """A sampler name with 'auto' resolved, or a clear error for a name the method lacks."""
  if not method.samplers:
    raise ValueError(f"method {method.name!r} has no sampler")
  if name not in allowed(method):
    raise ValueError(f"sample.sampler must be one of {allowed(method)} for method "
                     f"{method.name!r}, got {name!r}")
  if name != "auto":
    return name
  return "fast" if method.distillable and has_denoiser else method.default_sampler


def report_settings(sample: ml_collections.ConfigDict) -> dict:
  """The settings of a resolved sample section that a report or a grid's JSON records."""
  settings = {"sampler": sample.sampler, "num_steps": sample.num_steps,
              "guidance": sample.guidance, "t_min": sample.t_min,
              "temperature": sample.temperature, "final_temperature": sample.final_temperature,
              "seed": sample.seed, "batch_size": sample.batch_size}
  if sample.sampler.startswith("full_nf"):
    settings.update(inverse=sample.inverse, jacobi_tolerance=sample.jacobi_tolerance)
  return settings


def validate_settings(config: ml_collections.ConfigDict,
                      sample: ml_collections.ConfigDict) -> None:
  """Refuses sampling settings that would compile and then write noise or NaNs: a step count
  the NTM was not trained for, a negative guidance or temperature, t_min outside [0, 1).
  `sample` is a sample section (config.sample or a resolved copy)."""
  t = sample.num_steps
  try:  # the checks the samplers themselves make, before anything is traced
    trajectory.validate_num_steps(t)
    ntm.validate_guidance(sample.guidance)
    ntm.validate_temperatures(sample.temperature, sample.final_temperature)
    trajectory.validate_t_min(sample.t_min)
  except ValueError as err:
    raise ValueError(f"sample.{err}") from None
  trained = methods.get(config).trained_step_counts(config)
  if trained is not None and t not in trained:
    raise ValueError(f"sample.num_steps={t}: this NTM was trained for T in {trained} "
                     "(ntm.num_steps); its predictor has never seen the schedule of another T. "
                     f"Sample with --config.sample.num_steps={trained[0]}, or train with T "
                     f"in ntm.num_steps")
  if sample.inverse not in transporter.INVERSES:
    raise ValueError(f"sample.inverse must be one of {transporter.INVERSES}, got "
                     f"{sample.inverse!r}")
  if not sample.jacobi_tolerance >= 0:
    raise ValueError(f"sample.jacobi_tolerance must be >= 0, got {sample.jacobi_tolerance!r}")
  if not (sample.per_prompt >= 1 and sample.batch_size >= 1):
    raise ValueError(f"sample.per_prompt and sample.batch_size must be >= 1, got "
                     f"{sample.per_prompt!r} and {sample.batch_size!r}")


def sample_images(params, text_input, rng, *, graphdef, sampler: str, num_steps: int,
                  guidance: float, t_min: float, temperature: float,
                  final_temperature: float, inverse: str = "kv_cache",
                  jacobi_tolerance: float = 0.0):
  """Samples for a text input (token ids or frozen token states: text.py): float images in
  about [-1, 1] (or latents).

  The model's own samplers (Method.samplers); flow matching's ODE samplers ignore t_min and the
  temperatures, and only the full-NF ones use the inverse settings.
  """
  model = nnx.merge(graphdef, params)
  text, mask = text_to_image.encode_text(model, text_input)
  ode = dict(num_steps=num_steps, guidance=guidance)
  kwargs = dict(ode, t_min=t_min, temperature=temperature, final_temperature=final_temperature)
  inversion = dict(inverse=inverse, jacobi_tolerance=jacobi_tolerance)
  samplers = {
      "full_nf": lambda: ntm.sample(model, rng, text, mask, **kwargs, **inversion),
      "full_nf_denoised": lambda: denoise.sample_denoised(model, rng, text, mask, **kwargs,
                                                          **inversion),
      "euler": lambda: flow_matching.sample_euler(model, rng, text, mask, **ode),
      "heun": lambda: flow_matching.sample_heun(model, rng, text, mask, **ode),
      "posterior": lambda: flow_matching.sample_posterior(model, rng, text, mask, **kwargs),
  }
  return samplers[sampler]()


def fast_sample_images(params, denoiser_params, text_input, rng, *, graphdef, denoiser_graphdef,
                       num_steps: int, guidance: float, t_min: float, temperature: float,
                       final_temperature: float):
  """The fast sampler (T predictor steps + one denoiser pass) for a text input (text.py)."""
  model = nnx.merge(graphdef, params)
  text, mask = text_to_image.encode_text(model, text_input)
  return denoise.sample_fast(model, nnx.merge(denoiser_graphdef, denoiser_params), rng, text,
                             mask, num_steps=num_steps, guidance=guidance, t_min=t_min,
                             temperature=temperature, final_temperature=final_temperature)
