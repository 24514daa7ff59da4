"""Shared fixtures: the real MNIST files from ../shared/data (or $AETUNE_DATA), small subsets of them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from aetune.data import ImageData, load_data

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("AETUNE_DATA") or REPO.parent / "shared" / "data").resolve()
TRAIN_SIZE, TEST_SIZE = 3000, 1000


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {DATA_ROOT}; set AETUNE_DATA to a folder holding MNIST/raw")
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> ImageData:
    """3,000 training and 1,000 test images of the real MNIST."""
    return load_data("mnist", str(data_root), TRAIN_SIZE, TEST_SIZE, download=False)
