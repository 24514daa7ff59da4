"""Convolutional autoencoder: conv3x3 + max-pool per filter, mirrored conv3x3 + upsample decoder."""
from __future__ import annotations

import math

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder


def pooled_sizes(size: int, n_pools: int) -> list[int]:
    """Spatial size after each ceil-mode 2x2 max-pool: 28 -> 14 -> 7 -> 4."""
    sizes = [size]
    for _ in range(n_pools):
        if sizes[-1] < 2:
            raise ConfigError(f"filters: {n_pools} pooling stages shrink a {size}-pixel side below one pixel; "
                              f"use at most {len(sizes) - 1} filters for this input")
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def decoder_paddings(height: list[int], width: list[int]) -> list[int]:
    """Padding of each decoder conv, deepest first. Where ceil pooling rounded up, a 'valid' conv (padding 0)
    brings the size back down, as the Keras original does (16 -> 14 before the last upsample)."""
    paddings, h, w = [], height[-1], width[-1]
    for target_h, target_w in zip(height[-2::-1], width[-2::-1]):
        valid = 2 * (h - 2) >= target_h and 2 * (w - 2) >= target_w
        paddings.append(0 if valid else 1)
        shrink = 2 if valid else 0
        h, w = 2 * (h - shrink), 2 * (w - shrink)
    return paddings


class ConvAE(Autoencoder):
    config_keys = ("filters", "l1")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        if not config.filters:
            raise ConfigError("filters: empty list; give at least one conv filter count, e.g. [16, 8, 8]")
        channels, height, width = input_shape
        filters = list(config.filters)
        paddings = decoder_paddings(pooled_sizes(height, len(filters)), pooled_sizes(width, len(filters)))
        encoder: list[nn.Module] = []
        for n_in, n_out in zip([channels, *filters], filters):
            encoder += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        decoder: list[nn.Module] = []
        reversed_filters = filters[::-1]
        for n_in, n_out, padding in zip([filters[-1], *reversed_filters], reversed_filters, paddings):
            decoder += [nn.Conv2d(n_in, n_out, 3, padding=padding), nn.ReLU(), nn.Upsample(scale_factor=2)]
        decoder.append(nn.Conv2d(filters[0], channels, 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        # Sizes that are neither powers of two nor fixed by a valid conv come out a little large: crop the centre.
        logits = self.decoder(code)
        (height, width), (h, w) = self.input_shape[1:], logits.shape[-2:]
        top, left = (h - height) // 2, (w - width) // 2
        return logits[..., top:top + height, left:left + width]
