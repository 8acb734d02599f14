"""Images <-> token sequences. Patchifying is a permutation, so it leaves likelihoods unchanged.

images: [batch, height, width, channels]; tokens: [batch, (height/p)*(width/p), p*p*channels],
row-major over the patch grid.
"""

import einops


def validate_image_shape(image_shape, patch_size: int) -> None:
  """Raises a clear error unless image_shape = (height, width, channels) patchifies."""
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"image_shape must be (height, width, channels), got {tuple(image_shape)}")
  if patch_size < 1:
    raise ValueError(f"patch_size must be >= 1, got {patch_size}")
  for name, size in zip(("height", "width"), image_shape[:2]):
    if size % patch_size:
      raise ValueError(f"image {name} {size} is not divisible by patch_size {patch_size}")


def check_images(images, image_shape) -> None:
  """Raises a clear error unless images is [batch, *image_shape]."""
  if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
    hint = ""
    if images.ndim == 4 and images.shape[-1] != image_shape[-1]:
      hint = f" (got {images.shape[-1]} channels, expected {image_shape[-1]})"
    raise ValueError(f"images must have shape [batch, {', '.join(map(str, image_shape))}], "
                     f"got {tuple(images.shape)}{hint}")


def grid_shape(image_shape, patch_size: int) -> tuple:
  return image_shape[0] // patch_size, image_shape[1] // patch_size


def token_channels(image_shape, patch_size: int) -> int:
  return patch_size * patch_size * image_shape[2]


def patchify(images, patch_size: int):
  return einops.rearrange(images, "b (h p) (w q) c -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(tokens, image_shape, patch_size: int):
  height, width = grid_shape(image_shape, patch_size)
  return einops.rearrange(tokens, "b (h w) (p q c) -> b (h p) (w q) c", h=height, w=width,
                          p=patch_size, q=patch_size)
