"""image_grid (torchvision's make_grid underneath): cells where the snapshots' blanking and the
gallery's strips look for them, white gaps, and one image framed as in a grid of several."""

from __future__ import annotations

import torch

from clipforge import image_grid


def test_cells_sit_where_the_layout_says_with_white_gaps():
    images = torch.rand(5, 3, 6, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    grid = image_grid(images, 3, pad=2)
    assert grid.shape == (3, 2 * (6 + 2) + 2, 3 * (8 + 2) + 2)
    for i in range(5):
        line, column = divmod(i, 3)
        top, left = 2 + line * 8, 2 + column * 10
        assert torch.equal(grid[:, top : top + 6, left : left + 8], images[i])
    assert grid[:, :2].eq(1).all() and grid[:, :, :2].eq(1).all()
    assert grid[:, 10:16, 22:30].eq(1).all()  # the sixth cell, empty, is white


def test_one_image_is_framed_like_a_grid_of_several():
    image = torch.rand(1, 3, 5, 7)
    grid = image_grid(image, 1, pad=2)
    assert grid.shape == (3, 9, 11)
    assert torch.equal(grid[:, 2:7, 2:9], image[0]) and grid[:, 0].eq(1).all()
