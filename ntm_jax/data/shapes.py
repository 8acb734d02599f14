"""A procedural text-to-image domain: coloured geometric shapes on a plain canvas.

A scene is a structured spec (objects with shape, colour, centre and size, plus the prompt
kind and relation it illustrates); its caption is generated from the spec, and its image is
rendered from it. Prompt kinds follow GenEval: single object, two objects, counting, colours,
relative position, colour attribution, and a composite of counting/colour/position.

Everything is a pure function of (seed, index): the same example comes back on any machine.
Held-out (colour, shape) combinations never appear in training scenes; the held-out split
contains only scenes whose caption names one of them.
"""

import dataclasses

import numpy as np

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUND = (255, 255, 255)
KINDS = ("single_object", "two_objects", "counting", "colors", "position", "color_attribution",
         "composite")
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles"}
# Kinds whose caption names colours: the only ones that can name a held-out combination.
COLOR_KINDS = ("colors", "color_attribution", "composite")
SUPERSAMPLE = 4
RADIUS_RANGE = (0.12, 0.2)  # object radii, as fractions of the canvas


@dataclasses.dataclass(frozen=True)
class SceneObject:
  shape: str
  color: str
  x: float  # centre, in pixels
  y: float
  radius: float  # half the bounding-box side, in pixels


@dataclasses.dataclass(frozen=True)
class Scene:
  kind: str
  objects: tuple
  caption: str
  relation: str | None = None  # every object but the last <relation> the last object
  count: int | None = None
  named_colors: tuple = ()  # (colour, shape) pairs the caption names


def relation_holds(a: SceneObject, b: SceneObject, relation: str, canvas: int) -> bool:
  """GenEval-style rule on box centres: the offset along the relation's axis exceeds a margin
  and dominates the offset along the other axis."""
  margin = 0.1 * canvas
  dx, dy = b.x - a.x, b.y - a.y  # image y grows downwards
  horizontal = abs(dx) > abs(dy)
  return {
      "left of": horizontal and dx > margin,
      "right of": horizontal and -dx > margin,
      "above": not horizontal and dy > margin,
      "below": not horizontal and -dy > margin,
  }[relation]


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _noun(shape: str, color: str | None = None) -> str:
  words = f"{color} {shape}" if color else shape
  return f"{_article(words)} {words}"


def place(rng, count: int, canvas: int, placed=()) -> list | None:
  """Centres and radii for `count` non-overlapping objects (radii in RADIUS_RANGE of the
  canvas) next to `placed` ones, or None after too many tries."""
  boxes = list(placed)
  for _ in range(count):
    for _attempt in range(100):
      r = rng.uniform(*(f * canvas for f in RADIUS_RANGE))
      x, y = rng.uniform(r, canvas - r, size=2)
      if all(max(abs(x - bx), abs(y - by)) > r + br + 1.0 for bx, by, br in boxes):
        boxes.append((x, y, r))
        break
    else:
      return None
  return boxes[len(placed):]


