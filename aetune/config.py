"""The trial config: one flat record whose keys are the same in YAML, Ray trials, TensorBoard and checkpoints."""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aetune.errors import UsageError, quote
from aetune.models import REGISTRY  # model names only: importing it loads no torch
from aetune.numbers import is_int

LossName = Literal["bce", "mse"]
ActivationName = Literal["relu", "selu", "tanh", "linear"]
DecoderName = Literal["upsample", "transpose"]
DatasetName = Literal["mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "svhn"]  # else a file or folder
LayoutName = Literal["auto", "nhwc", "nchw"]
DATA_SUFFIXES = (".npy", ".npz")
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
    dataset: str = "mnist"  # a DatasetName (torchvision), or the path of a .npy/.npz file or a folder of images
    channels: int | None = None  # 1: grey, 3: RGB (converted); None: as the dataset stores them
    image_size: tuple[int, int] | None = None  # resize to H x W (bilinear, antialiased); None: as stored
    layout: LayoutName = "auto"  # axes of a 4-D NumPy array: nhwc, nchw, or auto (aetune.train.sources.arrays)
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
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels: 1 (grey) or 3 (RGB), got {self.channels}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) <= 0):
            raise ConfigError(f"image_size: give one size > 0 or [height, width], got {list(self.image_size)}")
        if self.val_size is not None and self.val_size < 0:
            raise ConfigError(f"val_size: must be >= 0 (0 validates on the test split), got {self.val_size}")


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")


SEED_LIMIT = 2**32
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrialConfig)}
DATASETS = get_args(DatasetName)  # the torchvision datasets aetune.train.sources reads by name
_CHOICES = {"model": tuple(REGISTRY), "loss": get_args(LossName), "activation": get_args(ActivationName),
            "decoder": get_args(DecoderName), "val_split": get_args(ValSplit), "layout": get_args(LayoutName)}


def is_dataset_path(value: str) -> bool:
    """A dataset given as a path rather than a name: a NumPy file, or anything with a folder separator or that
    exists (a folder of images). Nothing is read here."""
    return (value.endswith(DATA_SUFFIXES) or "/" in value or os.sep in value or value.startswith("~")
            or os.path.exists(value))


def _coerce(name: str, value: Any) -> Any:
    """Check one value's type; YAML and Optuna hand over ints, floats, strings and lists."""
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ConfigError(f"{name}: unknown value {quote(value)}; choose one of {', '.join(_CHOICES[name])}")
        return value
    if name == "dataset":
        if not isinstance(value, str) or not (value in DATASETS or is_dataset_path(value)):
            raise ConfigError(f"dataset: unknown {value!r}; use one of {', '.join(DATASETS)}, the path of a "
                              ".npy/.npz file, or a folder of images")
        return value
    if name == "image_size":
        if value is None:
            return None
        size = [value] if is_int(value) else value
        if not isinstance(size, (list, tuple)) or len(size) not in (1, 2) or not all(is_int(v) for v in size):
            raise ConfigError(f"image_size: one integer (square) or [height, width], got {value!r}")
        return (int(size[0]), int(size[-1]))
    if name == "channels" and value is None:
        return None
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
