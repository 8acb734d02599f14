"""ShapesEval: GenEval's compositional categories on the built-in shapes domain, judged exactly.

GenEval needs a detector; here the world is known, so a judge in code decides exactly whether an
image satisfies its prompt's structured spec:
  1. every pixel is explained as a blend of one palette colour with the white background
     (anti-aliasing and blur are such blends); alpha >= 1/2 assigns it to that colour;
  2. connected pixels of one colour form an object (tiny specks are ignored);
  3. its shape is the anti-aliased template (circle, square, apex-up triangle of the observed
     area and centre of mass) that best explains its alpha map; components that no template
     explains (noise) are not objects;
  4. counts, colours and GenEval's relative-position rule (shapes.relation_holds) decide.

The prompt suite is fixed and versioned: SUITE_VERSION changes whenever prompts could change.
"""

import dataclasses
import re

import numpy as np
from scipy import ndimage

from ntm_jax.data import shapes

SUITE_VERSION = "shapes_eval_v1"
SUITE_SEED = 20261129
SUITE_CANVAS = 64  # prompts do not depend on it; it only has to admit every kind of scene


@dataclasses.dataclass(frozen=True)
class Item:
  """Objects a prompt asks for: `count` (exactly, if given) objects of shape and colour."""
  shape: str
  color: str | None = None
  count: int | None = None


@dataclasses.dataclass(frozen=True)
class Prompt:
  kind: str
  caption: str
  items: tuple  # of Item; with a relation, items[0] <relation> items[1]
  relation: str | None = None
  held_out: bool = False


@dataclasses.dataclass(frozen=True)
class Detection:
  shape: str
  color: str
  x: float  # centre of mass, pixels
  y: float
  area: float  # in pixels (soft)


def _prompt(scene: shapes.Scene, held_out: bool) -> Prompt:
  colored = bool(scene.named_colors)
  color = lambda o: o.color if colored else None
  objects = scene.objects
  if scene.kind == "counting":
    items = (Item(objects[0].shape, count=scene.count),)
  elif scene.relation:  # position, composite: subject copies first, the reference last
    items = (Item(objects[0].shape, color(objects[0]), scene.count),
             Item(objects[-1].shape, color(objects[-1])))
  else:
    items = tuple(Item(o.shape, color(o)) for o in objects)
  return Prompt(scene.kind, scene.caption, items, scene.relation, held_out)


def prompt_suite(held_out_combinations=(("purple", "triangle"),), per_kind: int = 100) -> list:
  """per_kind prompts of every kind (prompts may repeat where a kind has few), then per_kind
  held-out prompts of every kind that names colours. Deterministic."""
  suite = []
  for index, kind in enumerate(shapes.KINDS):
    kind_sampler = shapes.SceneSampler(SUITE_CANVAS, held_out_combinations, kinds=(kind,))
    rng = np.random.default_rng([SUITE_SEED, index])
    suite += [_prompt(kind_sampler.sample(rng), False) for _ in range(per_kind)]
    if held_out_combinations and kind in shapes.COLOR_KINDS:
      suite += [_prompt(kind_sampler.sample(rng, held_out=True), True)
                for _ in range(per_kind)]
  return suite


# The paraphrase suite: the same prompts and specs, every colour, shape and number said with a
# word that never occurs in a training caption. Relations and function words (a, and, of, left,
# right) are kept: they have no natural one-word synonym here.
PARAPHRASE_VERSION = "shapes_paraphrase_v1"
PARAPHRASES = {
    "red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden",
    "purple": "violet", "orange": "amber",
    "circle": "ball", "circles": "balls", "square": "box", "squares": "boxes",
    "triangle": "pyramid", "triangles": "pyramids",
    "two": "a pair of", "three": "a trio of", "four": "a quartet of",
    "above": "over", "below": "beneath",
}


def agree_articles(caption: str) -> str:
  """'a' before a vowel becomes 'an', 'an' before a consonant 'a' (after a word swap)."""
  return re.sub(r"\ban (?=[^aeiou])", "a ", re.sub(r"\ba (?=[aeiou])", "an ", caption))


def paraphrase(caption: str) -> str:
  """A training-style caption with PARAPHRASES applied and the articles agreeing again."""
  return agree_articles(" ".join(PARAPHRASES.get(w, w) for w in caption.split()))


