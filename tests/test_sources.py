"""Your own data: scikit-learn's 8x8 digits as a .npz and as a PNG folder, a synthetic RGB folder, the torchvision
names, the dataset keys, and every bad input as one line with exit status 2. The three datasets each go through a
real search and evaluation, read back from TensorBoard's event files and the report's PNGs."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_search, write_space
from PIL import Image, ImageDraw
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aetune.config import DATASETS, ConfigError, TrialConfig
from aetune.evaluate.__main__ import main as evaluate_main
from aetune.evaluate.model_figures import GRID, SHOW, STEPS, TOP, interpolation_pairs, showcase
from aetune.search.__main__ import main as search_main
from aetune.train.data import TEST_FRACTION, DataError, load_data
from aetune.train.logger import IMAGE_TAG
from aetune.train.sources import check_memory
from aetune.train.sources.torchvision import NAMED

SHAPES = 240  # synthetic RGB images: a few seconds of training


# --- the datasets --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (offline), as uint8 in [0, 255]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.rint(d.images * 255 / 16).astype(np.uint8), d.target


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory, digits_arrays) -> Path:
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x=digits_arrays[0], y=digits_arrays[1])
    return path


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory, digits_arrays) -> Path:
    """The same digits as PNG files, one subfolder per class."""
    root = tmp_path_factory.mktemp("digits") / "digits"
    for i, (image, label) in enumerate(zip(*digits_arrays)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    """32x32 RGB images of coloured circles and squares on coloured backgrounds, flat: unlabelled."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(SHAPES):
        image = Image.new("RGB", (32, 32), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        x, y, r = (int(v) for v in rng.integers((6, 6, 4), (26, 26, 10)))
        box, colour = (x - r, y - r, x + r, y + r), tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        image.save(root / f"{i:03d}.png")
    return root


# --- reading -------------------------------------------------------------------------------------------------------

def test_the_npz_and_the_folder_give_the_same_digits(digits_npz, digits_folder, digits_arrays):
    a, b = load_data(str(digits_npz)), load_data(str(digits_folder))
    for data in (a, b):
        assert data.shape == (1, 8, 8) and data.train_x.dtype == torch.uint8 and data.labelled
        n = len(data.train_x) + len(data.val_x) + len(data.test_x)
        assert n == 1797 and len(data.test_x) == round(TEST_FRACTION * 1797)
        assert data.split["test_from"].startswith("carved") and data.split["shape"] == [1, 8, 8]
    assert a.split["dataset"] == str(digits_npz) and "NumPy file" in a.split["source"]
    assert "10 class subfolders" in b.origin
    # The same images with the same labels, whichever file order each source has.
    def pairs(data):
        return sorted((bytes(x.numpy()), int(y)) for x, y in zip(torch.cat([data.train_x, data.val_x, data.test_x]),
                                                                 torch.cat([data.train_y, data.val_y, data.test_y])))
    assert pairs(a) == pairs(b) == sorted((bytes(x), int(y)) for x, y in zip(*digits_arrays))
    again = load_data(str(digits_npz), val_size=50)  # the carved test split never depends on val_size or a seed
    assert torch.equal(again.test_x, a.test_x)


def test_an_unlabelled_rgb_folder(shapes_folder):
    data = load_data(str(shapes_folder))
    assert data.shape == (3, 32, 32) and not data.labelled and data.train_y is None and data.test_y is None
    assert "no labels" in data.origin
    assert (data.train_x[:, 0] != data.train_x[:, 1]).any()  # colour kept


def test_layouts_dtypes_and_the_dataset_keys(tmp_path, digits_arrays):
    x = digits_arrays[0][:100]
    rgb = np.stack([x, 255 - x, x // 2], axis=-1)  # N x H x W x 3
    np.savez(tmp_path / "nhwc.npz", x=rgb)
    np.savez(tmp_path / "nchw.npz", x=rgb.transpose(0, 3, 1, 2))
    np.save(tmp_path / "float.npy", x / 255.0)
    last, first = load_data(str(tmp_path / "nhwc.npz")), load_data(str(tmp_path / "nchw.npz"))
    assert last.shape == first.shape == (3, 8, 8) and torch.equal(last.train_x, first.train_x)
    assert torch.equal(last.train_x[:, 1], 255 - last.train_x[:, 0])
    as_float = load_data(str(tmp_path / "float.npy"))
    assert as_float.shape == (1, 8, 8) and torch.equal(as_float.train_x[:, 0], last.train_x[:, 0])
    grey = load_data(str(tmp_path / "nhwc.npz"), channels=1, image_size=(16, 12))
    assert grey.shape == (1, 16, 12)
    with pytest.raises(DataError, match="the images have 8 channels.*set layout"):  # 3 x 8 x 8 read as H x W x C
        load_data(str(tmp_path / "nchw.npz"), layout="nhwc")
    np.savez(tmp_path / "rgba.npz", x=np.concatenate([rgb, np.full_like(rgb[..., :1], 128)], axis=-1))
    rgba = load_data(str(tmp_path / "rgba.npz"))  # its alpha dropped: every figure draws grey or RGB
    assert rgba.shape == (3, 8, 8) and torch.equal(rgba.train_x, last.train_x)
    np.savez(tmp_path / "grey_alpha.npz", x=np.stack([x, np.full_like(x, 7)], axis=1))  # N x 2 x H x W
    assert torch.equal(load_data(str(tmp_path / "grey_alpha.npz"), channels=1, layout="nchw").train_x,
                       as_float.train_x)


def test_a_train_and_test_folder_pair_keeps_its_own_test_split(tmp_path, digits_arrays):
    for part, images in (("train", digits_arrays[0][:60]), ("test", digits_arrays[0][60:80])):
        for i, image in enumerate(images):
            (tmp_path / "pair" / part / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((10, 10)).save(tmp_path / "pair" / part / f"c{i % 2}" / f"{i}.png")
    data = load_data(str(tmp_path / "pair"), image_size=(8, 8))
    assert len(data.test_x) == 20 and len(data.train_x) + len(data.val_x) == 60
    assert data.test_from == "files" and data.shape == (1, 8, 8)
    assert set(data.test_y.tolist()) == {0, 1}


def test_class_sorted_files_and_folders_give_every_class_to_every_split(tmp_path, digits_arrays):
    """A folder is read class by class and a file may be sorted by label: cutting that order (train_size,
    test_size, val_split: last) must not keep a few classes."""
    order = np.concatenate([np.flatnonzero(digits_arrays[1] == c)[:40] for c in range(10)])  # 40 per class, sorted
    x, y = digits_arrays[0][order], digits_arrays[1][order]
    np.savez(tmp_path / "sorted.npz", x=x, y=y)
    np.savez(tmp_path / "own_test.npz", x=x[np.arange(400) % 4 > 0], y=y[np.arange(400) % 4 > 0],
             x_test=x[::4], y_test=y[::4])  # both sorted by class
    for i, (image, label) in enumerate(zip(x, y)):
        (tmp_path / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "folder" / str(label) / f"{i:04d}.png")
    for name in ("sorted.npz", "own_test.npz", "folder"):
        for val_split in ("random", "last"):
            data = load_data(str(tmp_path / name), train_size=200, test_size=60, val_size=60, val_split=val_split)
            assert len(data.train_x) == 140 and len(data.test_x) == 60
            for split in (data.train_y, data.val_y, data.test_y):
                assert set(split.tolist()) == set(range(10)), (name, val_split)
    again = load_data(str(tmp_path / "sorted.npz"), train_size=200, test_size=60, val_size=61)  # no trial's seed
    assert torch.equal(again.test_x, load_data(str(tmp_path / "sorted.npz"), train_size=200, test_size=60).test_x)


def test_sixteen_bit_grey_images_keep_their_top_eight_bits(tmp_path):
    """Pillow's "L" conversion clips a 16-bit image to white above 255; its top 8 bits keep the picture."""
    values = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ..., 65535: 0..255 after >> 8
    (tmp_path / "wide").mkdir()
    for i in range(10):
        Image.fromarray(np.roll(values, i)).save(tmp_path / "wide" / f"{i}.png")
    assert Image.open(tmp_path / "wide" / "0.png").mode == "I;16"
    data = load_data(str(tmp_path / "wide"), val_size=1)
    every = torch.cat([data.train_x, data.val_x, data.test_x])
    assert every.shape == (10, 1, 16, 16) and sorted(every[0].flatten().tolist()) == list(range(256))


def test_torchvision_names_map_to_their_classes_and_fail_clearly_offline(tmp_path):
    assert set(DATASETS) == set(NAMED) == {"mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "svhn"}
    assert NAMED["cifar10"].shape == NAMED["svhn"].shape == (3, 32, 32)
    assert NAMED["emnist"].options == {"split": "letters"} and NAMED["emnist"].shape == (1, 28, 28)
    for name, where in (("cifar10", "cifar-10-batches-py"), ("svhn", str(tmp_path)), ("emnist", "EMNIST/raw")):
        with pytest.raises(DataError, match=f"cannot read {name} from .*{where}.*files not found.*allow the download"):
            load_data(name, str(tmp_path), download=False)


def test_a_dataset_too_big_for_memory_is_refused_with_the_number_and_a_way_out():
    """Loading peaks at about 3x the images' uint8 size (BENCHMARKS.md section 8): the peak must fit."""
    check_memory("x", (100_000, 3, 32, 32), total=2**32)  # 0.29 GiB, 0.86 GiB at the peak, of 4 GiB: fine
    with pytest.raises(DataError, match=r"0\.3 GiB as uint8 and about 3x that \(0\.9 GiB\) while loading, more than "
                                        r"25% of this machine's 2\.0 GiB.*image_size"):
        check_memory("x", (100_000, 3, 32, 32), total=2**31)  # the images alone (0.29 GiB) would fit in 25%


def test_config_keys_for_the_dataset():
    config = TrialConfig.from_dict({"dataset": "data/my.npz", "channels": 3, "image_size": 32, "layout": "nchw"})
    assert config.image_size == (32, 32) and config.to_dict()["image_size"] == [32, 32]
    assert TrialConfig.from_dict({"image_size": [24, 32]}).image_size == (24, 32)
    for bad in ({"channels": 2}, {"image_size": [0, 4]}, {"layout": "hwc"}, {"dataset": "mnsit"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrialConfig.from_dict(bad)


# --- bad input: one line, exit status 2, nothing written ------------------------------------------------------------

def _folder(files: dict[str, tuple[int, int] | bytes | Image.Image]):
    def make(root: Path) -> Path:
        (root / "data").mkdir()
        for name, what in files.items():
            path = root / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(what, bytes):
                path.write_bytes(what)
            elif isinstance(what, Image.Image):
                what.save(path)
            else:
                Image.new("L", what).save(path)
        return root / "data"
    return make


def _npz(**arrays):
    def make(root: Path) -> Path:
        np.savez(root / "data.npz", **arrays)
        return root / "data.npz"
    return make


GOOD = np.zeros((50, 8, 8), np.uint8)
BAD_INPUTS = {  # case: (make the dataset, extra top-level keys, what the one line says)
    "empty folder": (_folder({}), "", "holds no images"),
    "mixed sizes": (_folder({"a.png": (8, 8), "b.png": (9, 8)}), "", "mixes image sizes.*set image_size"),
    "not images": (_folder({"a.png": (8, 8), "notes.txt": b"hello", "b.png": b"\x89PNG broken"}), "",
                   "2 file.* not readable images \\(b.png, notes.txt\\)"),
    "32-bit and float pixels": (_folder({"a.png": (8, 8), "b.tif": Image.new("F", (8, 8), 0.5),
                                         "c.tif": Image.new("I", (8, 8), 70000)}), "",
                                "2 file.* hold 32-bit integer or float pixels \\(b.tif, c.tif\\).*16-bit PNG"),
    "npz without x": (_npz(images=GOOD), "", "has no array named x.*images"),
    "labels length": (_npz(x=GOOD, y=np.zeros(49, np.int64)), "", "49 labels for 50 images"),
    "out of range": (_npz(x=np.full((50, 8, 8), 1.5)), "", r"must lie in \[0, 1\]"),
    "NaN": (_npz(x=np.full((50, 8, 8), np.nan)), "", "NaN"),
    "unclear layout": (_npz(x=np.zeros((50, 5, 5, 5), np.uint8)), "", "layout is unclear.*nhwc or nchw"),
    "unknown layout": (_npz(x=GOOD), "layout: hwc", "layout: unknown value 'hwc'"),
    "neither grey nor colour": (_npz(x=np.zeros((50, 2, 8, 8), np.uint8)), "layout: nchw",
                                "the images have 2 channels; aetune takes grey \\(1\\), RGB \\(3\\) or RGBA"),
    "too few for a test split": (_npz(x=GOOD[:2]), "", "2 image\\(s\\): too few to carve a test split"),
    "too few for validation": (_npz(x=GOOD[:3]), "", "val_size: 0 validation images cannot be held out of 2"),
    "missing path": (lambda root: root / "nowhere.npz", "", "nowhere.npz does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_data_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, extra, message = BAD_INPUTS[case]
    dataset = make(tmp_path)
    space = write_space(tmp_path / "space.yaml", f"dataset: {dataset}\n{extra}\nepochs: 1\nsamples: 1\n"
                        "variants: {dense: {model: dense, hidden_layers: [8]}}\n")
    code = search_main(["--space", str(space), "--storage", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()


# --- a search and an evaluation on each dataset ---------------------------------------------------------------------

DATASET_SPACE = """\
    dataset: {dataset}
    epochs: 2
    samples: 1
    scheduler: fifo
    metric: val_bce
    defaults: {{batch_size: 32}}
    variants:
{variants}
"""
VARIANTS = {
    "digits_npz": "      dense: {model: dense, hidden_layers: [16], code_size: 4}\n"
                  "      vae: {model: vae, hidden_layers: [16], code_size: 2, metric: val_loss}",
    "digits_folder": "      conv: {model: conv, filters: [8, 4]}",
    "shapes_folder": "      conv: {model: conv, filters: [8, 4], decoder: transpose}\n"
                     "      lstm: {model: lstm, hidden_layers: [16], code_size: 8}",
}
EXPECTED = {"digits_npz": (1, 8, 8), "digits_folder": (1, 8, 8), "shapes_folder": (3, 32, 32)}


@pytest.fixture(scope="module", params=list(VARIANTS))
def evaluated(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """A real search (Ray, a trial per variant, two epochs) and its evaluation on one of the three datasets."""
    name, dataset = request.param, request.getfixturevalue(request.param)
    root = tmp_path_factory.mktemp(name)
    space = write_space(root / f"{name}.yaml", DATASET_SPACE.format(dataset=dataset, variants=VARIANTS[name]))
    run = run_search("--space", str(space), "--storage", str(root), "--quiet")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert evaluate_main([str(root / name)]) == 0
    return name, root / name, dataset


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _coloured(pixels: np.ndarray) -> bool:
    return bool((np.ptp(pixels, axis=-1) > 40).any())


def _hues(pixels: np.ndarray) -> int:
    """How many distinct colours (of 12 hue bins, each on 50+ clearly saturated pixels) an image shows."""
    from matplotlib.colors import rgb_to_hsv

    hsv = rgb_to_hsv(pixels / 255.0).reshape(-1, 3)
    hue = hsv[(hsv[:, 1] > 0.4) & (hsv[:, 2] > 0.3), 0]
    return int((np.bincount((hue * 12).astype(int) % 12, minlength=12) >= 50).sum())


def test_trials_log_images_in_the_datas_own_size_and_colour(evaluated):
    name, experiment, _ = evaluated
    channels, height, width = EXPECTED[name]
    events = sorted(experiment.glob("*/events.out.tfevents.*"))
    assert events
    for event in events:
        acc = EventAccumulator(str(event), size_guidance={"images": 0})
        acc.Reload()
        image = acc.Images(IMAGE_TAG)[-1]  # 8 validation images above their reconstructions, 2 px apart
        assert (image.height, image.width) == (2 * (height + 2) + 2, 8 * (width + 2) + 2)
        assert _coloured(_rgb(image.encoded_image_string)) == (channels == 3)


def test_the_report_is_in_the_datas_own_colour_and_names_the_dataset(evaluated):
    name, experiment, _ = evaluated
    channels = EXPECTED[name][0]
    figures = experiment / "eval" / "figures"
    for recon in figures.glob("recon_*.png"):
        strip = _rgb(recon.read_bytes())[60:-10, 190:-20]  # the image strips, without the title and row labels
        assert _coloured(strip) == (channels == 3), recon.name
    summary = json.loads((experiment / "summary.json").read_text())
    split = next(iter(summary["variants"].values()))["split"]
    assert Path(split["dataset"]).is_absolute() and split["shape"] == list(EXPECTED[name])
    report = (experiment / "eval" / "report.html").read_text()
    assert split["source"].split(":")[0] in report and "carved" in report
    metrics = json.loads((experiment / "eval" / "metrics.json").read_text())
    probes = [row.get("test_probe") for row in metrics["leaderboard"]]
    if name == "shapes_folder":  # no labels: no probe, one-colour scatter, and the report says why
        assert all(p is None for p in probes) and "has no labels" in report
        assert _hues(_rgb((figures / "scatter_conv.png").read_bytes())) == 1  # one colour
    else:
        assert any(p is not None for p in probes) and "has no labels" not in report
        scatter = figures / f"scatter_{next(iter(summary['variants']))}.png"
        assert _hues(_rgb(scatter.read_bytes())) > 3  # coloured by label


def test_the_reports_images_are_the_datas_own_pixels(evaluated):
    """figures/pixels/: each figure of images tiled at the data's own H x W in its own mode (L or RGB), 2 px apart,
    in the grid the figure shows; the same in the evaluation's TensorBoard run and folded into the report. The
    reconstructions' first row is the showcased test images themselves, byte for byte."""
    name, experiment, dataset = evaluated
    channels, height, width = EXPECTED[name]
    variants = json.loads((experiment / "summary.json").read_text())["variants"]
    test = load_data(str(dataset))
    shown = test.test_x[showcase(test)]
    assert test.test_y is None or test.test_y[showcase(test)].tolist() == list(range(10))  # one per class
    grids = {"recon": (len(shown), 2), "interpolation": (STEPS + 2, len(interpolation_pairs(test))),
             "anomalies": (TOP, 2), "generation": (SHOW, len(variants)), "manifold": (GRID, GRID)}
    figures = json.loads((experiment / "eval" / "metrics.json").read_text())["figures"]
    tiled = {Path(f["file"]).stem: f["pixels"] for f in figures if f["pixels"]}
    assert {stem.split("_")[0] for stem in tiled} == set(grids) - ({"manifold"} if name != "digits_npz" else set())
    events = EventAccumulator(str(experiment / "eval" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    report = (experiment / "eval" / "report.html").read_text()
    for stem, pixels in tiled.items():
        with Image.open(experiment / "eval" / pixels) as image:
            columns, rows = grids[stem.split("_")[0]]
            assert image.mode == ("RGB" if channels == 3 else "L"), pixels
            assert image.size == (columns * (width + 2) + 2, rows * (height + 2) + 2), (pixels, image.size)
            logged = events.Images(f"eval/pixels/{stem}")[0]
            assert (logged.width, logged.height) == image.size
            logged_rgb = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))  # TensorBoard keeps RGB
            assert np.array_equal(logged_rgb, np.asarray(image.convert("RGB")))
            assert base64.b64encode((experiment / "eval" / pixels).read_bytes()).decode() in report
            kind, tiles = stem.split("_")[0], tile_grid(image, height, width)
            if kind == "recon":  # the showcased test images, in order
                assert np.array_equal(tiles[0], as_tiles(shown)), pixels
            if kind == "interpolation":  # each row runs from one test image to another
                pairs = interpolation_pairs(test)
                assert np.array_equal(tiles[:, 0], as_tiles(test.test_x[[a for a, _ in pairs]]))
                assert np.array_equal(tiles[:, -1], as_tiles(test.test_x[[b for _, b in pairs]]))
            if kind == "anomalies":  # the worst-reconstructed are test images
                every = {image.tobytes() for image in as_tiles(test.test_x)}
                assert all(tile.tobytes() in every for tile in tiles[0]), pixels


def tile_grid(image: Image.Image, height: int, width: int) -> np.ndarray:
    """rows x columns x H x W x C: the tiles of a grid 2 px apart."""
    pixels = np.asarray(image).reshape(image.height, image.width, -1)
    rows, columns = (image.height - 2) // (height + 2), (image.width - 2) // (width + 2)
    return np.stack([np.stack([pixels[2 + r * (height + 2):2 + r * (height + 2) + height,
                                      2 + c * (width + 2):2 + c * (width + 2) + width] for c in range(columns)])
                     for r in range(rows)])


def as_tiles(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()
