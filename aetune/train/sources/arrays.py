"""NumPy files. A `.npy` holds the images alone (unlabelled). A `.npz` holds `x` and optionally `y` (integer labels),
`x_test` and `y_test` (a test split of its own; otherwise aetune.train.data carves one). The stored order means
nothing: aetune.train.data puts the images in a fixed seeded order before it cuts or carves them.

Values: uint8 in [0, 255], or floats in [0, 1] (scaled by 255 and rounded). Axes: N x H x W (grey), or four axes
read by `layout`: nhwc, nchw, or auto (the default): channels last when the last axis has 1, 3 or 4 entries, else
channels first when the second axis has, else refused (set layout).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from aetune.train.sources import DataError, Source, check_memory

KEYS = ("x", "y", "x_test", "y_test")
CHANNEL_COUNTS = (1, 3, 4)  # what layout: auto takes for a channel axis
CHUNK = 4096  # images converted from float at a time: no float copy of the whole array


def read(path: Path, layout: str, channels: int | None, image_size: tuple[int, int] | None) -> Source:
    where = f"dataset: {path}"
    try:
        arrays = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{where}: not a readable NumPy file ({err}); save it with numpy.save/savez") from None
    if isinstance(arrays, np.ndarray):
        arrays = {"x": arrays}
    else:
        unknown = sorted(set(arrays.files) - set(KEYS))
        if "x" not in arrays.files:
            raise DataError(f"{where} has no array named x (it has {', '.join(arrays.files) or 'none'}); save the "
                            "images as x, e.g. numpy.savez(path, x=images, y=labels)")
        if unknown:
            raise DataError(f"{where}: unknown array(s) {', '.join(unknown)}; use x, y, x_test and y_test")
        check_memory(f"{where}: x", _stored_shape(arrays, "x"))  # before the array is read
        arrays = {key: arrays[key] for key in arrays.files}
    if ("x_test" in arrays) != ("y_test" in arrays) and "y" in arrays:
        raise DataError(f"{where} has y but x_test without y_test (or the reverse); give both or neither")
    if "y_test" in arrays and "x_test" not in arrays:
        raise DataError(f"{where} has y_test without x_test; give both or neither")
    x, test_x = (_images(arrays[key], layout, f"{where}: {key}") if key in arrays else None for key in ("x", "x_test"))
    y = _labels(arrays.get("y"), len(x), f"{where}: y", "x")
    test_y = _labels(arrays.get("y_test"), 0 if test_x is None else len(test_x), f"{where}: y_test", "x_test")
    if test_x is not None and test_x.shape[1:] != x.shape[1:] and image_size is None:
        raise DataError(f"{where}: x_test images are {tuple(test_x.shape[1:])}, x images {tuple(x.shape[1:])}; "
                        "give both the same shape")
    labelled = "labels y" if y is not None else "no labels"
    test = ", its own x_test" if test_x is not None else ""
    return Source(x, y, test_x, test_y, f"NumPy file {path}: x {'x'.join(map(str, x.shape[1:]))}, {labelled}{test}")


def _images(array: np.ndarray, layout: str, where: str) -> torch.Tensor:
    """Any accepted array -> uint8 N x C x H x W, checked before it is converted."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        array = array.transpose(0, 3, 1, 2) if _channels_last(array.shape, layout, where) else array
    else:
        raise DataError(f"{where} has shape {array.shape}; give N x H x W, N x H x W x C or N x C x H x W")
    if len(array) == 0:
        raise DataError(f"{where} holds no images")
    check_memory(where, array.shape)
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{where} is {array.dtype}; give uint8 in [0, 255] or floats in [0, 1] "
                        "(e.g. x.astype(numpy.uint8))")
    out = np.empty(array.shape, np.uint8)
    for i in range(0, len(array), CHUNK):
        chunk = np.asarray(array[i:i + CHUNK], dtype=np.float32)
        if not np.isfinite(chunk).all():
            raise DataError(f"{where} holds NaN or infinite values (first in image {i + _first_bad(chunk)}); "
                            "replace them")
        if chunk.min() < 0 or chunk.max() > 1:
            raise DataError(f"{where}: float values must lie in [0, 1], found {chunk.min():.4g}..{chunk.max():.4g}; "
                            "scale them (or save uint8 in [0, 255])")
        out[i:i + CHUNK] = np.rint(chunk * 255)
    return torch.from_numpy(out)


def _stored_shape(npz: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """An .npz member's shape from its header alone."""
    with npz.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        return read_header(f)[0]


def _channels_last(shape: tuple[int, ...], layout: str, where: str) -> bool:
    if layout != "auto":
        return layout == "nhwc"
    if shape[3] in CHANNEL_COUNTS:
        return True
    if shape[1] in CHANNEL_COUNTS:
        return False
    raise DataError(f"{where} has shape {shape}: no axis of 1, 3 or 4 channels, so the layout is unclear; set "
                    "layout: nhwc or nchw")


def _first_bad(chunk: np.ndarray) -> int:
    return int(np.argmin(np.isfinite(chunk).reshape(len(chunk), -1).all(1)))


def _labels(array: np.ndarray | None, n: int, where: str, images: str) -> torch.Tensor | None:
    if array is None:
        return None
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where} must be one integer label per image, got {array.dtype} of shape {array.shape}")
    if len(array) != n:
        raise DataError(f"{where} has {len(array)} labels for {n} images in {images}; give one per image")
    return torch.from_numpy(np.asarray(array, dtype=np.int64))
