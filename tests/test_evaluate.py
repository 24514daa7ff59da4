"""Evaluation: a real (tiny) experiment in, metrics, figures and a report out; bad checkpoints refused or skipped."""
from __future__ import annotations

import csv
import json
import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aetune.baselines import PCA, PCA_FIT_IMAGES, pca_components
from aetune.checkpoint import save_checkpoint
from aetune.config import TrialConfig
from aetune.data import load_data, to_float
from aetune.evaluate import main
from aetune.experiment import Summary, VariantResult
from aetune.plots import DPI, WIDTH
from aetune.train import Trainer

VARIANTS = {
    "dense": {"model": "dense", "hidden_layers": [128], "code_size": 32},
    "sparse": {"model": "dense", "hidden_layers": [128], "code_size": 32, "l1": 1e-3},
    "denoising_conv": {"model": "conv", "filters": [16, 16], "noise_factor": 0.5},  # 16 x 7 x 7 code
    "vae": {"model": "vae", "hidden_layers": [256], "code_size": 2},
}
TEST_SIZE = 1000
EXPECTED_FIGURES = {
    *(f"{kind}_{name}" for kind in ("recon", "scatter", "interpolation", "anomalies") for name in VARIANTS),
    "manifold_vae", "generation", "sparsity", "training_curves",
}


def build_experiment(root: Path, mnist) -> Path:
    """A finished experiment as the search writes it: best checkpoint per variant + summary.json.
    (Trains tiny models directly; swap for `python -m aetune.search` on a tiny space once it exists.)"""
    experiment = root / "tiny"
    results = {}
    for name, values in VARIANTS.items():
        config = TrialConfig.from_dict({**values, "epochs": 2, "batch_size": 32, "train_size": 3000,
                                        "test_size": TEST_SIZE})
        trainer = Trainer(config, mnist, device="cpu")
        for _ in range(config.epochs):
            trainer.run_epoch()
        trainer.save(experiment / name / "trial_0" / "checkpoint.pt")
        results[name] = VariantResult("trial_0", config.to_dict(), trainer.history[-1],
                                      f"{name}/trial_0/checkpoint.pt", f"{name}/trial_0", trials=1)
    results["crashed"] = VariantResult(None, {"model": "conv"}, {}, None, None, trials=2,
                                       errored=[{"trial_id": "t1", "error_file": "crashed/t1/error.txt"}])
    Summary("tiny", "val_loss", "min", results).write(str(experiment))
    return experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, mnist) -> Path:
    return build_experiment(tmp_path_factory.mktemp("runs"), mnist)


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
    assert list((evaluated / "tensorboard").glob("events.out.tfevents.*"))


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
    names = {r["name"] for r in rows}
    assert names == set(VARIANTS) | {"mean-image", "pca-2", "pca-32", "pca-196"}  # conv: 784 capped


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
    noisy = metrics["variants"]["denoising_conv"]["metrics"]
    assert noisy["mse_noisy"] > noisy["mse"] and noisy["psnr_noisy"] > noisy["psnr_noisy_input"]


def test_every_model_beats_the_mean_image(evaluated):
    rows = {r["name"]: r for r in read_metrics(evaluated)["leaderboard"]}
    for name in VARIANTS:
        assert rows[name]["mse"] < rows["mean-image"]["mse"], name


def test_report_is_self_contained_and_names_every_figure_and_skip(evaluated):
    report = (evaluated / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(EXPECTED_FIGURES)
    assert "src=\"figures/" not in report and "http" not in report
    assert "crashed</b>: no finished trial (2 run, 1 errored" in report
    for name in VARIANTS:
        assert f"<th>{name}</th>" in report  # best-config table


# --- baselines ---------------------------------------------------------------------------------------------------

def numpy_pca_mse(train: np.ndarray, test: np.ndarray, k: int) -> float:
    mean = train.mean(0)
    _, _, vh = np.linalg.svd(train - mean, full_matrices=False)
    basis = vh[:k]
    recon = np.clip((test - mean) @ basis.T @ basis + mean, 0, 1)
    return float(((recon - test) ** 2).mean())


def test_pca_matches_numpy_svd(mnist):
    train = to_float(mnist.train_x[:1000]).flatten(1)
    test = to_float(mnist.test_x).flatten(1)
    pca = PCA.fit(train).top(16)
    train64, test64 = train.double().numpy(), test.double().numpy()
    mean = train64.mean(0)
    _, singular, vh = np.linalg.svd(train64 - mean, full_matrices=False)
    projected = (test64 - mean) @ vh[:16].T @ vh[:16] + mean
    assert float((pca.project(test) - test).pow(2).mean()) == pytest.approx(((projected - test64) ** 2).mean(), rel=1e-4)
    assert pca.explained.numpy() == pytest.approx(singular[:16] ** 2 / (singular ** 2).sum(), rel=1e-4)


def test_reported_pca_baseline_equals_numpy_on_the_same_images(evaluated, data_root):
    data = load_data("mnist", str(data_root), PCA_FIT_IMAGES, TEST_SIZE, download=False)
    train = to_float(data.train_x).flatten(1).double().numpy()
    test = to_float(data.test_x).flatten(1).double().numpy()
    rows = {r["name"]: r for r in read_metrics(evaluated)["leaderboard"]}
    assert rows["pca-32"]["mse"] == pytest.approx(numpy_pca_mse(train, test, 32), rel=1e-4)
    assert rows["mean-image"]["mse"] == pytest.approx(float(((train.mean(0) - test) ** 2).mean()), rel=1e-5)


def test_conv_codes_larger_than_the_image_get_a_capped_pca():
    assert pca_components(32, 784) == 32
    assert pca_components(32 * 7 * 7, 784) == 196


# --- bad input ---------------------------------------------------------------------------------------------------

class Payload:
    """What a malicious checkpoint carries: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture(scope="module")
def damaged(experiment, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the experiment plus a truncated, a pickled-payload and a mismatched checkpoint."""
    root = tmp_path_factory.mktemp("damaged") / "tiny"
    shutil.copytree(experiment, root, ignore=shutil.ignore_patterns("eval"))
    summary = Summary.read(root)
    dense = summary.variants["dense"]
    source = (root / dense.checkpoint).read_bytes()
    marker = root.parent / "payload-ran"
    paths = {"truncated": root / "truncated.pt", "pickled": root / "pickled.pt", "mismatched": root / "mismatched.pt"}
    paths["truncated"].write_bytes(source[: len(source) // 2])
    bundle = torch.load(root / dense.checkpoint, weights_only=True)
    save_checkpoint({**bundle, "history": [Payload(marker)]}, paths["pickled"])
    save_checkpoint({**bundle, "config": {**bundle["config"], "code_size": 16}}, paths["mismatched"])
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
    result = subprocess.run([sys.executable, "-m", "aetune.evaluate", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not a finished aetune experiment" in result.stderr


def test_no_finished_trial_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "crashed") == 2
    assert "no finished trial" in capsys.readouterr().err


def test_unknown_variant_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "nope") == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
