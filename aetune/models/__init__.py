"""The autoencoder family and build_model, the one way to construct any variant."""
from __future__ import annotations

from typing import Any

from aetune.config import TrialConfig
from aetune.models.base import Autoencoder, Output, keras_init
from aetune.models.conv import ConvAE
from aetune.models.dense import DenseAE
from aetune.models.vae import VAE, kl_divergence

MODELS: dict[str, type[Autoencoder]] = {"dense": DenseAE, "conv": ConvAE, "vae": VAE}


def build_model(config: TrialConfig | dict[str, Any], input_shape: tuple[int, int, int] = (1, 28, 28)) -> Autoencoder:
    """Validate the config and build its model with Keras' initialisation. Raises ConfigError (a ValueError)."""
    if not isinstance(config, TrialConfig):
        config = TrialConfig.from_dict(config)
    model = MODELS[config.model](config, tuple(input_shape))
    model.apply(keras_init)
    return model


__all__ = ["MODELS", "Autoencoder", "Output", "build_model", "kl_divergence"]
