"""Variational autoencoder: Gaussian encoder, reparameterisation, loss = per-image summed BCE + KL."""
from __future__ import annotations

import math

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder, Output, reconstruction_loss
from aetune.models.dense import mlp


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)


class GaussianEncoder(nn.Module):
    def __init__(self, sizes: list[int], code_size: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), mlp(sizes, final_relu=True))
        self.mean = nn.Linear(sizes[-1], code_size)
        self.log_var = nn.Linear(sizes[-1], code_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mean(h), self.log_var(h)


class VAE(Autoencoder):
    config_keys = ("hidden_layers", "code_size")
    generative = True
    extra_metrics = ("kl",)

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        if config.l1 > 0:
            raise ConfigError("l1: the L1 activity penalty applies to dense and conv codes, not the vae; set l1: 0")
        sizes = [math.prod(input_shape), *config.hidden_layers]
        self.encoder = GaussianEncoder(sizes, config.code_size)
        decoder_sizes = [config.code_size, *config.hidden_layers[::-1], sizes[0]]
        self.decoder = nn.Sequential(mlp(decoder_sizes, final_relu=False), nn.Unflatten(1, input_shape))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the deterministic code."""
        return self.encoder(x)[0]

    def sample_code(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """z ~ q(z|x) by reparameterisation while training; the mean in eval mode (deterministic validation)."""
        if not self.training:
            return mean
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def objective(self, x: torch.Tensor, target: torch.Tensor) -> Output:
        mean, log_var = self.encoder(x)
        logits = self.decode_logits(self.sample_code(mean, log_var))
        recon = reconstruction_loss(logits, target, self.loss_kind, per_image_sum=True)
        kl = kl_divergence(mean, log_var).mean()
        return Output(logits, mean, recon + kl, recon, kl, extras={"kl": kl})
