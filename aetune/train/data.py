"""Datasets as uint8 tensors, loaded once per process and kept resident on the trial's device.

Where the images come from (a torchvision dataset, a folder of images, a NumPy file) is aetune.train.sources' job;
here they are split. Three splits: train | val | test. A file's or folder's images (and its own test split) are first
put in a fixed order, a permutation seeded by SOURCE_ORDER_SEED (never a trial's): their stored order means nothing
and is often by class (a folder is read class subfolder by class subfolder), so cutting it (`train_size`,
`test_size`, `val_split: last`) would keep a few classes. A torchvision dataset keeps its official order (its
published splits, not sorted by class), so its results stay comparable with others'. A source without a test split
of its own has one carved from its images by a fixed permutation (TEST_FRACTION of them, seed TEST_SPLIT_SEED: never
a trial's). The validation images are held out of the training images in use by a permutation that depends only on
how many there are and `val_size` (never on a trial's seed), so every trial of every variant, and the evaluation,
see the same ones. Trials read train and val; only aetune.evaluate reads test. `val_size: 0` is the course protocol:
validation is the test split, and every output says so.
Labels are optional: an unlabelled dataset has None for every *_y.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from aetune.config import TrialConfig
from aetune.train.sources import LOAD_PEAK, DataError, is_named, read_source

__all__ = ["DataError", "ImageData", "add_noise", "load_data", "to_float", "trial_data", "validation_indices"]

SPLIT_SEED = 0  # the validation permutation's seed: a constant, so the split never depends on a trial
VAL_FRACTION = 0.1  # val_size when it is not given
TEST_SPLIT_SEED = 0  # the carved test split's permutation seed (sources without test files): a constant too
TEST_FRACTION = 0.2  # of a source's images carved out as its test split when it has none
SOURCE_ORDER_SEED = 0  # the fixed order of a file's or folder's images: a constant, never a trial's seed


@dataclass(frozen=True)
class ImageData:
    """The splits of one dataset: images as uint8 N x C x H x W, labels as int64 (None: the dataset has none);
    test is None in a trial."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor | None
    val_x: torch.Tensor
    val_y: torch.Tensor | None
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    val_from: str = "train"  # "test" under val_size: 0
    test_from: str = "files"  # "files": the source's own test split; else how it was carved
    origin: str = ""  # where the images came from, in words
    read: int = 0  # images the source held as read, before any cut: a worker's loading peak scales with them
    read_bytes: int = 0  # ... and their bytes as stored (before `channels` and `image_size`)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def labelled(self) -> bool:
        return self.train_y is not None

    @property
    def split(self) -> dict[str, int | str | list]:
        """What summary.json records of the split, and of the dataset it came from."""
        return {"train": len(self.train_x), "val": len(self.val_x), "val_from": self.val_from,
                "test_from": self.test_from, "dataset": self.name, "source": self.origin, "shape": list(self.shape),
                "labels": self.labelled, "read": self.read, "read_bytes": self.read_bytes}

    def to(self, device: torch.device | str) -> "ImageData":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return replace(self, train_x=move(self.train_x), train_y=move(self.train_y), val_x=move(self.val_x),
                       val_y=move(self.val_y), test_x=move(self.test_x), test_y=move(self.test_y))


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
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    layout: str = "auto",
) -> ImageData:
    """The three splits (cached per process: Ray reuses worker processes across trials). `test=False` is what a
    trial asks for: a named dataset's test files are then not even read, unless val_size 0 makes them the
    validation split. `name`: a torchvision dataset's name, or the path of a NumPy file or an image folder."""
    source = read_source(name, resolve_data_root(data_root), download, channels, image_size, layout,
                         test or val_size == 0 or not is_named(name))  # a file is read whole either way
    images, labels, test_x, test_y, test_from = source.x, source.y, source.test_x, source.test_y, "files"
    origin, read = source.origin, len(source.x) + (0 if source.test_x is None else len(source.test_x))
    read_bytes = source.read_bytes
    del source  # the reordered copies replace the images as read: one copy at a time
    if not is_named(name):  # a file's or folder's order means nothing (often by class): a fixed seeded one
        images, labels = in_fixed_order(images, labels)
        if test_x is not None:
            test_x, test_y = in_fixed_order(test_x, test_y)
    if test_x is None and not is_named(name):  # no test split of its own: carve one, never trained on
        train_idx, test_idx = carve_test(name, len(images))
        test_x, test_y = images[test_idx], _take(labels, test_idx)
        images, labels = images[train_idx], _take(labels, train_idx)
        test_from = (f"carved: {TEST_FRACTION:.0%} of the {len(train_idx) + len(test_idx)} images by a fixed "
                     f"permutation (seed {TEST_SPLIT_SEED})")
    if not (test or val_size == 0):
        test_x = test_y = None
    images, labels = images[:train_size], _take(labels, slice(train_size))
    if test_x is not None:
        test_x, test_y = test_x[:test_size], _take(test_y, slice(test_size))
    common = {"test_from": test_from, "origin": origin, "read": read, "read_bytes": read_bytes}
    if val_size == 0:
        return ImageData(name, images, labels, test_x, test_y, test_x if test else None, test_y if test else None,
                         val_from="test", **common)
    train_idx, val_idx = validation_indices(len(images), val_size, val_split)
    return ImageData(name, images[train_idx], _take(labels, train_idx), images[val_idx], _take(labels, val_idx),
                     test_x, test_y, **common)


