"""Sample grids: prompts -> images (chunked sampling) -> one PNG, a row per prompt."""

import jax
import numpy as np
from PIL import Image
from PIL import ImageDraw

from ntm_jax import files
from ntm_jax.data import pipeline


def make_grid(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
  """uint8 [n, H, W, 3] -> uint8 grid with `gap` grey pixels between cells."""
  n, height, width, channels = images.shape
  rows = -(-n // columns)
  grid = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, channels), 128,
                 np.uint8)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    top, left = gap + r * (height + gap), gap + c * (width + gap)
    grid[top:top + height, left:left + width] = image
  return grid


def save_png(path: str, grid: np.ndarray, scale: int = 1) -> None:
  image = Image.fromarray(grid)
  if scale > 1:
    image = image.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
  files.write_png(path, image)


def side_by_side(panels: dict, scale: int = 4, gap: int = 8) -> np.ndarray:
  """{title: uint8 grid} -> one uint8 image: the grids scaled up, each under its title, left
  to right on white (the comparison figures of the benches)."""
  blocks = []
  for title, grid in panels.items():
    block = Image.fromarray(grid)
    block = block.resize((block.width * scale, block.height * scale), Image.NEAREST)
    titled = Image.new("RGB", (block.width, block.height + 16), (255, 255, 255))
    titled.paste(block, (0, 16))
    ImageDraw.Draw(titled).text((2, 2), title, fill=(0, 0, 0))
    blocks.append(titled)
  canvas = Image.new("RGB", (sum(b.width for b in blocks) + gap * (len(blocks) - 1),
                             max(b.height for b in blocks)), (255, 255, 255))
  x = 0
  for block in blocks:
    canvas.paste(block, (x, 0))
    x += block.width + gap
  return np.asarray(canvas)


def sample_prompts(sampler, params, tokenizer, prompts, *, per_prompt: int, seed: int,
                   batch_size: int) -> np.ndarray:
  """uint8 [len(prompts) * per_prompt, H, W, 3], prompt-major; chunk i uses fold_in(seed, i).
  Grey (1-channel) models' samples come out as RGB, for grids and the RGB classifiers."""
  tokens = np.repeat(tokenizer.encode(list(prompts)), per_prompt, axis=0)
  chunks = []
  for i, start in enumerate(range(0, len(tokens), batch_size)):
    chunk = tokens[start:start + batch_size]
    padded = np.pad(chunk, ((0, batch_size - len(chunk)), (0, 0)))  # one compiled shape
    images = sampler(params, padded, jax.random.fold_in(jax.random.key(seed), i))
    chunks.append(pipeline.to_rgb(pipeline.to_uint8(images)[:len(chunk)]))
  return np.concatenate(chunks)


def read_prompts(prompts, prompts_file: str) -> list:
  """Prompts from a file (one per line, blank lines dropped) or the given sequence."""
  if prompts_file:
    with open(prompts_file, encoding="utf-8") as f:
      prompts = [line.strip() for line in f if line.strip()]
  prompts = list(prompts)
  if not prompts:
    raise ValueError("no prompts given: set --config.sample.prompts or sample.prompts_file")
  return prompts
