"""Evaluation: a real (tiny) experiment in, metrics, figures and a report out; bad checkpoints refused or skipped."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aetune.baselines import PCA, PCA_FIT_IMAGES, pca_components
from aetune.checkpoint import save_checkpoint
from aetune.data import load_data, to_float
from aetune.evaluate import main
from aetune.experiment import Summary, VariantResult
from aetune.plots import DPI, WIDTH

VARIANTS = ("dense", "denoising", "sparse", "conv", "vae")  # conftest's SMALL_SPACE, run by the search driver
TEST_SIZE = 500  # the trials' own held-out images: evaluation must reproduce their metrics
EXPECTED_FIGURES = {
    *(f"{kind}_{name}" for kind in ("recon", "scatter", "interpolation", "anomalies") for name in VARIANTS),
    "manifold_vae", "generation", "sparsity", "training_curves",
}


@pytest.fixture(scope="module")
def experiment(searched, tmp_path_factory) -> Path:
    """A copy of the search driver's experiment, plus a variant whose every trial crashed."""
    root = tmp_path_factory.mktemp("runs") / "small"
    shutil.copytree(searched, root, ignore=shutil.ignore_patterns("eval"))
    summary = Summary.read(root)
    summary.variants["crashed"] = VariantResult(None, {"model": "conv"}, {}, None, None, trials=2,
                                                errored=[{"trial_id": "t1", "error_file": "crashed/t1/error.txt"}])
    summary.write(str(root))
    return root


