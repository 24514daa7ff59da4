"""Named datasets, downloaded and read through torchvision (as MNIST always was): each has its own test files."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from aetune.errors import first_line
from aetune.train.sources import DataError, Source


@dataclass(frozen=True)
class Named:
    cls: type
    shape: tuple[int, int, int]  # C x H x W of its images
    files: str  # what to put where, for the error message
    options: dict[str, Any] = field(default_factory=dict)  # constructor arguments besides root/download/split
    svhn: bool = False  # SVHN takes split="train"|"test" and keeps labels in .labels
    transposed: bool = False  # EMNIST stores each image transposed: turned upright here


NAMED = {
    "mnist": Named(datasets.MNIST, (1, 28, 28), "IDX files"),
    "fashion_mnist": Named(datasets.FashionMNIST, (1, 28, 28), "IDX files"),
    "kmnist": Named(datasets.KMNIST, (1, 28, 28), "IDX files"),
    "emnist": Named(datasets.EMNIST, (1, 28, 28), "gzip.zip (unpacked)", {"split": "letters"}, transposed=True),
    "cifar10": Named(datasets.CIFAR10, (3, 32, 32), "cifar-10-python.tar.gz (unpacked)"),
    "svhn": Named(datasets.SVHN, (3, 32, 32), "train_32x32.mat and test_32x32.mat", svhn=True),
}


def folder(name: str, root: Path) -> Path:
    """Where torchvision keeps the dataset's files under the data root."""
    cls = NAMED[name].cls
    if cls is datasets.CIFAR10:
        return root / "cifar-10-batches-py"
    return root if cls is datasets.SVHN else root / cls.__name__ / "raw"


def read(name: str, root: Path, download: bool, test: bool) -> Source:
    x, y = read_split(name, root, True, download)
    test_x, test_y = read_split(name, root, False, download) if test else (None, None)
    return Source(x, y, test_x, test_y, f"torchvision {NAMED[name].cls.__name__}"
                  + (f" ({NAMED[name].options['split']} split)" if "split" in NAMED[name].options else "")
                  + f" in {root}")


def read_split(name: str, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    named, where = NAMED[name], folder(name, root)
    split = {"split": "train" if train else "test"} if named.svhn else {"train": train}
    try:
        # torchvision prints download progress and mirror failures; keep them out of the user's terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            ds = named.cls(str(root), download=download, **named.options, **split)
        images = torch.as_tensor(ds.data)
        labels = torch.as_tensor(ds.labels if named.svhn else ds.targets, dtype=torch.int64)
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, AssertionError... for one cause
        fix = (f"put the {named.cls.__name__} {named.files} in {where} or point --data-root / AETUNE_DATA at "
               "their root")
        if not download:
            fix += " (or allow the download)"
        reason = "files not found" if "not found" in str(err) else first_line(err).rstrip(":")
        raise DataError(f"cannot read {name} from {where} ({reason}); {fix}") from None
    if images.ndim == 4 and images.shape[-1] == 3:  # CIFAR: N x H x W x C
        images = images.permute(0, 3, 1, 2)
    elif images.ndim == 3:
        images = (images.transpose(1, 2) if named.transposed else images).unsqueeze(1)
    if tuple(images.shape[1:]) != named.shape or len(images) != len(labels) or len(images) == 0:
        raise DataError(f"{name} in {where} is corrupt (images {tuple(images.shape)}, labels {len(labels)}); "
                        f"delete {where} and download it again")
    return images.contiguous(), labels
