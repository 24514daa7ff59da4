"""Datasets as uint8 tensors, loaded once per process and kept resident on the trial's device.

Three splits: train | val | test. The validation images are held out of the training images in use by a
permutation that depends only on how many there are and `val_size` (never on a trial's seed), so every trial of
every variant, and the evaluation, see the same ones. Trials read train and val; only aetune.evaluate reads test.
`val_size: 0` is the course protocol: validation is the test split, and every output says so.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from aetune.config import TrialConfig
from aetune.errors import UsageError, first_line

DATASET_CLASSES = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "kmnist": datasets.KMNIST}


class DataError(UsageError):
    """The dataset is missing or unreadable; the message names the path and the fix."""


SPLIT_SEED = 0  # the validation permutation's seed: a constant, so the split never depends on a trial
VAL_FRACTION = 0.1  # val_size when it is not given


@dataclass(frozen=True)
class ImageData:
    """The splits of one dataset: images as uint8 N x C x H x W, labels as int64; test is None in a trial."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    val_from: str = "train"  # "test" under val_size: 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def split(self) -> dict[str, int | str]:
        """What summary.json records of the split."""
        return {"train": len(self.train_x), "val": len(self.val_x), "val_from": self.val_from}

    def to(self, device: torch.device | str) -> "ImageData":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return ImageData(self.name, move(self.train_x), move(self.train_y), move(self.val_x), move(self.val_y),
                         move(self.test_x), move(self.test_y), self.val_from)


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """--data-root, else $AETUNE_DATA, else a per-user cache directory; always absolute (Ray workers chdir)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aetune" / "data"
    return Path(data_root or os.environ.get("AETUNE_DATA") or cache).expanduser().resolve()


@functools.lru_cache(maxsize=4)
def load_data(
    name: str = "mnist",
    data_root: str | os.PathLike | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    download: bool = True,
    val_size: int | None = None,
    val_split: str = "random",
    test: bool = True,
) -> ImageData:
    """The three splits (cached per process: Ray reuses worker processes across trials). `test=False` is what a
    trial asks for: the test files are then not even read, unless val_size 0 makes them the validation split."""
    if name not in DATASET_CLASSES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_CLASSES)}")
    root = resolve_data_root(data_root)
    images, labels = _read_split(name, root, True, download)
    images, labels = images[:train_size], labels[:train_size]
    test_x = test_y = None
    if test or val_size == 0:
        test_x, test_y = _read_split(name, root, False, download)
        test_x, test_y = test_x[:test_size], test_y[:test_size]
    if val_size == 0:
        return ImageData(name, images, labels, test_x, test_y, test_x if test else None, test_y if test else None,
                         val_from="test")
    train_idx, val_idx = validation_indices(len(images), val_size, val_split)
    return ImageData(name, images[train_idx], labels[train_idx], images[val_idx], labels[val_idx], test_x, test_y)


def trial_data(config: TrialConfig, data_root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """What a trial of this config reads: its training and validation images (the test split only under
    val_size 0). The driver calls it too, so a missing file or a val_size that leaves no training image is
    found before any trial starts."""
    return load_data(config.dataset, str(data_root) if data_root else None, config.train_size, config.test_size,
                     download, config.val_size, config.val_split, test=False)


def validation_indices(n: int, val_size: int | None, val_split: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into the n training images in use, each in ascending order."""
    size = round(VAL_FRACTION * n) if val_size is None else val_size
    if not 0 < size < n:
        raise DataError(f"val_size: {size} validation images cannot be held out of {n} training images in use; "
                        f"choose 1..{n - 1} (or 0 to validate on the test split)")
    order = torch.arange(n) if val_split == "last" else torch.randperm(n, generator=torch.Generator().manual_seed(
        SPLIT_SEED))
    return order[:n - size].sort().values, order[n - size:].sort().values


@functools.lru_cache(maxsize=8)
def _read_split(name: str, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    cls = DATASET_CLASSES[name]
    where = root / cls.__name__ / "raw"
    try:
        # torchvision prints download progress and mirror failures; keep them out of the user's terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            ds = cls(str(root), train=train, download=download)
        images = ds.data if isinstance(ds.data, torch.Tensor) else torch.as_tensor(ds.data)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, AssertionError... for one cause
        fix = f"put the {cls.__name__} IDX files in {where} or point --data-root / AETUNE_DATA at their root"
        if not download:
            fix += " (or allow the download)"
        reason = "files not found" if "Dataset not found" in str(err) else first_line(err).rstrip(":")
        raise DataError(f"cannot read {name} from {where} ({reason}); {fix}") from None
    if images.ndim != 3 or len(images) != len(labels) or len(images) == 0:
        raise DataError(f"{name} in {where} is corrupt (images {tuple(images.shape)}, labels {len(labels)}); "
                        f"delete {where} and download it again")
    return images.unsqueeze(1).contiguous(), labels


def add_noise(images: torch.Tensor, noise_factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising input: x + noise_factor * N(0, 1), clipped to [0, 1]; fresh noise on every call."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return images.add(noise, alpha=noise_factor).clamp_(0.0, 1.0)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], on the images' device."""
    return images.float().div_(255.0)
