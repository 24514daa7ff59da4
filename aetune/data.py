"""Datasets as uint8 tensors, loaded once per process and kept resident on the trial's device."""
from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from aetune.errors import UsageError, first_line

DATASETS = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "kmnist": datasets.KMNIST}


class DataError(UsageError):
    """The dataset is missing or unreadable; the message names the path and the fix."""


@dataclass(frozen=True)
class ImageData:
    """Both splits of one dataset: images as uint8 N x C x H x W, labels as int64."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> "ImageData":
        move = functools.partial(torch.Tensor.to, device=device, non_blocking=True)
        return ImageData(self.name, move(self.train_x), move(self.train_y), move(self.test_x), move(self.test_y))


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
) -> ImageData:
    """Load a torchvision dataset once per process (cached: Ray reuses worker processes across trials)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = resolve_data_root(data_root)
    train_x, train_y = _read_split(name, root, train=True, download=download)
    test_x, test_y = _read_split(name, root, train=False, download=download)
    return ImageData(name, train_x[:train_size], train_y[:train_size], test_x[:test_size], test_y[:test_size])


def _read_split(name: str, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    cls = DATASETS[name]
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
