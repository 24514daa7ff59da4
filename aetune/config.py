"""The trial config: one flat record whose keys are the same in YAML, Ray trials, TensorBoard and checkpoints."""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aetune.errors import UsageError, quote
from aetune.models import REGISTRY  # model names only: importing it loads no torch
from aetune.numbers import is_int

LossName = Literal["bce", "mse"]
ActivationName = Literal["relu", "selu", "tanh", "linear"]
DecoderName = Literal["upsample", "transpose"]
DatasetName = Literal["mnist", "fashion_mnist", "kmnist"]
ValSplit = Literal["random", "last"]


class ConfigError(UsageError):
    """A trial config value is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class TrialConfig:
    model: str = "dense"  # a family of aetune.models.REGISTRY
    hidden_layers: tuple[int, ...] = ()  # empty: the shallow 784-code-784 autoencoder
    code_size: int = 32  # dense, vae, lstm and conv_vae; a conv code is the last feature map
    filters: tuple[int, ...] = (16, 8, 8)  # conv and conv_vae
    noise_factor: float = 0.0  # > 0 makes it a denoising autoencoder
    l1: float = 0.0  # > 0 makes it sparse (Keras activity_regularizer=l1)
    activation: ActivationName = "relu"  # hidden layers of the families that read it; linear: a linear autoencoder
    decoder: DecoderName = "upsample"  # conv decoders: conv + upsample, or strided transposed convs
    beta: float = 1.0  # weight of the KL term of the Gaussian families (beta-VAE); 1 is the plain VAE
    loss: LossName = "bce"
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 10
    seed: int = 0
    dataset: DatasetName = "mnist"
    train_size: int | None = None  # training images in use (the first N); None: the whole split
    val_size: int | None = None  # held out of those for selection; None: 10%; 0: validate on the test split
    val_split: ValSplit = "random"  # which: a fixed permutation (same for every trial), or the last val_size
    test_size: int | None = None  # test images evaluate reads (the first N); trials never read the test split
    eval_noise: float = 0.5  # val_denoise_bce corrupts validation inputs at this noise, whatever the trial trains on
    amp: bool = False  # bf16 autocast (CUDA, and CPUs with bf16 units)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys are {', '.join(sorted(known))}")
        clean = {name: _coerce(name, value) for name, value in values.items()}
        config = cls(**clean)
        config.check()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML/weights_only-safe values (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def check(self) -> None:
        _positive("code_size", self.code_size)
        _positive("batch_size", self.batch_size)
        _positive("epochs", self.epochs)
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr: must be a positive number, got {self.lr}")
        for name in ("noise_factor", "l1", "beta", "eval_noise"):
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed: must be an integer from 0 to 2**32 - 1 (what NumPy and Optuna take), "
                              f"got {quote(self.seed)}")
        if self.val_size is not None and self.val_size < 0:
            raise ConfigError(f"val_size: must be >= 0 (0 validates on the test split), got {self.val_size}")


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")


SEED_LIMIT = 2**32
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrialConfig)}
DATASETS = get_args(DatasetName)  # the torchvision datasets aetune.train.data reads
_CHOICES = {"model": tuple(REGISTRY), "loss": get_args(LossName), "dataset": DATASETS,
            "activation": get_args(ActivationName), "decoder": get_args(DecoderName), "val_split": get_args(ValSplit)}


def _coerce(name: str, value: Any) -> Any:
    """Check one value's type; YAML and Optuna hand over ints, floats, strings and lists."""
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ConfigError(f"{name}: unknown value {quote(value)}; choose one of {', '.join(_CHOICES[name])}")
        return value
    if name in ("hidden_layers", "filters"):
        if not isinstance(value, (list, tuple)) or not all(is_int(v) for v in value):
            raise ConfigError(f"{name}: must be a list of integers, e.g. [128, 64], got {quote(value)}")
        if any(v <= 0 for v in value):
            raise ConfigError(f"{name}: every layer size must be > 0, got {list(value)}")
        return tuple(int(v) for v in value)
    if name in ("train_size", "val_size", "test_size") and value is None:
        return None
    if name == "amp":
        if not isinstance(value, bool):
            raise ConfigError(f"amp: must be true or false, got {quote(value)}")
        return value
    if "float" in _FIELD_TYPES[name]:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name}: must be a number, got {quote(value)}")
        return float(value)
    if not is_int(value):
        raise ConfigError(f"{name}: must be an integer, got {quote(value)}")
    return int(value)