def evaluate(experiment: Path, data_root: Path, *extra: str) -> int:
    return main([str(experiment), "--data-root", str(data_root), "--no-download", "--test-size", str(TEST_SIZE),
                 "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def evaluated(experiment, data_root) -> Path:
    assert evaluate(experiment, data_root) == 0
    return experiment / "eval"


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# --- outputs -----------------------------------------------------------------------------------------------------

def test_every_output_is_written(evaluated):
    figures = {p.stem for p in (evaluated / "figures").glob("*.png")}
    assert figures == EXPECTED_FIGURES
    for name in ("leaderboard.csv", "metrics.json", "report.html"):
        assert (evaluated / name).stat().st_size > 0
    events = EventAccumulator(str(evaluated / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {tag.removeprefix("eval/") for tag in events.Tags()["images"]} == EXPECTED_FIGURES


def test_figures_are_sized_and_not_blank(evaluated):
    for path in (evaluated / "figures").glob("*.png"):
        image = np.asarray(Image.open(path).convert("L"), dtype=float)
        height, width = image.shape
        assert width == WIDTH * DPI, path.name
        assert 200 <= height <= 1200, (path.name, height)
        assert image.std() > 20, path.name  # labelled plots on white: a blank page has std 0


def test_leaderboard_ranks_models_and_baselines_by_clean_bce(evaluated):
    with open(evaluated / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    bce = [float(r["bce"]) for r in rows]
    assert bce == sorted(bce)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    codes = {"pca-2", "pca-8", "pca-16", "pca-196"}  # conv codes (8 x 7 x 7) are capped at 196
    assert set(VARIANTS) | {"mean-image"} <= {r["name"] for r in rows} <= set(VARIANTS) | {"mean-image"} | codes


def test_metrics_match_the_trainer_on_the_same_test_images(evaluated, experiment):
    """Same images, same validation noise: the evaluation reproduces what the search reported."""
    metrics = read_metrics(evaluated)
    summary = Summary.read(experiment)
    for name in VARIANTS:
        ours, reported = metrics["variants"][name]["metrics"], summary.variants[name].metrics
        assert ours["objective"] == pytest.approx(reported["val_loss"], rel=1e-4)
        assert ours["bce"] == pytest.approx(reported["val_bce"], rel=1e-4)
        assert ours["mse"] == pytest.approx(reported["val_mse"], rel=1e-4)
        assert ours["psnr"] == pytest.approx(10 * np.log10(1 / ours["mse"]))
    noisy = metrics["variants"]["denoising"]["metrics"]
    assert noisy["psnr_noisy"] > noisy["psnr_noisy_input"] + 1  # the denoiser cleans its noisy inputs


def test_every_model_beats_the_mean_image(evaluated):
    variants = read_metrics(evaluated)["variants"]
    for name in VARIANTS:
        mean_image = variants[name]["baselines"]["mean_image"]
        assert mean_image["name"] == "mean-image"
        assert variants[name]["metrics"]["mse"] < mean_image["mse"], name
    assert variants["conv"]["baselines"]["pca"]["name"] == "pca-196"


def test_report_is_self_contained_and_names_every_figure_and_skip(evaluated):
    report = (evaluated / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(EXPECTED_FIGURES)
    assert "src=\"figures/" not in report and not re.search(r'(src|href)="(https?:|//)', report)
    assert "crashed</b>: no finished trial (2 run, 1 errored" in report
    for name in VARIANTS:
        assert f"<th>{name}</th>" in report  # best-config table


# --- baselines ---------------------------------------------------------------------------------------------------

def test_pca_baseline_equals_a_numpy_svd_of_the_same_images(evaluated, data_root):
    data = load_data("mnist", str(data_root), PCA_FIT_IMAGES, TEST_SIZE, download=False)
    train, test = to_float(data.train_x).flatten(1), to_float(data.test_x).flatten(1)
    train64, test64 = train.double().numpy(), test.double().numpy()
    mean = train64.mean(0)
    _, singular, vh = np.linalg.svd(train64 - mean, full_matrices=False)
    projected = (test64 - mean) @ vh[:16].T @ vh[:16] + mean
    pca = PCA.fit(train).top(16)
    ours = float((pca.project(test) - test).pow(2).mean())
    assert ours == pytest.approx(((projected - test64) ** 2).mean(), rel=1e-4)
    assert pca.explained.numpy() == pytest.approx(singular[:16] ** 2 / (singular ** 2).sum(), rel=1e-4)
    rows = {r["name"]: r for r in read_metrics(evaluated)["leaderboard"]}  # reported: clipped to [0, 1] like images
    assert rows["pca-16"]["mse"] == pytest.approx(((np.clip(projected, 0, 1) - test64) ** 2).mean(), rel=1e-4)
    assert rows["mean-image"]["mse"] == pytest.approx(((mean - test64) ** 2).mean(), rel=1e-5)


def test_conv_codes_larger_than_the_image_get_a_capped_pca():
    assert pca_components(32, 784) == 32
    assert pca_components(32 * 7 * 7, 784) == 196


# --- bad input ---------------------------------------------------------------------------------------------------

class Payload:
    """What a malicious checkpoint carries: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


@pytest.fixture(scope="module")
def damaged(experiment, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the experiment plus a truncated, a pickled-payload and a mismatched checkpoint."""
    root = tmp_path_factory.mktemp("damaged") / "small"
    shutil.copytree(experiment, root, ignore=shutil.ignore_patterns("eval"))
    summary = Summary.read(root)
    dense = summary.variants["dense"]
    source = (root / dense.checkpoint).read_bytes()
    marker = root.parent / "payload-ran"
    paths = {"truncated": root / "truncated.pt", "pickled": root / "pickled.pt", "mismatched": root / "mismatched.pt"}
    paths["truncated"].write_bytes(source[: len(source) // 2])
    bundle = torch.load(root / dense.checkpoint, weights_only=True)
    save_checkpoint({**bundle, "history": [Payload(marker)]}, paths["pickled"])
    save_checkpoint({**bundle, "config": {**bundle["config"], "code_size": bundle["config"]["code_size"] + 1}}, paths["mismatched"])
    for name, path in paths.items():
        summary.variants[name] = VariantResult("t", dense.config, dense.metrics, path.name, None, trials=1)
    summary.write(str(root))
    return root, marker


def test_payload_is_real_but_never_runs(damaged, data_root, capsys, tmp_path):
    root, marker = damaged
    probe = tmp_path / "probe"
    torch.save({"x": Payload(probe)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the unsafe way: the payload runs
    assert probe.exists()
    assert evaluate(root, data_root, "--variants", "pickled") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pickled.pt was refused" in err and "could run code" in err
    assert not marker.exists()


@pytest.mark.parametrize("variant, message", [("truncated", "truncated or corrupt"),
                                              ("mismatched", "config does not match its weights")])
def test_only_variant_broken_exits_2_with_one_line(damaged, data_root, capsys, variant, message):
    assert evaluate(damaged[0], data_root, "--variants", variant) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aetune: error: ") and message in err


def test_broken_variants_are_skipped_when_others_are_fine(damaged, data_root):
    root, marker = damaged
    out = root / "partial"
    assert evaluate(root, data_root, "--variants", "dense", "truncated", "pickled", "mismatched",
                    "--out", str(out)) == 0
    skipped = read_metrics(out)["skipped"]
    assert set(skipped) == {"truncated", "pickled", "mismatched"}
    assert "truncated or corrupt" in skipped["truncated"] and "refused" in skipped["pickled"]
    report = (out / "report.html").read_text()
    assert all(f"<b>{name}</b>: checkpoint" in report for name in skipped)
    assert [r["name"] for r in read_metrics(out)["leaderboard"] if r["kind"] == "model"] == ["dense"]
    assert not marker.exists()


def test_not_an_experiment_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "aetune.evaluate", str(tmp_path)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not a finished aetune experiment" in result.stderr


def test_no_finished_trial_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "crashed") == 2
    assert "no finished trial" in capsys.readouterr().err


def test_unknown_variant_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "nope") == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
