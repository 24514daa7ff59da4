"""Mirrored MLP autoencoder: the vanilla (shallow), deep, sparse, denoising, stacked SELU and linear dense variants."""
from __future__ import annotations

import math

import torch
from torch import nn

from aetune.config import TrialConfig
from aetune.models.base import Autoencoder


def mlp(sizes: list[int], final_activation: bool, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers between consecutive sizes, the activation after each (after the last only if final_activation)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DenseAE(Autoencoder):
    config_keys = ("hidden_layers", "code_size", "activation", "l1")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        activation = self.hidden_activation(config)
        sizes = [math.prod(input_shape), *config.hidden_layers, config.code_size]
        self.encoder = nn.Sequential(nn.Flatten(), mlp(sizes, final_activation=True, activation=activation))
        self.decoder = nn.Sequential(mlp(sizes[::-1], final_activation=False, activation=activation),
                                     nn.Unflatten(1, input_shape))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)
