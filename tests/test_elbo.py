"""A VAE's val_loss is its negative ELBO with sampled codes (nats per image), and test_nll its importance-sampled NLL.

Checked on a VAE trained on real MNIST against a computation that shares nothing with the model's objective but the
fixed noise seed: torch.distributions' Bernoulli likelihood and Gaussian KL.
"""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from aetune.config import TrialConfig
from aetune.evaluate.scoring import test_nll as importance_nll
from aetune.train.data import ImageData, to_float
from aetune.train.trainer import EVAL_LATENT_SEED, Trainer

VAE = {"model": "vae", "hidden_layers": [256], "code_size": 8, "batch_size": 64, "epochs": 2}


@pytest.fixture(scope="module")
def trained(mnist: ImageData) -> Trainer:
    trainer = Trainer(TrialConfig.from_dict(VAE), mnist, device="cpu")
    for _ in range(VAE["epochs"]):
        trainer.run_epoch()
    return trainer


@torch.inference_mode()
def negative_elbo(trainer: Trainer, sampled: bool) -> float:
    """-E_q[log p(x|z)] + KL(q || p), in nats per validation image: with the code sampled from one fixed draw per
    image, or (sampled False) decoded at the posterior mean as aetune once reported."""
    model, x = trainer.model.eval(), to_float(trainer.data.val_x)
    mean, log_var = model.encoder(x)
    posterior = Normal(mean, torch.exp(0.5 * log_var))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(EVAL_LATENT_SEED))
    z = mean + eps * posterior.stddev if sampled else mean
    likelihood = Bernoulli(logits=model.decoder(z).flatten(1), validate_args=False)  # grey-level targets
    log_px = likelihood.log_prob(x.flatten(1)).sum(1)
    kl = kl_divergence(posterior, Normal(torch.zeros_like(mean), torch.ones_like(mean))).sum(1)
    return float((kl - log_px).mean())


def test_val_loss_is_the_sampled_negative_elbo(trained):
    reported = trained.history[-1]["val_loss"]
    assert reported == pytest.approx(negative_elbo(trained, sampled=True), rel=1e-4)
    assert trained.evaluate()["val_loss"] == reported  # one fixed draw: every evaluation scores the same codes


def test_val_loss_is_no_longer_the_mean_decoded_value(trained):
    reported, mean_decoded = trained.history[-1]["val_loss"], negative_elbo(trained, sampled=False)
    assert reported - mean_decoded > 1.0  # the mean-decoded number is optimistic by nats, not rounding


def test_the_latent_draw_is_the_same_for_every_trial(mnist, trained):
    other = Trainer(TrialConfig.from_dict({**VAE, "seed": 7}), mnist, device="cpu")
    assert torch.equal(other.val_latent, trained.val_latent)


def test_importance_sampled_nll_is_below_the_negative_elbo(trained):
    nll = importance_nll(trained.model.eval(), trained.data.val_x, torch.device("cpu"))
    elbo = negative_elbo(trained, sampled=True)
    assert nll["test_nll_samples"] >= 100
    assert nll["test_nll"] < elbo  # the same images and codes' posterior: a tighter bound
    assert 0 < nll["test_nll_se"] < 0.05 * nll["test_nll"]
    single = importance_nll(trained.model.eval(), trained.data.val_x, torch.device("cpu"), samples=1)
    assert single["test_nll"] == pytest.approx(elbo, rel=0.02)  # one sample is an ELBO estimate, K tightens it