def paraphrase_suite(suite: list) -> list:
  """The suite's prompts with paraphrased captions; what the judge checks is unchanged."""
  return [dataclasses.replace(p, caption=paraphrase(p.caption)) for p in suite]


_PALETTE_NAMES = tuple(shapes.COLORS)
_PALETTE = np.array([shapes.COLORS[c] for c in _PALETTE_NAMES], np.float32)
_WHITE = np.array(shapes.BACKGROUND, np.float32)


def colour_alpha(image: np.ndarray):
  """(alpha [H, W, colours] of the best blend alpha C + (1 - alpha) white for every palette
  colour, index [H, W] of the colour whose blend explains the pixel best)."""
  pixels = image.astype(np.float32)[..., None, :]
  direction = _PALETTE - _WHITE  # [colours, 3]
  alpha = np.clip(np.sum((pixels - _WHITE) * direction, -1) / np.sum(direction**2, -1), 0, 1)
  residual = np.sum(np.square(pixels - (_WHITE + alpha[..., None] * direction)), -1)
  return alpha, np.argmin(residual, axis=-1)


# Area of each shape for radius r (shapes.inside): circle pi r^2, square (1.7 r)^2, triangle
# 2 r^2; the triangle's centre of mass sits r / 3 below its centre.
_AREA_PER_R2 = {"circle": np.pi, "square": 1.7**2, "triangle": 2.0}
_MASS_BELOW_CENTRE = {"circle": 0.0, "square": 0.0, "triangle": 1.0 / 3.0}


def fit_shape(observed: np.ndarray, rows: slice, cols: slice, x: float, y: float):
  """(object, relative error) of the best template: each shape of the observed area and centre
  of mass, rendered anti-aliased over the window, compared with the observed alpha map."""
  area = float(observed.sum())
  best = None
  for shape, per_r2 in _AREA_PER_R2.items():
    r = np.sqrt(area / per_r2)
    obj = shapes.SceneObject(shape, "", x, y - _MASS_BELOW_CENTRE[shape] * r, r)
    template = shapes.coverage(obj, rows, cols)
    error = float(np.sum(np.square(template - observed)) / max(np.sum(template**2), 1e-6))
    if best is None or error < best[1]:
      best = (obj, error)
  return best


def detect(image: np.ndarray, min_area: float, max_error: float = 0.35,
           max_crowding: float = 0.25) -> list:
  """Objects in a uint8 [H, W, 3] image: components of one colour at least min_area pixels
  large, standing free (at most max_crowding of the pixels around them belong to other
  colours: the domain keeps objects apart, noise does not) and explained by their best shape
  template (relative error <= max_error). Positions are the fitted shapes' centres."""
  alpha, index = colour_alpha(image)
  best_alpha = np.take_along_axis(alpha, index[..., None], -1)[..., 0]
  solid = best_alpha >= 0.5
  height, width = index.shape
  found = []
  for c, name in enumerate(_PALETTE_NAMES):
    labels, count = ndimage.label(solid & (index == c), structure=np.ones((3, 3)))
    # This colour's blend everywhere except on other colours' objects (edges blend with white).
    own = np.where(solid & (index != c), 0.0, alpha[..., c])
    for label, box in zip(range(1, count + 1), ndimage.find_objects(labels)):
      rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
      cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
      # The component, grown by one pixel to take in its anti-aliased edge.
      component = labels[rows, cols] == label
      grown = ndimage.binary_dilation(component, np.ones((3, 3)))
      observed = np.where(grown, own[rows, cols], 0.0)
      area = float(observed.sum())
      ring = grown & ~component
      crowding = (solid[rows, cols] & (index[rows, cols] != c) & ring).sum() / max(ring.sum(), 1)
      if area < min_area or crowding > max_crowding:
        continue
      r_idx, c_idx = np.mgrid[rows, cols]
      y = float(np.sum((r_idx + 0.5) * observed) / area)
      x = float(np.sum((c_idx + 0.5) * observed) / area)
      obj, error = fit_shape(observed, rows, cols, x, y)
      if error <= max_error:
        found.append(Detection(obj.shape, name, obj.x, obj.y, area))
  return found


