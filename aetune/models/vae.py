"""Variational autoencoder (dense): Gaussian encoder, reparameterisation, loss = per-image summed BCE + beta * KL.
beta = 1 is the classic VAE, beta > 1 a beta-VAE."""
from __future__ import annotations

import math

from torch import nn

from aetune.config import TrialConfig
from aetune.models.dense import mlp
from aetune.models.gaussian import GaussianAE, GaussianEncoder


class VAE(GaussianAE):
    config_keys = ("hidden_layers", "code_size", "beta")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        sizes = [math.prod(input_shape), *config.hidden_layers]
        body = nn.Sequential(nn.Flatten(), mlp(sizes, final_activation=True))
        self.encoder = GaussianEncoder(body, sizes[-1], config.code_size)
        decoder_sizes = [config.code_size, *config.hidden_layers[::-1], sizes[0]]
        self.decoder = nn.Sequential(mlp(decoder_sizes, final_activation=False), nn.Unflatten(1, input_shape))