class SceneSampler:
  """Draws scenes of every kind for a canvas size, honouring held-out combinations."""

  def __init__(self, canvas: int, held_out=(), kinds=KINDS):
    if canvas < 8:
      raise ValueError(f"canvas must be >= 8 pixels, got {canvas}")
    for color, shape in held_out:
      if color not in COLORS or shape not in SHAPES:
        raise ValueError(f"held-out combination ({color!r}, {shape!r}) is not a known "
                         f"(colour, shape); colours {list(COLORS)}, shapes {list(SHAPES)}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
      raise ValueError(f"unknown prompt kinds {sorted(unknown)}; known: {KINDS}")
    self.canvas, self.held_out, self.kinds = canvas, frozenset(map(tuple, held_out)), tuple(kinds)
    self.allowed = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in self.held_out]

  def _objects(self, rng, pairs, placed=()):
    boxes = place(rng, len(pairs), self.canvas, placed)
    if boxes is None:
      return None
    return [SceneObject(s, c, x, y, r) for (c, s), (x, y, r) in zip(pairs, boxes)]

  def _pair(self, rng, shape=None, color=None):
    options = [(c, s) for c, s in self.allowed if shape in (None, s) and color in (None, c)]
    return options[rng.integers(len(options))]

  def _draft(self, rng, kind, held_out_pair):
    """One attempt at a scene of `kind`; held_out_pair (if given) is the first named object."""
    pick = lambda **kw: self._pair(rng, **kw)
    if kind in ("single_object", "colors"):
      pairs = [held_out_pair or pick()]
      objects = self._objects(rng, pairs)
      color = pairs[0][0] if kind == "colors" else None
      caption = _noun(pairs[0][1], color)
      named = (pairs[0],) if color else ()
      return objects and Scene(kind, tuple(objects), caption, named_colors=named)
    if kind in ("two_objects", "color_attribution"):
      first = held_out_pair or pick()
      second = pick(shape=SHAPES[rng.integers(len(SHAPES))])
      if second[1] == first[1] or (kind == "color_attribution" and second[0] == first[0]):
        return None
      objects = self._objects(rng, [first, second])
      colored = kind == "color_attribution"
      caption = (f"{_noun(first[1], first[0] if colored else None)} and "
                 f"{_noun(second[1], second[0] if colored else None)}")
      named = (first, second) if colored else ()
      return objects and Scene(kind, tuple(objects), caption, named_colors=named)
    if kind == "counting":
      count = int(rng.integers(2, 5))
      shape = SHAPES[rng.integers(len(SHAPES))]
      objects = self._objects(rng, [pick(shape=shape) for _ in range(count)])
      caption = f"{NUMBERS[count]} {PLURALS[shape]}"
      return objects and Scene(kind, tuple(objects), caption, count=count)
    if kind == "position":
      first, second = pick(), pick()
      if first[1] == second[1]:
        return None
      return self._related(rng, kind, [first, second], colored=False)
    # composite: one or two coloured objects in a relation to another coloured object.
    first = held_out_pair or pick()
    second = pick()
    if second[1] == first[1]:
      return None
    return self._related(rng, kind, [first, second], colored=True, count=int(rng.integers(1, 3)))

  def _related(self, rng, kind, pairs, colored, count=1):
    """`count` copies of pairs[0], each in `relation` to the single pairs[1] (the last object)."""
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    objects = self._objects(rng, [pairs[0]] * count + [pairs[1]])
    if not objects or not all(relation_holds(o, objects[-1], relation, self.canvas)
                              for o in objects[:-1]):
      return None
    color = lambda p: p[0] if colored else None
    subject = (_noun(pairs[0][1], color(pairs[0])) if count == 1 else
               f"{NUMBERS[count]} {color(pairs[0]) + ' ' if colored else ''}{PLURALS[pairs[0][1]]}")
    caption = f"{subject} {relation} {_noun(pairs[1][1], color(pairs[1]))}"
    named = tuple(pairs) if colored else ()
    return Scene(kind, tuple(objects), caption, relation=relation,
                 count=count if count > 1 else None, named_colors=named)

  def sample(self, rng, *, held_out: bool = False) -> Scene:
    """A training scene (no held-out pair anywhere), or a scene naming a held-out pair."""
    if held_out and not self.held_out:
      raise ValueError("held-out scenes requested but no held-out combinations are configured")
    kinds = [k for k in self.kinds if k in COLOR_KINDS] if held_out else self.kinds
    if not kinds:
      raise ValueError(f"held-out scenes need one of the kinds {COLOR_KINDS}")
    held = sorted(self.held_out)
    kind = kinds[rng.integers(len(kinds))]  # drawn once, so every kind is equally frequent
    while True:
      pair = held[rng.integers(len(held))] if held_out else None
      scene = self._draft(rng, kind, pair)
      if scene:
        return scene


def inside(obj: SceneObject, x, y):
  """Whether points (x, y) (pixel units, arrays) lie inside the drawn object."""
  dx, dy = x - obj.x, y - obj.y
  if obj.shape == "circle":
    return dx**2 + dy**2 <= obj.radius**2
  if obj.shape == "square":
    return (np.abs(dx) <= obj.radius * 0.85) & (np.abs(dy) <= obj.radius * 0.85)
  # triangle with apex up: half-width grows linearly from apex to base
  depth = (dy + obj.radius) / (2 * obj.radius)
  return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * obj.radius)


def coverage(obj: SceneObject, rows: slice, cols: slice) -> np.ndarray:
  """Fraction of each pixel of the window [rows, cols] the object covers (4x4 supersampled)."""
  def axis(window):
    return (np.arange(window.start * SUPERSAMPLE, window.stop * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
  x, y = np.meshgrid(axis(cols), axis(rows))
  covered = inside(obj, x, y).astype(np.float32)
  h, w = rows.stop - rows.start, cols.stop - cols.start
  return covered.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene, canvas: int) -> np.ndarray:
  """Anti-aliased rendering (4x supersampled): uint8 [canvas, canvas, 3]."""
  size = canvas * SUPERSAMPLE
  coords = (np.arange(size) + 0.5) / SUPERSAMPLE
  x, y = np.meshgrid(coords, coords)
  image = np.empty((size, size, 3), np.float32)
  image[:] = BACKGROUND
  for obj in scene.objects:
    image[inside(obj, x, y)] = COLORS[obj.color]
  pooled = image.reshape(canvas, SUPERSAMPLE, canvas, SUPERSAMPLE, 3).mean(axis=(1, 3))
  return np.round(pooled).astype(np.uint8)


def example(seed: int, index: int, canvas: int, sampler: SceneSampler, held_out: bool = False):
  """The (image, caption, kind) of example `index`, a pure function of (seed, index)."""
  rng = np.random.default_rng([seed, index, int(held_out)])
  scene = sampler.sample(rng, held_out=held_out)
  return {"image": render(scene, canvas), "caption": scene.caption, "kind": scene.kind}