def trial_data(config: TrialConfig, data_root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """What a trial of this config reads: its training and validation images (the test split only under
    val_size 0). The driver calls it too, so a missing file or a val_size that leaves no training image is
    found before any trial starts."""
    named = is_named(config.dataset)  # a file needs no root and downloads nothing: one cache entry for every call
    return load_data(config.dataset, str(data_root) if data_root and named else None, config.train_size,
                     config.test_size, download or not named, config.val_size, config.val_split, test=False,
                     **dataset_keys(config))


def worker_bytes(split: dict) -> int:
    """The most a trial's worker holds of its data (`split`: ImageData.split). Reading: LOAD_PEAK x the uint8
    images it read, as stored or as shaped (`channels`, `image_size`), whichever is larger. Training: its uint8
    splits and an epoch's shuffled copy of the training images, plus the validation images three times as float32
    while the fixed noisy copy is made (clean, noise, noisy: aetune.train.trainer)."""
    pixels = math.prod(split["shape"])
    reading = LOAD_PEAK * max(split["read_bytes"], split["read"] * pixels)
    training = (2 * split["train"] + split["val"]) * pixels + 3 * 4 * split["val"] * pixels
    return max(reading, training)


def dataset_keys(config: TrialConfig) -> dict:
    """The trial config keys that say how the dataset's images are read (load_data's keyword arguments)."""
    return {"channels": config.channels, "image_size": config.image_size, "layout": config.layout}


def in_fixed_order(images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images (and labels) permuted by SOURCE_ORDER_SEED: the same order for every trial and the evaluation."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SOURCE_ORDER_SEED))
    return images[order], _take(labels, order)


def carve_test(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices of a source without a test split, each ascending; the same for every trial."""
    size = round(TEST_FRACTION * n)
    if size < 1 or n - size < 2:
        raise DataError(f"dataset: {name} has {n} image(s): too few to carve a test split ({TEST_FRACTION:.0%}) and "
                        "keep training and validation images; add images, or give a test split of its own "
                        "(x_test in the .npz, or train/ and test/ folders)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SPLIT_SEED))
    return order[:n - size].sort().values, order[n - size:].sort().values


def _take(labels: torch.Tensor | None, index) -> torch.Tensor | None:
    return None if labels is None else labels[index]


def validation_indices(n: int, val_size: int | None, val_split: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into the n training images in use, each in ascending order."""
    size = round(VAL_FRACTION * n) if val_size is None else val_size
    if not 0 < size < n:
        raise DataError(f"val_size: {size} validation images cannot be held out of {n} training images in use; "
                        f"choose 1..{n - 1} (or 0 to validate on the test split)")
    order = torch.arange(n) if val_split == "last" else torch.randperm(n, generator=torch.Generator().manual_seed(
        SPLIT_SEED))
    return order[:n - size].sort().values, order[n - size:].sort().values


def add_noise(images: torch.Tensor, noise_factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising input: x + noise_factor * N(0, 1), clipped to [0, 1]; fresh noise on every call."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return images.add(noise, alpha=noise_factor).clamp_(0.0, 1.0)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], on the images' device."""
    return images.float().div_(255.0)
