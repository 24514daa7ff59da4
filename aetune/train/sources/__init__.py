"""Where images come from: a torchvision dataset, a folder of images, or a NumPy file. Every source ends as the same
`Source`: uint8 N x C x H x W images, int64 labels or None, and the test split when the source has one; the
dataset keys `channels` and `image_size` are applied here, so nothing downstream sees the source's own format.

`read_source` is the one entry; aetune.train.data splits what it returns.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from aetune.errors import UsageError

MEMORY_SHARE = 0.25  # of physical memory: the most one process may hold of images (every Ray worker holds its own)
LOAD_PEAK = 3  # loading peaks at ~3x the uint8 images (measured, BENCHMARKS.md section 8: 844 MiB for 293 MiB): the
# array as read, its channels-first copy, the reordered splits; the peak must fit in MEMORY_SHARE
RESAMPLING = "bilinear, antialiased"  # how image_size resizes (torchvision's resize on uint8 tensors)
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey, ITU-R BT.601 (PIL's "L" mode weights)


class DataError(UsageError):
    """The dataset is missing or unreadable; the message names the path and the fix."""


@dataclass(frozen=True)
class Source:
    """A dataset as read: images uint8 N x C x H x W; labels int64 N, or None when the source has none. test_x is
    None when the source has no test split of its own (aetune.train.data then carves one)."""

    x: torch.Tensor
    y: torch.Tensor | None
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    origin: str  # where the images came from, in words (summary.json and the report say it)
    read_bytes: int = 0  # the images as stored, before `channels` and `image_size`: the loading peak scales with them


def is_named(dataset: str) -> bool:
    from aetune.train.sources.torchvision import NAMED

    return dataset in NAMED


def read_source(dataset: str, data_root: Path, download: bool, channels: int | None,
                image_size: tuple[int, int] | None, layout: str = "auto", test: bool = True) -> Source:
    """The dataset's images with `channels` and `image_size` applied. `test=False`: a named dataset's test files
    are not read (a trial never reads them); a file or folder is read whole (its test split is carved from it).
    Not cached: aetune.train.data caches the splits, and a second copy of every image would double the memory."""
    if is_named(dataset):
        from aetune.train.sources import torchvision

        source = torchvision.read(dataset, data_root, download, test)
    else:
        path = Path(dataset).expanduser()
        if not path.exists():
            raise DataError(f"dataset: {dataset} does not exist; give a dataset name (see the configuration "
                            "reference), a .npy/.npz file or a folder of images")
        if path.is_dir():
            from aetune.train.sources import folder

            source = folder.read(path.resolve(), channels, image_size)
        elif path.suffix in (".npy", ".npz"):
            from aetune.train.sources import arrays

            source = arrays.read(path.resolve(), layout, channels, image_size)
        else:
            raise DataError(f"dataset: {dataset} is a file but not a .npy or .npz; give a NumPy file, a folder of "
                            "images or a dataset name")
    return shaped(source, channels, image_size)


SHAPE_CHUNK = 1024  # images converted and resized at a time: their float copies stay this small


def shaped(source: Source, channels: int | None, image_size: tuple[int, int] | None) -> Source:
    """The source with the dataset keys applied to both splits, a chunk of images at a time into one uint8 result
    (never a float copy of them all); the images themselves where the keys change nothing."""
    def apply(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        shape = (target_channels(x.shape[1], channels), *(image_size or x.shape[-2:]))
        if shape == tuple(x.shape[1:]):
            return x
        out = torch.empty((len(x), *shape), dtype=torch.uint8)
        for i in range(0, len(x), SHAPE_CHUNK):
            out[i:i + SHAPE_CHUNK] = resize(convert(x[i:i + SHAPE_CHUNK], channels), image_size)
        return out

    stored = source.x.numel() + (0 if source.test_x is None else source.test_x.numel())
    return Source(apply(source.x), source.y, apply(source.test_x), source.test_y, source.origin, stored)


def target_channels(have: int, channels: int | None) -> int:
    """The channels images of `have` channels end with: `channels`, or without it grey and RGB as they are and RGBA
    without its alpha. Any other count is refused: every figure, TensorBoard image and report tile shows grey or
    RGB."""
    if channels is None and have not in (1, 3, 4):
        raise DataError(f"the images have {have} channels; aetune takes grey (1), RGB (3) or RGBA (4, its alpha "
                        "dropped): if the axes were misread, set layout: nhwc or nchw (grey and alpha: channels: 1)")
    return channels or (3 if have == 4 else have)


def convert(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """N x C x H x W uint8 to target_channels: 1, grey by BT.601 luma (grey and alpha: the grey); 3, grey repeated,
    RGBA without its alpha."""
    have = images.shape[1]
    channels = target_channels(have, channels)
    if channels == have:
        return images
    if channels == 3 and have == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 3 and have == 4:
        return images[:, :3].contiguous()
    if channels == 1 and have == 2:  # grey and alpha
        return images[:, :1].contiguous()
    if channels == 1 and have in (3, 4):
        weights = torch.tensor(LUMA).view(1, 3, 1, 1)
        grey = (images[:, :3].float() * weights).sum(1, keepdim=True)
        return grey.round_().clamp_(0, 255).to(torch.uint8)
    raise DataError(f"channels: cannot convert images with {have} channels to {channels}; "
                    "drop `channels` or use 1 (grey) or 3 (RGB)")


def resize(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """N x C x H x W uint8 resized to size (H, W), bilinear and antialiased; a no-op at that size already."""
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    return TF.resize(images, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(what: str, shape: tuple[int, ...], total: int | None = None) -> None:
    """Refuse images whose loading peak (LOAD_PEAK x their uint8 copy) would take more than MEMORY_SHARE of the
    machine, before reading them."""
    need, total = int(torch.Size(shape).numel()), total or physical_memory()
    peak = LOAD_PEAK * need
    if peak > MEMORY_SHARE * total:
        raise DataError(f"{what}: {shape[0]} images of {' x '.join(map(str, shape[1:]))} take {need / 2**30:.1f} GiB "
                        f"as uint8 and about {LOAD_PEAK}x that ({peak / 2**30:.1f} GiB) while loading, more "
                        f"than {MEMORY_SHARE:.0%} of this machine's {total / 2**30:.1f} GiB (each worker keeps its own "
                        "copy); set a smaller image_size or channels: 1, or use fewer images")
