"""Convolutional autoencoder: conv3x3 + max-pool per filter; an upsampling or a transposed-conv decoder.

The building blocks (conv_layers) serve every conv family: conv_vae wraps the same encoder and decoder around a
Gaussian latent.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder


def pooled_sizes(size: int, n_pools: int, ceil: bool) -> list[int]:
    """Spatial size after each 2x2 max-pool: ceil 28 -> 14 -> 7 -> 4, floor 28 -> 14 -> 7 -> 3."""
    sizes = [size]
    for _ in range(n_pools):
        if sizes[-1] < 2:
            raise ConfigError(f"filters: {n_pools} pooling stages shrink a {size}-pixel side below one pixel; "
                              f"use at most {len(sizes) - 1} filters for this input")
        sizes.append(math.ceil(sizes[-1] / 2) if ceil else sizes[-1] // 2)
    return sizes


def decoder_paddings(height: list[int], width: list[int]) -> list[int]:
    """Padding of each upsampling decoder conv, deepest first. Where ceil pooling rounded up, a 'valid' conv
    (padding 0) brings the size back down, as the Keras original does (16 -> 14 before the last upsample)."""
    paddings, h, w = [], height[-1], width[-1]
    for target_h, target_w in zip(height[-2::-1], width[-2::-1]):
        valid = 2 * (h - 2) >= target_h and 2 * (w - 2) >= target_w
        paddings.append(0 if valid else 1)
        shrink = 2 if valid else 0
        h, w = 2 * (h - shrink), 2 * (w - shrink)
    return paddings


class CentreCrop(nn.Module):
    """Sizes that are neither powers of two nor fixed by a valid conv come out a little large: keep the centre."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return x[..., top:top + self.height, left:left + self.width]


def upsample_decoder(filters: list[int], channels: int, heights: list[int], widths: list[int],
                     activation: type[nn.Module]) -> nn.Sequential:
    """Per filter, deepest first: conv3x3 + activation + 2x upsample; then conv3x3 'same' to the input's channels."""
    layers: list[nn.Module] = []
    reversed_filters = filters[::-1]
    paddings = decoder_paddings(heights, widths)
    for n_in, n_out, padding in zip([filters[-1], *reversed_filters], reversed_filters, paddings):
        layers += [nn.Conv2d(n_in, n_out, 3, padding=padding), activation(), nn.Upsample(scale_factor=2)]
    layers += [nn.Conv2d(filters[0], channels, 3, padding=1), CentreCrop(heights[0], widths[0])]
    return nn.Sequential(*layers)


def transpose_decoder(filters: list[int], channels: int, heights: list[int], widths: list[int],
                      activation: type[nn.Module]) -> nn.Sequential:
    """Per filter, deepest first: a stride-2 ConvTranspose3x3 to the next filter count (the input's channels last),
    the activation between them. Floor pooling halved each side, dropping a pixel where it was odd; each layer
    doubles the side, one more where the target is odd: 'valid' for an odd target (3 -> 7), 'same' (padding and
    output_padding 1) for an even one (7 -> 14), so every size comes back exactly."""
    layers: list[nn.Module] = []
    targets = zip(heights[-2::-1], widths[-2::-1])
    for n_in, n_out, target in zip(filters[::-1], [*filters[-2::-1], channels], targets):
        pad = tuple(1 - side % 2 for side in target)
        layers += [nn.ConvTranspose2d(n_in, n_out, 3, stride=2, padding=pad, output_padding=pad), activation()]
    return nn.Sequential(*layers[:-1])  # the last layer gives logits


def conv_layers(config: TrialConfig, input_shape: tuple[int, int, int],
                activation: type[nn.Module]) -> tuple[nn.Sequential, nn.Sequential, tuple[int, int, int]]:
    """The encoder (per filter: conv3x3 'same' + activation + 2x2 max-pool), the decoder `config.decoder` names,
    which maps the encoder's last feature map back to input_shape, and that feature map's shape.

    The upsampling decoder mirrors ceil pooling (the Keras blog's conv AE, 28 -> 14 -> 7 -> 4); the transposed one
    mirrors floor pooling (the course's, 28 -> 14 -> 7 -> 3)."""
    if not config.filters:
        raise ConfigError("filters: empty list; give at least one conv filter count, e.g. [16, 8, 8]")
    channels, height, width = input_shape
    filters, ceil = list(config.filters), config.decoder == "upsample"
    heights, widths = pooled_sizes(height, len(filters), ceil), pooled_sizes(width, len(filters), ceil)
    encoder: list[nn.Module] = []
    for n_in, n_out in zip([channels, *filters], filters):
        encoder += [nn.Conv2d(n_in, n_out, 3, padding=1), activation(), nn.MaxPool2d(2, ceil_mode=ceil)]
    decoder = (upsample_decoder if ceil else transpose_decoder)(filters, channels, heights, widths, activation)
    return nn.Sequential(*encoder), decoder, (filters[-1], heights[-1], widths[-1])


class ConvAE(Autoencoder):
    config_keys = ("filters", "activation", "decoder", "l1")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        self.encoder, self.decoder, _ = conv_layers(config, input_shape, self.hidden_activation(config))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)
