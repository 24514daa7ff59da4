"""Image grids: N x C x H x W images in [0, 1] tiled on white, PADDING pixels apart, by torchvision's make_grid.
One layout for the trials' TensorBoard rows, the report's figures and the pixel tiles beside them."""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

PADDING = 2


def tile(images: torch.Tensor, nrow: int, padding: int = PADDING) -> torch.Tensor:
    """C x H' x W', nrow images a row, C as the images have it (make_grid itself turns grey into three channels).
    A single image comes back as it is, without a border (make_grid's rule)."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    return grid[:1] if images.shape[1] == 1 else grid


def tile_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """One grid row per tensor of images; a row shorter than the longest ends in white."""
    columns = max(len(images) for images in rows)
    filled = [torch.cat([images.detach().float().cpu(), torch.ones(columns - len(images), *images.shape[1:])])
              for images in rows]
    return tile(torch.cat(filled), nrow=columns)


def to_uint8(grid: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> 0..255, rounded (TensorBoard would truncate a float image: one level darker, often)."""
    return (grid * 255).round().to(torch.uint8)


def grid_png(grid: torch.Tensor) -> bytes:
    """A C x H x W grid in [0, 1] at its own pixels: grey (mode L) for one channel, RGB for three."""
    pixels = to_uint8(grid).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if len(grid) == 1 else np.ascontiguousarray(pixels)).save(buffer, format="png")
    return buffer.getvalue()
