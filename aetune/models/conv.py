"""Convolutional autoencoder: conv3x3 + max-pool per filter; an upsampling or a transposed-conv decoder.

The building blocks (conv_layers) serve every conv family: conv_vae wraps the same encoder and decoder around a
Gaussian latent.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


class UpsampledConv2d(nn.Conv2d):
    """A 2x nearest upsample followed by this conv3x3 'same', computed at the input's resolution: output pixel
    (2i + a, 2j + b) reads the input pixels around (i, j) through the kernel with the taps that land on the same
    upsampled pixel summed. One conv with four such phase kernels per output channel and a pixel shuffle give
    conv(upsample(x)) to float rounding without making the upsampled input. Used for the output conv: with the
    image's 1 or 3 output channels at full resolution it is where oneDNN's CPU kernels are slowest, and four times
    the channels at a quarter of the pixels suit them better (BENCHMARKS.md: conv epochs, before and after)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)
        taps = torch.zeros(2, 3, 3)  # taps[a, k, d + 1] = 1: in phase a, kernel tap k reads input offset d
        for a in range(2):
            for k in range(3):
                taps[a, k, (a + k - 1) // 2 + 1] = 1.0
        self.register_buffer("taps", taps, persistent=False)  # derived: checkpoints hold Conv2d's weights only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # phases[o, a, b]: the kernel of output channel o at row phase a and column phase b (pixel_shuffle's order)
        phases = torch.einsum("aku,blv,oikl->oabiuv", self.taps, self.taps, self.weight)
        out = F.conv2d(x, phases.reshape(-1, self.in_channels, 3, 3), self.bias.repeat_interleave(4), padding=1)
        return F.pixel_shuffle(out, 2)


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
    """Per filter, deepest first: conv3x3 + activation + 2x upsample; then conv3x3 'same' to the input's channels.
    The last upsample is done inside that output conv (UpsampledConv2d); an Identity keeps its place, so the layers'
    indices, hence the checkpoints' keys, are those of the plain layout."""
    layers: list[nn.Module] = []
    reversed_filters = filters[::-1]
    paddings = decoder_paddings(heights, widths)
    for n_in, n_out, padding in zip([filters[-1], *reversed_filters], reversed_filters, paddings):
        layers += [nn.Conv2d(n_in, n_out, 3, padding=padding), activation(), nn.Upsample(scale_factor=2)]
    layers[-1] = nn.Identity()
    layers += [UpsampledConv2d(filters[0], channels), CentreCrop(heights[0], widths[0])]
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
    """The encoder (per filter: conv3x3 'same' + 2x2 max-pool + activation), the decoder `config.decoder` names,
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
        # Pooling before the activation is the same function (every activation in ACTIVATIONS is non-decreasing,
        # so it commutes with max; gradients equal up to ties) and applies the activation to a quarter of the pixels.
        encoder += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.MaxPool2d(2, ceil_mode=ceil), activation()]
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
