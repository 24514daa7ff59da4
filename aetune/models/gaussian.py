"""What the variational families share: a Gaussian encoder, reparameterisation, and loss = reconstruction + beta * KL.

Not a family itself: vae.py and conv_vae.py give it an encoder body and a decoder.
"""
from __future__ import annotations

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder, Output, reconstruction_loss


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)


class GaussianEncoder(nn.Module):
    """A body that ends in `features` flat features, and two dense heads: the posterior's mean and log-variance."""

    def __init__(self, body: nn.Module, features: int, code_size: int):
        super().__init__()
        self.body = body
        self.mean = nn.Linear(features, code_size)
        self.log_var = nn.Linear(features, code_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mean(h), self.log_var(h)


class GaussianAE(Autoencoder):
    """A family sets self.encoder (a GaussianEncoder) and self.decoder (code -> logits)."""

    generative = True
    extra_metrics = ("kl",)
    loss_per_image = True  # the negative ELBO, in nats per image

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        if config.l1 > 0:
            raise ConfigError(f"l1: the L1 activity penalty applies to deterministic codes; the {config.model} "
                              "regularises its code with the KL term (weight: beta); set l1: 0")
        self.beta = config.beta

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
        recon = reconstruction_loss(logits, target, self.loss_kind, per_image_sum=self.loss_per_image, linear_head=self.linear_head)
        kl = kl_divergence(mean, log_var).mean()
        reg = self.beta * kl
        return Output(logits, mean, recon + reg, recon, reg, extras={"kl": kl}, linear_head=self.linear_head)
