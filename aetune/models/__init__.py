"""The autoencoder family: one file per family, named here; build_model is the one way to construct any of them.

Importing this package does not import torch: the registry maps each `model:` name to the class that implements
it, so search-space validation can check names without loading PyTorch. Everything else the package needs to know
about a family (its config keys, whether it samples from a prior, its extra metrics, its code shape) is asked of
the class, never inferred from its name.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aetune.config import TrialConfig
    from aetune.models.base import Autoencoder

# model name -> "module:class" inside aetune.models
REGISTRY: dict[str, str] = {
    "dense": "dense:DenseAE",
    "conv": "conv:ConvAE",
    "vae": "vae:VAE",
    "lstm": "lstm:LSTMAE",
    "conv_vae": "conv_vae:ConvVAE",
}


def family(name: str) -> "type[Autoencoder]":
    """The class of the family called `name` (imports torch)."""
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f"aetune.models.{module}"), cls)


def families() -> "dict[str, type[Autoencoder]]":
    return {name: family(name) for name in REGISTRY}


def build_model(config: "TrialConfig | dict[str, Any]",
                input_shape: tuple[int, int, int] = (1, 28, 28)) -> "Autoencoder":
    """Validate the config and build its model with Keras' initialisation. Raises ConfigError (a ValueError)."""
    from aetune.config import TrialConfig
    from aetune.models.base import keras_init

    if not isinstance(config, TrialConfig):
        config = TrialConfig.from_dict(config)
    model = family(config.model)(config, tuple(input_shape))
    model.apply(keras_init)
    return model


__all__ = ["REGISTRY", "build_model", "families", "family"]