def min_object_area(canvas: int) -> float:
  """A third of the smallest object the domain draws (an apex-up triangle of the minimum
  radius has area 2 r^2)."""
  return 2.0 * (shapes.RADIUS_RANGE[0] * canvas) ** 2 / 3.0


def _matches(detection: Detection, item: Item) -> bool:
  return detection.shape == item.shape and item.color in (None, detection.color)


def satisfies(image: np.ndarray, prompt: Prompt) -> bool:
  """Whether the image shows what the prompt asks for (extra objects are allowed, as in
  GenEval; counts are exact)."""
  canvas = image.shape[0]
  found = detect(image, min_object_area(canvas))
  groups = [[d for d in found if _matches(d, item)] for item in prompt.items]
  for item, group in zip(prompt.items, groups):
    if not group or (item.count is not None and len(group) != item.count):
      return False
  if prompt.relation is None:
    return True
  as_object = lambda d: shapes.SceneObject(d.shape, d.color, d.x, d.y, 0.0)
  subjects, references = groups
  return any(all(shapes.relation_holds(as_object(s), as_object(r), prompt.relation, canvas)
                 for s in subjects) for r in references)


def is_blank(image: np.ndarray) -> bool:
  """Whether an image has fewer solid coloured pixels than the judge's smallest object: a
  diagnosis of failed samples (nothing drawn), not part of the score."""
  alpha, index = colour_alpha(image)
  solid = np.take_along_axis(alpha, index[..., None], -1)[..., 0] >= 0.5
  return bool(solid.sum() < min_object_area(image.shape[0]))


def score(prompts: list, images: np.ndarray, samples_per_prompt: int) -> dict:
  """Accuracy per category and overall (mean of categories, as GenEval), seen and held-out,
  and the fraction of blank samples per split (is_blank; every prompt asks for an object).

  images: uint8 [len(prompts) * samples_per_prompt, H, W, 3], prompt-major."""
  correct = np.array([satisfies(image, prompts[i // samples_per_prompt])
                      for i, image in enumerate(images)])
  blank = np.array([is_blank(image) for image in images])
  per_prompt = lambda x: x.reshape(len(prompts), samples_per_prompt)
  report = {}
  for split, held_out in (("seen", False), ("held_out", True)):
    per_kind = {}
    for kind in shapes.KINDS:
      rows = [i for i, p in enumerate(prompts) if p.kind == kind and p.held_out == held_out]
      if rows:
        per_kind[kind] = float(per_prompt(correct)[rows].mean())
    if per_kind:
      rows = [i for i, p in enumerate(prompts) if p.held_out == held_out]
      report[split] = {"per_category": per_kind,
                       "overall": float(np.mean(list(per_kind.values()))),
                       "blank": float(per_prompt(blank)[rows].mean())}
  return report


def render_prompt(prompt: Prompt, canvas: int, rng) -> np.ndarray:
  """A clean render of a scene that satisfies the prompt, unnamed colours drawn at random (for
  the judge's self-test)."""
  palette = tuple(shapes.COLORS)
  while True:
    pairs = [(item.shape, item.color or palette[rng.integers(len(palette))])
             for item in prompt.items for _ in range(item.count or 1)]
    boxes = shapes.place(rng, len(pairs), canvas)
    if boxes is None:
      continue
    objects = [shapes.SceneObject(s, c, x, y, r) for (s, c), (x, y, r) in zip(pairs, boxes)]
    if prompt.relation and not all(
        shapes.relation_holds(o, objects[-1], prompt.relation, canvas) for o in objects[:-1]):
      continue
    return shapes.render(shapes.Scene(prompt.kind, tuple(objects), prompt.caption), canvas)


def render_suite(prompts: list, canvas: int, samples_per_prompt: int, seed: int = 0):
  """uint8 [len(prompts) * samples_per_prompt, canvas, canvas, 3] clean renders, prompt-major
  (the judge's ceiling: what a perfect generator would score; e.g. through an autoencoder)."""
  rng = np.random.default_rng([SUITE_SEED, seed])
  return np.stack([render_prompt(p, canvas, rng) for p in prompts
                   for _ in range(samples_per_prompt)])
