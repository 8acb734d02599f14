"""--mode=eval of an autoencoder run: held-out reconstruction error and grid
(methods/autoencoder.py) and the ShapesEval ceiling its latents allow."""

import numpy as np

from ntm_jax import text as text_lib
from ntm_jax.evaluate import shapes_eval
from ntm_jax.methods import autoencoder as autoencoder_method
from ntm_jax.runtime import held_out


def shapes_eval_ceiling(rt, params, config) -> dict:
  """ShapesEval of clean renders of the fixed suite and of their reconstructions: the best a
  generator on these latents can score."""
  e = config.eval
  suite = shapes_eval.prompt_suite(tuple(map(tuple, config.data.held_out_combinations)),
                                   per_kind=e.per_kind)
  renders = shapes_eval.render_suite(suite, config.data.image_size, e.samples_per_prompt)
  reconstruct = autoencoder_method.reconstructor(rt.graphdef)
  recon = np.concatenate([reconstruct(params, renders[i:i + 256])
                          for i in range(0, len(renders), 256)])
  return {"suite": shapes_eval.SUITE_VERSION, "prompts": len(suite),
          "samples_per_prompt": e.samples_per_prompt,
          "clean_renders": shapes_eval.score(suite, renders, e.samples_per_prompt),
          "reconstructions": shapes_eval.score(suite, recon, e.samples_per_prompt)}


def evaluation_report(rt, params, config, workdir: str, step: int) -> dict:
  """--mode=eval of an autoencoder run: held-out reconstruction error, a reconstruction grid
  and, on the shapes data, the ShapesEval ceiling."""
  tokenizer = text_lib.tokenizer_for(config)
  report = {"likelihood": held_out.evaluate(rt, params, config, tokenizer, step)}
  autoencoder_method.grid_fn(rt.graphdef, config, tokenizer, workdir,
                            writer=None)(params=params, done=step)
  if config.data.source == "shapes" and config.eval.shapes_eval:
    report["shapes_eval_ceiling"] = shapes_eval_ceiling(rt, params, config)
  return report
