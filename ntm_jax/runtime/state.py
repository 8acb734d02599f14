"""Training state, optimizer and the jitted steps (Algorithm 1), as pure functions.

The model's graph is static (an nnx GraphDef); everything that changes is a pytree in
TrainState, so the step is a pure function that jit can shard and donate.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from ntm_jax import methods
from ntm_jax.runtime import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # optimizer steps taken (skipped non-finite updates included)
  params: Any  # nnx.State of the model
  opt_state: Any  # optax.apply_if_finite(AdamW) state: counts skipped updates
  ema_params: Any  # EMA of params, updated only on finite steps
  rng: jax.Array  # key data; the step's key is fold_in(rng, step)


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs):
  """The model config.method trains (methods/)."""
  return methods.get(config).make_model(config, rngs)


def abstract_model(config: ml_collections.ConfigDict):
  return nnx.eval_shape(lambda: make_model(config, nnx.Rngs(config.seed)))


def lr_schedule(optim: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warmup to peak_lr, cosine decay to end_lr at step optim.schedule_steps (0: at
  num_steps, the end of training; longer: training stops before the decay ends)."""
  length = optim.schedule_steps or num_steps
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.peak_lr, warmup_steps=optim.warmup_steps,
      decay_steps=max(length, optim.warmup_steps + 1), end_value=optim.end_lr)


def decay_mask(params):
  """Weight decay on matrices (kernels, embeddings) only, not on biases, norms or positions."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: sharding.path_string(path).rsplit("/", 1)[-1] in ("kernel", "embedding"),
      params)


def make_optimizer(optim: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """AdamW with warmup-cosine, global-norm clipping, decay on matrices only, and skipping of
  non-finite updates (optax.apply_if_finite; the training loop aborts on a long run of them).

  `optim` is an optimizer section (config.optim or config.distill.optim)."""
  schedule = lr_schedule(optim, num_steps)
  adamw = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay,
                      mask=decay_mask)
  tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip), adamw)
  # The loop enforces the limit; apply_if_finite would apply NaNs after its own limit.
  return optax.apply_if_finite(tx, max_consecutive_errors=2**30)


def create_train_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """Builds the state from scratch; jit this with out_shardings to create it sharded."""
  params = nnx.state(make_model(config, nnx.Rngs(config.seed)))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=params,
                    rng=jax.random.key_data(jax.random.key(config.seed)))


def train_step(state: TrainState, batch, frozen_fm=None, *, graphdef, tx, config,
               num_steps: int, fm_graphdef=None):
  """One AdamW step of config.method's loss (methods/); non-finite updates are skipped.

  frozen_fm: the parameters of the FM network an NTM started from (mean alignment), or None.
  """
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  method = methods.get(config)

  def loss_fn(params):
    fm = None if frozen_fm is None else nnx.merge(fm_graphdef, frozen_fm)
    return method.loss(nnx.merge(graphdef, params), batch, rng, config=config, step=state.step,
                       num_steps=num_steps, frozen_fm=fm)

  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics["loss"] = loss
  return apply_gradients(state, grads, metrics, tx=tx, optim=config.optim,
                         num_steps=config.train.num_steps)


def apply_gradients(state: TrainState, grads, metrics: dict, *, tx, optim, num_steps: int):
  """The optimizer and EMA update shared by every training mode.

  Returns (state, metrics + optimizer metrics, consecutive non-finite update count)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = opt_state.last_finite
  # EMA warmup: early averages must not be dominated by the initialization.
  decay = jnp.minimum(optim.ema_decay, (1.0 + state.step) / (10.0 + state.step))
  ema = jax.tree.map(lambda e, p: jnp.where(finite, decay * e + (1 - decay) * p, e),
                     state.ema_params, params)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads),
                 learning_rate=lr_schedule(optim, num_steps)(state.step),
                 skipped_updates_total=opt_state.total_notfinite.astype(jnp.float32))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
  return new_state, metrics, opt_state.notfinite_count


def eval_step(params, batch, rng, *, graphdef, config, num_steps: int):
  """The method's metrics of one held-out batch (NTM: NLL at T = num_steps, no CFG dropout)."""
  return methods.get(config).eval_metrics(nnx.merge(graphdef, params), batch, rng, config=config,
                                          num_steps=num_steps)
