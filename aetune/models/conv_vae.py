"""Convolutional VAE: the conv family's encoder and decoder around a Gaussian latent of code_size dimensions.

Encoder: conv stages -> flatten -> dense mean and log-variance heads; decoder: a dense layer back to the last feature
map -> the conv decoder (upsample or transpose). Loss as the VAE: per-image summed BCE + beta * KL.
"""
from __future__ import annotations

import math

from torch import nn

from aetune.config import TrialConfig
from aetune.models.conv import conv_layers
from aetune.models.gaussian import GaussianAE, GaussianEncoder


class ConvVAE(GaussianAE):
    config_keys = ("filters", "code_size", "activation", "decoder", "beta")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        activation = self.hidden_activation(config)
        encoder, decoder, feature_shape = conv_layers(config, input_shape, activation)
        features = math.prod(feature_shape)
        self.encoder = GaussianEncoder(nn.Sequential(encoder, nn.Flatten()), features, config.code_size)
        self.decoder = nn.Sequential(nn.Linear(config.code_size, features), activation(),
                                     nn.Unflatten(1, feature_shape), decoder)
