"""A folder of images (PNG, JPEG, anything Pillow reads). Labels: one subfolder per class (named in sorted order, as
torchvision's ImageFolder does); a flat folder is unlabelled. A `train/` + `test/` pair gives the two splits, each
laid out the same way; otherwise aetune.train.data carves the test split.

Every file is opened once for its header (size, mode) before any is decoded, so a bad folder (mixed sizes without
image_size, files that are not images, 32-bit or float pixels, too many pixels for memory) fails at once, naming the
files. 16-bit grey images (PNG's I;16) keep their top 8 bits (value >> 8: 65535 -> 255), not Pillow's "L" conversion,
which clips every value above 255 to white; 32-bit integer (I) and float (F) images have no known range: refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from aetune.train.sources import DataError, Source, check_memory

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # Pillow modes without colour
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # scaled to 8 bits by >> 8
NO_RANGE = ("I", "F")  # 32-bit integers and floats: refused
SHOWN = 3  # files named in an error


def read(path: Path, channels: int | None, image_size: tuple[int, int] | None) -> Source:
    if (path / "train").is_dir() and (path / "test").is_dir():
        train, test = (_listing(path / part) for part in ("train", "test"))
        if bool(train[2]) != bool(test[2]):
            raise DataError(f"dataset: {path}: train/ and test/ must both have class subfolders or both be flat")
        if train[2] != test[2]:
            raise DataError(f"dataset: {path}: train/ and test/ have different class subfolders "
                            f"({', '.join(sorted(set(train[2]) ^ set(test[2]))[:SHOWN])}...); give both the same")
        mode, size = _mode_and_size(path, train[0] + test[0], channels, image_size)
        x, y = _decode(path, *train[:2], mode, size)
        test_x, test_y = _decode(path, *test[:2], mode, size)
        return Source(x, y, test_x, test_y, _origin(path, train[2], "train/ and test/ subfolders"))
    files, labels, classes = _listing(path)
    mode, size = _mode_and_size(path, files, channels, image_size)
    x, y = _decode(path, files, labels, mode, size)
    return Source(x, y, None, None, _origin(path, classes, ""))


def _origin(path: Path, classes: list[str], split: str) -> str:
    labels = (f"{len(classes)} class subfolders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
              if classes else "no labels (a flat folder)")
    return f"image folder {path}: {labels}" + (f", {split}" if split else "")


def _listing(path: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """The image files (sorted), their labels (the index of their class subfolder's name, in sorted order) or None
    for a flat folder, and the class names. Hidden files and folders are skipped."""
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    folders, loose = [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]
    if folders and loose:
        raise DataError(f"dataset: {path} holds both files ({_names(loose)}) and subfolders; put every image in a "
                        "class subfolder, or use a flat folder for unlabelled images")
    members = [[p for p in sorted(d.rglob("*")) if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(d).parts)] for d in folders]
    files = [f for group in members for f in group] if folders else loose
    labels = [i for i, group in enumerate(members) for _ in group] if folders else None
    if not files:
        raise DataError(f"dataset: {path} holds no images; put PNG/JPEG files in it (one subfolder per class for "
                        "labels)")
    return files, labels, [d.name for d in folders]


def _names(files: list[Path]) -> str:
    return ", ".join(f.name for f in files[:SHOWN]) + (f" and {len(files) - SHOWN} more" if len(files) > SHOWN else "")


def _mode_and_size(path: Path, files: list[Path], channels: int | None,
                   image_size: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
    """The Pillow mode every image is converted to and the (H, W) they end at, from the headers alone."""
    sizes, modes, bad, wide = {}, set(), [], []
    for f in files:
        try:
            with Image.open(f) as image:
                sizes.setdefault((image.height, image.width), f)
                modes.add(image.mode)
                if image.mode in NO_RANGE:
                    wide.append(f)
        except (UnidentifiedImageError, OSError):
            bad.append(f)
    if bad:
        raise DataError(f"dataset: {path}: {len(bad)} file(s) are not readable images ({_names(bad)}); remove them "
                        "or convert them to PNG/JPEG")
    if wide:
        raise DataError(f"dataset: {path}: {len(wide)} file(s) hold 32-bit integer or float pixels ({_names(wide)}), "
                        "whose range is unknown; save them as 8- or 16-bit PNG, or as a .npy of floats in [0, 1]")
    if image_size is None and len(sizes) > 1:
        (a, fa), (b, fb) = list(sizes.items())[:2]
        raise DataError(f"dataset: {path} mixes image sizes ({a[0]}x{a[1]} {fa.name}, {b[0]}x{b[1]} {fb.name}, "
                        f"{len(sizes)} sizes in all); set image_size (e.g. {min(a + b)}) to resize them")
    size = image_size or next(iter(sizes))
    colour = channels == 3 or (channels is None and not modes <= set(GREY_MODES))
    check_memory(f"dataset: {path}", (len(files), 3 if colour else 1, *size))
    return ("RGB" if colour else "L"), size


def _decode(path: Path, files: list[Path], labels: list[int] | None, mode: str,
            size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 N x C x H x W (resized by Pillow's antialiased bilinear where needed) and the labels as a tensor."""
    out = np.empty((len(files), size[0], size[1], 3 if mode == "RGB" else 1), np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as image:
                if image.mode in SIXTEEN_BIT:  # the top 8 bits: "L" would clip every value above 255
                    image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
                image = image.convert(mode)
                if (image.height, image.width) != size:
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                out[i] = np.asarray(image).reshape(out.shape[1:])
        except OSError as err:  # a header that read but pixels that do not (a truncated file)
            raise DataError(f"dataset: {path}: cannot decode {f.relative_to(path)} ({err}); remove or replace it") \
                from None
    return (torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(),
            None if labels is None else torch.tensor(labels, dtype=torch.int64))
