"""Sample grids and the side-by-side comparison figures the benches write."""

import numpy as np

from ntm_jax import grids


def test_make_grid_places_every_image_in_row_major_cells():
  images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 3, 3), np.uint8)
  grid = grids.make_grid(images, columns=3, gap=1)
  assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 3)
  for i in range(5):
    r, c = divmod(i, 3)
    assert (grid[1 + 3 * r:3 + 3 * r, 1 + 4 * c:4 + 4 * c] == i).all()
  assert (grid[4:6, 9:12] == 128).all()  # the unused sixth cell stays grey


def test_side_by_side_scales_each_panel_under_its_title_left_to_right():
  left = np.zeros((4, 5, 3), np.uint8)
  right = np.full((6, 2, 3), 200, np.uint8)
  figure = grids.side_by_side({"left": left, "right": right}, scale=2, gap=3)
  assert figure.shape == (16 + 12, 10 + 3 + 4, 3)
  assert (figure[16:24, :10] == 0).all() and (figure[24:, :10] == 255).all()
  assert (figure[16:28, 13:17] == 200).all() and (figure[16:, 10:13] == 255).all()
  assert (figure[:16, :10] < 255).any()  # the title is drawn
