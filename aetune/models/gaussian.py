"""What the variational families share: a Gaussian encoder, reparameterisation, and loss = reconstruction + beta * KL.

Not a family itself: vae.py and conv_vae.py give it an encoder body and a decoder.

The loss is reported as the VAE literature, Keras and the PyTorch examples report it: with a sampled code, the
negative ELBO in nats per image (at beta 1; recon + beta * KL otherwise). Decoding the posterior mean instead gives a
smaller number that does not charge the model for a noisy posterior; the mean-decoded reconstruction is what the
families share (val_bce), so an evaluation pass returns it as the Output's logits beside the sampled loss.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder, Output, pixel_bce, reconstruction_loss

LOG_2PI = math.log(2 * math.pi)


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
    loss_per_image = True

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        if config.l1 > 0:
            raise ConfigError(f"l1: the L1 activity penalty applies to deterministic codes; the {config.model} "
                              "regularises its code with the KL term (weight: beta); set l1: 0")
        self.beta = config.beta
        self.code_size = config.code_size

    @property
    def likelihood(self) -> bool:
        """Summed BCE is -log p(x|z) of a Bernoulli decoder; summed squared error is no log-likelihood."""
        return self.loss_kind == "bce"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the deterministic code."""
        return self.encoder(x)[0]

    def latent_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """One standard-normal draw per image: z = mean + noise * std is its sampled code."""
        return torch.randn(n, self.code_size, generator=generator)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def objective(self, x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor | None = None) -> Output:
        """The loss with z ~ q(z|x) by reparameterisation: `noise` (latent_noise's draw) where given, so a
        validation pass scores every epoch on the same codes' noise, else a fresh draw. In eval mode the logits
        are those of the posterior mean (the deterministic reconstruction); while training, of the sampled code."""
        mean, log_var = self.encoder(x)
        eps = torch.randn_like(mean) if noise is None else noise.to(mean)
        logits = self.decode_logits(mean + eps * torch.exp(0.5 * log_var))
        recon = reconstruction_loss(logits, target, self.loss_kind, self.loss_per_image, linear_head=self.linear_head)
        kl = kl_divergence(mean, log_var).mean()
        reg = self.beta * kl
        if not self.training:
            logits = self.decode_logits(mean)
        return Output(logits, mean, recon + reg, recon, reg, extras={"kl": kl}, linear_head=self.linear_head)

    def nll(self, x: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """-log p(x) per image in nats, importance-sampled with `samples` codes z_k ~ q(z|x) (Burda et al. 2016):
        log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K. Never above the negative ELBO
        in expectation, and tighter as K grows. Needs a likelihood (loss: bce)."""
        mean, log_var = self.encoder(x)
        std = torch.exp(0.5 * log_var)
        weights = []
        for _ in range(samples):
            eps = torch.randn(mean.shape, generator=generator).to(mean)
            z = mean + eps * std
            log_px_z = -pixel_bce(self.decode_logits(z), x).flatten(1).sum(1)
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + log_var).sum(1)
            weights.append(log_px_z + log_pz - log_qz)
        return math.log(samples) - torch.logsumexp(torch.stack(weights), dim=0)
