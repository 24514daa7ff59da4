"""Datasets from the real MNIST files, clear errors for bad roots and corrupt files, denoising noise."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from aetune.data import DataError, add_noise, load_data, resolve_data_root, to_float


def test_mnist_loads_as_uint8_tensors_with_labels(mnist):
    assert mnist.train_x.shape == (3000, 1, 28, 28) and mnist.test_x.shape == (1000, 1, 28, 28)
    assert mnist.train_x.dtype == torch.uint8 and mnist.train_y.dtype == torch.int64
    assert set(mnist.train_y.tolist()) == set(range(10))
    assert mnist.train_x.max() == 255 and mnist.shape == (1, 28, 28)


def test_full_split_sizes(data_root):
    full = load_data("mnist", str(data_root), download=False)
    assert (len(full.train_x), len(full.test_x)) == (60_000, 10_000)


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("AETUNE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("AETUNE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root() == tmp_path / "cache" / "aetune" / "data"


def test_wrong_root_gives_clear_error(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}.*MNIST/raw.*--data-root"):
        load_data("mnist", str(tmp_path), download=False)


def test_corrupt_file_gives_clear_error(tmp_path, data_root):
    shutil.copytree(data_root / "MNIST", tmp_path / "MNIST")
    for f in (tmp_path / "MNIST" / "raw").glob("t10k-images*"):
        f.write_bytes(f.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="MNIST/raw"):
        load_data("mnist", str(tmp_path), download=False)


def test_cli_wrong_root_is_one_line_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "aetune.train", "--data-root", str(tmp_path), "--no-download",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert str(tmp_path) in run.stderr


def test_noise_is_clipped_and_fresh_per_batch():
    clean = torch.full((64, 1, 28, 28), 0.5)
    generator = torch.Generator().manual_seed(0)
    first, second = add_noise(clean, 0.8, generator), add_noise(clean, 0.8, generator)
    assert first.min() == 0.0 and first.max() == 1.0  # strong noise hits both clip bounds
    assert not torch.equal(first, second)
    assert torch.equal(add_noise(clean, 0.0, generator), clean)
    assert 0.3 < (first - clean).abs().mean() < 0.5  # clipped N(0, 0.8^2) around 0.5


def test_to_float_scales_to_unit_interval(mnist):
    x = to_float(mnist.test_x[:10])
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
