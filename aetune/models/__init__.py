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
    check_size(config, tuple(input_shape))
    model = family(config.model)(config, tuple(input_shape))
    model.apply(keras_init)
    return model


MEMORY_SHARE = 4  # a model's float32 weights may take a quarter of this machine's memory: training holds four
#                   copies (weights, gradients, Adam's two moments)


def check_size(config: "TrialConfig", input_shape: tuple[int, int, int]) -> int:
    """The model's parameter count, counted on PyTorch's meta device (nothing allocated); a ConfigError when its
    weights would not fit in a MEMORY_SHARE-th of this machine's memory."""
    import os

    import torch

    from aetune.config import ConfigError

    with torch.device("meta"):
        parameters = sum(p.numel() for p in family(config.model)(config, input_shape).parameters())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if parameters * 4 > memory / MEMORY_SHARE:
        raise ConfigError(f"model size: {parameters:,} parameters ({parameters * 4 / 2**30:,.1f} GiB as float32), "
                          f"over 1/{MEMORY_SHARE} of this machine's {memory / 2**30:.0f} GiB of memory (training holds "
                          "four copies); make code_size, hidden_layers or filters smaller")
    return parameters


__all__ = ["check_size", "REGISTRY", "build_model", "families", "family"]
