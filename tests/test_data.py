"""Datasets from the real MNIST files, clear errors for bad roots and corrupt files, denoising noise."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from aetune.train.data import DataError, add_noise, load_data, resolve_data_root, to_float, validation_indices


def test_mnist_loads_as_uint8_tensors_with_labels(mnist):
    assert mnist.train_x.shape == (2700, 1, 28, 28) and mnist.val_x.shape == (300, 1, 28, 28)
    assert mnist.test_x.shape == (1000, 1, 28, 28)
    assert mnist.train_x.dtype == torch.uint8 and mnist.train_y.dtype == torch.int64
    assert set(mnist.train_y.tolist()) == set(range(10))
    assert mnist.train_x.max() == 255 and mnist.shape == (1, 28, 28)


def test_full_split_sizes(data_root):
    full = load_data("mnist", str(data_root), download=False)
    assert (len(full.train_x), len(full.val_x), len(full.test_x)) == (54_000, 6_000, 10_000)
    assert counts(full.split) == {"train": 54_000, "val": 6_000, "val_from": "train"}


def test_validation_is_held_out_of_the_training_images_in_use(data_root, mnist):
    raw = load_data("mnist", str(data_root), 3000, download=False, val_size=2999)  # every image but one is val
    pool = {bytes(x.numpy()) for x in torch.cat([raw.train_x, raw.val_x])}
    train, val = ({bytes(x.numpy()) for x in part} for part in (mnist.train_x, mnist.val_x))
    assert not train & val and train | val <= pool and len(train) + len(val) == 3000 - _duplicates(raw)
    again = load_data("mnist", str(data_root), 3000, 10, download=False)  # test_size does not move it
    assert torch.equal(again.val_x, mnist.val_x) and torch.equal(again.val_y, mnist.val_y)
    train_idx, val_idx = validation_indices(3000, None)
    assert len(val_idx) == 300 and val_idx.min() < 300 and val_idx.max() >= 2700  # spread by the permutation
    assert torch.equal(validation_indices(3000, None)[1], val_idx)  # the same every time: no trial seed in it
    assert torch.equal(validation_indices(3000, 300, "last")[1], torch.arange(2700, 3000))


def counts(split: dict) -> dict:
    """The split's image counts, without the dataset's description beside them."""
    return {key: split[key] for key in ("train", "val", "val_from")}


def _duplicates(data) -> int:
    images = [bytes(x.numpy()) for x in torch.cat([data.train_x, data.val_x])]
    return len(images) - len(set(images))


def test_last_split_takes_the_last_training_images(data_root):
    full = load_data("mnist", str(data_root), 1000, download=False, val_size=0, test=False)  # val = test here
    last = load_data("mnist", str(data_root), 1000, download=False, val_size=100, val_split="last")
    head = load_data("mnist", str(data_root), 900, download=False, val_size=1, val_split="last")
    assert torch.equal(last.train_x, torch.cat([head.train_x, head.val_x]))
    assert counts(last.split) == {"train": 900, "val": 100, "val_from": "train"} and full.val_from == "test"


def test_val_size_zero_validates_on_the_test_split(data_root):
    course = load_data("mnist", str(data_root), 1000, 500, download=False, val_size=0)
    assert torch.equal(course.val_x, course.test_x) and len(course.train_x) == 1000
    assert counts(course.split) == {"train": 1000, "val": 500, "val_from": "test"}


def test_a_trial_never_reads_the_test_files(tmp_path, data_root):
    shutil.copytree(data_root / "MNIST", tmp_path / "MNIST")
    for f in (tmp_path / "MNIST" / "raw").glob("t10k-*"):
        f.write_bytes(b"")  # present (torchvision checks) but unreadable
    trial = load_data("mnist", str(tmp_path), 500, download=False, test=False)
    assert trial.test_x is None and len(trial.val_x) == 50
    with pytest.raises(DataError, match="MNIST/raw"):
        load_data("mnist", str(tmp_path), 500, download=False)  # the evaluation does read them


@pytest.mark.parametrize("val_size", [500, 600])
def test_val_size_that_leaves_no_training_image_is_refused(data_root, val_size):
    with pytest.raises(DataError, match="val_size.*1..499"):
        load_data("mnist", str(data_root), 500, download=False, val_size=val_size)


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
