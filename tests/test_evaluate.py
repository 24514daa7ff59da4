"""Evaluation: a real (tiny) experiment in, test scores beside validation scores, probe, fronts, findings, figures and
a report out; older summaries still evaluate; bad checkpoints refused or skipped."""
from __future__ import annotations

import csv
import html
import json
import math
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

from aetune.config import TrialConfig
from aetune.evaluate.__main__ import main, resolve_test_size, write_tables
from aetune.evaluate.baselines import PCA, pca_components
from aetune.models.base import EPSILON as EPS
from aetune.evaluate.model_figures import slug
from aetune.evaluate.plots import DPI, WIDTH
from aetune.evaluate.scoring import EvalImages, Variant, score_checkpoint
from aetune.evaluate.stats import TEST
from aetune.experiment import Summary, VariantResult
from aetune.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from aetune.train.data import ImageData, load_data, to_float, trial_data

SWEEP = ("dense@code_size=8", "dense@code_size=16")  # conftest's SMALL_SPACE, run by the search driver
VARIANTS = (*SWEEP, "denoising", "sparse", "conv", "vae")
TEST_SIZE = 500
EXPECTED_FIGURES = {
    *(f"{kind}_{slug(name)}" for kind in ("recon", "scatter", "interpolation", "anomalies") for name in VARIANTS),
    "manifold_vae", "generation", "sparsity", "training_curves",
    "code_size", "front_sparse", "front_recon_sparse",  # what the study found: sizes 2, 8, 16, 392; sparse's front
}
EXPECTED_PIXELS = {f for f in EXPECTED_FIGURES  # the figures made of images: also at the data's own pixels
                   if f.startswith(("recon_", "interpolation_", "anomalies_", "manifold_", "generation", "front_recon_"))}
PAIRS = [("val_loss", "test_loss"), ("val_bce", "test_bce"), ("val_mse", "test_mse"),
         ("val_denoise_bce", "test_denoise_bce"), ("val_code_l1", "test_code_l1")]


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


def strict(constant: str):
    raise AssertionError(f"metrics.json holds {constant}: not JSON")


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text(), parse_constant=strict)


def rows_by_name(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in read_metrics(out)["leaderboard"]}


# --- outputs -----------------------------------------------------------------------------------------------------

def test_every_output_is_written(evaluated):
    figures = {p.stem for p in (evaluated / "figures").glob("*.png")}
    assert figures == EXPECTED_FIGURES
    assert {p.stem for p in (evaluated / "figures" / "pixels").glob("*.png")} == EXPECTED_PIXELS
    for name in ("leaderboard.csv", "metrics.json", "report.html"):
        assert (evaluated / name).stat().st_size > 0
    events = EventAccumulator(str(evaluated / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert ({tag.removeprefix("eval/") for tag in events.Tags()["images"]}
            == EXPECTED_FIGURES | {f"pixels/{name}" for name in EXPECTED_PIXELS})


def test_figures_are_sized_and_not_blank(evaluated):
    for path in (evaluated / "figures").glob("*.png"):
        image = np.asarray(Image.open(path).convert("L"), dtype=float)
        height, width = image.shape
        assert width == WIDTH * DPI, path.name
        assert 200 <= height <= 1200, (path.name, height)
        assert image.std() > 20, path.name  # labelled plots on white: a blank page has std 0


def test_leaderboard_groups_picks_by_code_size_with_pca_first_and_ranks_on_validation(evaluated, experiment):
    """Code sizes ascending; each group opens with the PCA of that size (its true size: 2, 8, 16, and the conv codes'
    392, below the image's 784 numbers: never capped) and ranks its picks by validation BCE, never by test."""
    with open(evaluated / "leaderboard.csv") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert all(header.index(test) == header.index(val) + 1 for val, test in PAIRS)
    grouped = [r for r in rows if r["group"] and r["kind"] in ("model", "baseline")]
    sizes = [int(r["group"]) for r in grouped]
    assert sizes == sorted(sizes) and sorted(set(sizes)) == [2, 8, 16, 392]
    for size in set(sizes):
        group = [r for r in grouped if int(r["group"]) == size]
        assert group[0]["kind"] == "baseline" and group[0]["model"] == "pca"
        models = group[1:]
        assert {r["kind"] for r in models} == {"model"} and {int(r["code"]) for r in models} == {size}
        assert [int(r["rank"]) for r in models] == list(range(1, len(models) + 1))
        scores = [float(r["val_bce_mean"] or r["val_bce"]) for r in models]
        assert scores == sorted(scores)
    assert {r["name"]: r["note"] for r in grouped if r["kind"] == "baseline"} == {
        "pca-2": "", "pca-8": "", "pca-16": "", "pca-392": ""}
    assert {r["name"] for r in grouped if r["kind"] == "model"} == set(VARIANTS)


def test_a_picks_estimate_is_the_mean_and_t_interval_of_its_repeats(evaluated, experiment, data_root):
    """Validation: each repeat's best epoch as its own result.json has it. Test: each repeat's checkpoint scored
    here by hand (the BCE of the model's reconstruction against the pixels). K = 2: the t quantile with 1 degree of
    freedom is 12.706."""
    rows = rows_by_name(evaluated)
    summary = Summary.read(experiment)
    test_x = to_float(load_data("mnist", str(data_root), 10, TEST_SIZE, False, val_size=0).test_x)
    for name in (*SWEEP, "sparse"):
        row, repeats = rows[name], summary.variants[name].repeats
        metric = "val_bce"
        val = []
        for repeat in repeats:
            lines = (experiment / repeat["trial_dir"] / "result.json").read_text().splitlines()
            epochs = [json.loads(line) for line in lines]
            chosen = max(epochs, key=lambda e: e["epoch"]) if name == "sparse" else min(epochs, key=lambda e: e[metric])
            val.append(chosen[metric])
        test = []
        for repeat in repeats:
            bundle = load_checkpoint(experiment / repeat["checkpoint"])
            model = model_from_checkpoint(bundle).eval()
            with torch.no_grad():
                recon = model(test_x)  # the reconstruction: sigmoid of the decoder's logits
            test.append(float(torch.nn.functional.binary_cross_entropy(recon.clamp(EPS, 1 - EPS), test_x)))
        assert row["repeats"] == 2
        for split, values in (("val", val), ("test", test)):
            mean, sd = np.mean(values), np.std(values, ddof=1)
            assert row[f"{split}_bce_mean"] == pytest.approx(mean, rel=1e-3), (name, split)
            assert row[f"{split}_bce_ci"] == pytest.approx(12.706 * sd / math.sqrt(2), rel=1e-3, abs=1e-6)
    assert all(rows[name].get("repeats") is None for name in ("conv", "vae", "denoising"))


def test_every_front_member_is_scored_on_the_test_split(evaluated, experiment):
    sparse = Summary.read(experiment).variants["sparse"]
    members = sorted(sparse.front, key=lambda m: m["metrics"]["val_bce"])
    rows = rows_by_name(evaluated)
    assert len(members) >= 2
    for i, member in enumerate(members, 1):
        row = rows[f"sparse#{i}"]
        assert row["kind"] == "front" and row["rank"] is None and row["trial_id"] == member["trial_id"]
        assert row["val_bce"] == pytest.approx(member["metrics"]["val_bce"])
        assert row["val_code_l1"] == pytest.approx(member["metrics"]["code_l1"])
        assert row["test_bce"] > 0 and row["test_code_l1"] > 0 and 0 < row["test_probe"] <= 1
    pick = next(r for r in rows.values() if r["kind"] == "front" and r["trial_id"] == sparse.trial_id)
    assert pick["test_bce"] == rows["sparse"]["test_bce"]  # the pick is a front member: the same checkpoint


def test_probe_column_for_every_model_and_baseline(evaluated):
    rows = rows_by_name(evaluated)
    for name in (*VARIANTS, "pixels", "pca-2", "pca-8", "pca-16", "pca-392"):
        assert 0.1 < rows[name]["test_probe"] <= 1, name  # ten classes: above chance
    assert rows["pixels"]["test_probe"] > 0.8
    assert rows["pca-392"]["test_probe"] > rows["pca-2"]["test_probe"] + 0.3  # two numbers keep less class
    assert rows["mean-image"].get("test_probe") is None  # a constant says nothing about the class


def test_findings_are_written_from_this_study_and_name_their_split(evaluated, experiment):
    metrics = read_metrics(evaluated)
    found = metrics["findings"]
    assert [f for f in found if f["split"] not in ("validation", "test", "validation and test")] == []
    text = "\n".join(f["text"] for f in found)
    rows = rows_by_name(evaluated)
    # within a code size only (16: the sweep member and sparse), ranked by the repeats' validation mean
    sixteen = sorted((rows[name] for name in VARIANTS if rows[name]["code"] == 16), key=lambda r: r["val_bce_mean"])
    assert f"At code size 16, {sixteen[0]['name']} ranks first of the 2 picks on the validation split" in text
    assert "reconstructs best" not in text
    # a claimed difference names its test; the others say they are untested or inside seed noise
    claims = [f["text"] for f in found if " better than " in f["text"] or "gives the best" in f["text"]]
    assert all(TEST in claim for claim in claims)
    assert "indistinguishable at 2 seeds" in text or TEST in text
    trials = sum(len(r.trial_results) for r in Summary.read(experiment).variants.values())
    assert f"By code size, the best of {trials} trials' BCE on the validation split against PCA's at the same size " \
        "on the same images: 2: " in text
    assert "code_size 16 gives the best" not in text and "code_size 8 gives the best" not in text
    assert "dense swept over code_size, validation split: val_bce of each member's pick by code_size: 8: " in text
    assert "sparse front, validation split: " in text and "sparse front re-scored on the test split" in text
    assert f"raw pixels {100 * rows['pixels']['test_probe']:.1f}%" in text
    assert "Selected on the test split" not in text
    report = (evaluated / "report.html").read_text()
    assert all(html.escape(f["text"]) in report for f in found)


def test_report_is_self_contained_and_shows_splits_fronts_and_skips(evaluated):
    report = (evaluated / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(EXPECTED_FIGURES) + len(EXPECTED_PIXELS)
    assert "src=\"figures/" not in report and not re.search(r'(src|href)="(https?:|//)', report)
    assert '<th class="val">BCE (val), pick&#x27;s run</th><th class="test">BCE (test), pick&#x27;s run</th>' in report
    assert '<th>K (repeats)</th><th class="val">BCE (val), mean of K</th><th class="val">± 95% CI (val)</th>' in report
    assert "<td>sparse#1</td>" in report  # the front table
    assert '<th class="val">val_bce</th><th class="test">test_bce</th>' in report
    assert "crashed</b>: no finished trial (2 run, 1 errored" in report
    assert 'class="warning"' not in report  # every pick was selected on the validation split
    for name in VARIANTS:
        assert f"<th>{name}</th>" in report  # picked-config table


def test_test_pass_on_the_validation_images_reproduces_what_the_trainer_reported(experiment, data_root):
    """The evaluation's scoring is the trainer's: given the validation images (and the same fixed noise) it
    finds every number the search reported for the same checkpoint."""
    summary = Summary.read(experiment)
    for name in VARIANTS:
        reported = summary.variants[name]
        bundle = load_checkpoint(experiment / reported.checkpoint)
        config = TrialConfig.from_dict(bundle["config"])
        data = load_data(config.dataset, str(data_root), config.train_size, None, False, config.val_size,
                         config.val_split, test=False)
        as_test = ImageData(data.name, data.train_x, data.train_y, data.val_x, data.val_y, data.val_x, data.val_y)
        v = Variant(name, {}, config, model_from_checkpoint(bundle), bundle, reported.checkpoint)
        score_checkpoint(v, EvalImages.build(as_test, config.eval_noise), torch.device("cpu"))
        for val, test in PAIRS:
            assert v.metrics[test] == pytest.approx(reported.metrics[val.replace("val_code_l1", "code_l1")],
                                                    rel=1e-4), (name, test)


def test_generative_families_get_an_importance_sampled_nll_below_their_negative_elbo(evaluated):
    variants = read_metrics(evaluated)["variants"]
    test = variants["vae"]["test"]  # test_loss: the sampled negative ELBO on the test split, nats per image
    assert test["test_nll_samples"] >= 100 and 0 < test["test_nll_se"] < 0.05 * test["test_nll"]
    assert test["test_nll"] < test["test_loss"]
    assert all("test_nll" not in v["test"] for name, v in variants.items() if name != "vae")


def test_every_model_beats_the_mean_image(evaluated):
    variants = read_metrics(evaluated)["variants"]
    for name in VARIANTS:
        mean_image = variants[name]["baselines"]["mean_image"]
        assert mean_image["name"] == "mean-image"
        assert variants[name]["test"]["test_mse"] < mean_image["test_mse"], name
    assert variants["conv"]["baselines"]["pca"]["name"] == "pca-392"


# --- older summaries and the course protocol -----------------------------------------------------------------------

NEW_FIELDS = ("metric", "mode", "pick_rule", "split", "selected_on", "sweep", "base", "front", "trial_results")


@pytest.fixture(scope="module")
def older(experiment, data_root, tmp_path_factory) -> Path:
    """dense@code_size=8 as a summary from before #9 wrote it (no splits, trials or fronts); vae picked on the test
    split (val_size: 0, the course protocol); sparse as searched, evaluated with --no-front."""
    root = tmp_path_factory.mktemp("older") / "small"
    shutil.copytree(experiment, root, ignore=shutil.ignore_patterns("eval"))
    raw = json.loads((root / "summary.json").read_text())
    raw["variants"] = {name: raw["variants"][name] for name in ("dense@code_size=8", "vae", "sparse")}
    for field in NEW_FIELDS:
        raw["variants"]["dense@code_size=8"].pop(field)
    raw["variants"]["vae"] |= {"selected_on": "test", "split": {"train": 3000, "val": 500, "val_from": "test"}}
    (root / "summary.json").write_text(json.dumps(raw))
    # no --test-size: the configs' test_size (500, conftest's SMALL_SPACE) decides, not "every test image"
    assert main([str(root), "--data-root", str(data_root), "--no-download", "--device", "cpu", "--no-front"]) == 0
    return root / "eval"


def test_an_older_summary_still_evaluates_without_the_sections_it_cannot_feed(older):
    rows = rows_by_name(older)
    assert rows["dense@code_size=8"]["selected_on"] is None and rows["dense@code_size=8"]["test_bce"] > 0
    assert not [r for r in rows.values() if r["kind"] == "front"]  # --no-front
    figures = {p.stem for p in (older / "figures").glob("*.png")}
    assert {"front_sparse", "code_size"} <= figures and "front_recon_sparse" not in figures
    report = (older / "report.html").read_text()
    assert "does not record which split picked dense@code_size=8" in report


def test_selection_on_the_test_split_is_said_first(older):
    assert rows_by_name(older)["vae"]["selected_on"] == "test"
    report = (older / "report.html").read_text()
    assert '<p class="warning"><b>Selected on the test split:</b> vae' in report
    assert report.index("Selected on the test split:") < report.index("<h2>Leaderboard</h2>")
    first = read_metrics(older)["findings"][0]
    assert first["split"] == "test" and first["text"].startswith("Selected on the test split")
    captions = {f["file"]: f["caption"] for f in read_metrics(older)["figures"]}
    assert "vae validated on the test split (val_size: 0)" in captions["figures/training_curves.png"]


def test_the_configs_test_size_is_the_default(older):
    assert set(read_metrics(older)["test_images"].values()) == {500}  # quick.yaml's test_size means what it says
    assert read_metrics(older)["test_size_note"] is None


def test_picks_asking_for_different_test_sizes_get_the_smallest_and_are_told():
    def pick(name, size):
        return Variant(name, {}, TrialConfig(test_size=size), None, {}, "x.pt")

    assert resolve_test_size([pick("a", 1000), pick("b", 1000)], None) == (1000, "")
    assert resolve_test_size([pick("a", 1000)], 200) == (200, "")
    assert resolve_test_size([pick("a", None)], None) == (None, "")
    size, note = resolve_test_size([pick("a", 1000), pick("b", 300), pick("c", None)], None)
    assert size == 300 and "different test_size (a 1000, b 300, c all)" in note and "first 300 test images" in note


# --- baselines ---------------------------------------------------------------------------------------------------

def test_baselines_are_fitted_on_the_images_the_trials_trained_on(evaluated, experiment, data_root):
    """PCA, the mean image and the probe's training codes come from the trials' own training images (train_size
    less val_size, by the trials' permutation): PCA against numpy's SVD of exactly those images, one fit for the
    baseline rows and the validation curve."""
    config = TrialConfig.from_dict(Summary.read(experiment).variants["dense@code_size=8"].config)
    trial = trial_data(config, str(data_root), download=False)
    test_x = load_data("mnist", str(data_root), None, TEST_SIZE, download=False).test_x
    train, test = to_float(trial.train_x).flatten(1), to_float(test_x).flatten(1)
    train64, test64 = train.double().numpy(), test.double().numpy()
    mean = train64.mean(0)
    _, singular, vh = np.linalg.svd(train64 - mean, full_matrices=False)
    projected = (test64 - mean) @ vh[:16].T @ vh[:16] + mean
    pca = PCA.fit(train).top(16)
    ours = float((pca.project(test) - test).pow(2).mean())
    assert ours == pytest.approx(((projected - test64) ** 2).mean(), rel=1e-4)
    assert pca.explained.numpy() == pytest.approx(singular[:16] ** 2 / (singular ** 2).sum(), rel=1e-4)
    rows = rows_by_name(evaluated)  # reported: clipped to [0, 1] like images
    assert rows["pca-16"]["test_mse"] == pytest.approx(((np.clip(projected, 0, 1) - test64) ** 2).mean(), rel=1e-4)
    assert rows["mean-image"]["test_mse"] == pytest.approx(((mean - test64) ** 2).mean(), rel=1e-5)
    metrics = read_metrics(evaluated)
    assert metrics["probe"]["train_images"] == metrics["pca_curve"]["fit_images"] == len(trial.train_x) == 2700


def test_pca_curve_is_scored_on_the_images_the_trials_were_validated_on(evaluated, experiment, data_root):
    """The code-size comparison stays on one split: PCA fitted on a pick's training part, scored on its
    validation images (rebuilt from its config), not on the test split."""
    curve = read_metrics(evaluated)["pca_curve"]
    assert curve["split"] == "validation" and curve["same_images_for_every_pick"]
    config = TrialConfig.from_dict(Summary.read(experiment).variants[curve["validation_images_of"]].config)
    data = trial_data(config, str(data_root), download=False)
    val = to_float(data.val_x)
    assert curve["images"] == len(val) == 300 and curve["fit_images"] == len(data.train_x) == 2700
    manual = PCA.fit(to_float(data.train_x)).top(8).reconstruct(val).clamp(EPS, 1 - EPS)
    bce = float(torch.nn.functional.binary_cross_entropy(manual, val))
    assert curve["bce"]["8"] == pytest.approx(bce, rel=1e-5)
    caption = next(f["caption"] for f in read_metrics(evaluated)["figures"] if f["file"] == "figures/code_size.png")
    assert "scored on its 300 validation images, the ones its trials were scored on" in caption


def test_pca_has_the_codes_size_and_is_capped_only_without_a_bottleneck():
    assert pca_components(32, 784) == 32
    assert pca_components(32 * 7 * 7, 784) == 784  # no bottleneck: capped where PCA is exact
    assert pca_components(392, 784) == 392  # between a quarter of the pixels and all of them: its own size


def test_without_labels_a_code_as_big_as_the_image_is_still_no_bottleneck():
    """Unlabelled data has no raw-pixels probe row: the image's size comes from the data itself."""
    from sklearn.datasets import load_digits

    from aetune.evaluate.scoring import baseline_rows, leaderboard, variant_row
    from aetune.evaluate.study import NO_BOTTLENECK
    from aetune.models import build_model

    x = torch.from_numpy(np.rint(load_digits().images[:300] * 255 / 16).astype(np.uint8))[:, None]
    data = ImageData("mnist", x[:200], None, x[200:250], None, x[250:], None)
    images = {"mnist": EvalImages.build(data, 0.5)}  # the config's dataset key; 8x8 unlabelled images
    picks = []
    for code in (8, 64):  # 64 = 1 x 8 x 8: no bottleneck
        config = TrialConfig.from_dict({"model": "dense", "code_size": code})
        v = Variant(f"dense{code}", {"selected_on": "validation"}, config, build_model(config, data.shape),
                    {"epoch": 1}, "x.pt", reported={"val_bce": 0.3})
        score_checkpoint(v, images["mnist"], torch.device("cpu"), 0)
        picks.append(v)
    baselines = baseline_rows(picks, images)
    rows = {r["name"]: r for r in leaderboard([variant_row(v) for v in picks] + baselines)}
    assert not any(r.get("model") == "pixels" for r in baselines)
    assert rows["dense64"]["note"] == NO_BOTTLENECK and rows["dense64"]["rank"] is None
    assert rows["dense8"]["rank"] == 1 and not rows["dense8"].get("note")


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
    dense = summary.variants["dense@code_size=8"]
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
    stale = [out / "figures" / "recon_gone.png", out / "figures" / "pixels" / "recon_gone.png"]  # an earlier run's
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a variant no longer evaluated")
    assert evaluate(root, data_root, "--variants", "dense@code_size=8", "truncated", "pickled", "mismatched",
                    "--out", str(out)) == 0
    assert not any(path.exists() for path in stale)
    assert (out / "figures" / "pixels" / "recon_dense_code_size_8.png").is_file()
    skipped = read_metrics(out)["skipped"]
    assert set(skipped) == {"truncated", "pickled", "mismatched"}
    assert "truncated or corrupt" in skipped["truncated"] and "refused" in skipped["pickled"]
    report = (out / "report.html").read_text()
    assert all(f"<b>{name}</b>: checkpoint" in report for name in skipped)
    assert [r["name"] for r in read_metrics(out)["leaderboard"] if r["kind"] == "model"] == ["dense@code_size=8"]
    assert not marker.exists()


def test_not_an_experiment_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "aetune.evaluate", str(tmp_path)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not a finished aetune experiment" in result.stderr


def test_no_finished_trial_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "crashed") == 2
    assert "no finished trial" in capsys.readouterr().err


@pytest.mark.parametrize("where, message", [("file", "is a file, not a folder"),
                                            ("file/sub", "file is a file, not a folder")])
def test_out_that_cannot_be_a_folder_exits_2_with_one_line(experiment, data_root, capsys, tmp_path, where, message):
    (tmp_path / "file").write_text("not a folder")
    assert evaluate(experiment, data_root, "--out", str(tmp_path / where)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aetune: error: --out ") and message in err


def test_metrics_json_is_strict_json(tmp_path):
    """A noiseless eval_noise gives an infinite PSNR: written as null, never as the non-JSON `Infinity`."""
    write_tables(tmp_path, [], {"noisy_input_psnr": math.inf, "scores": [math.nan, 1.5]})
    assert read_metrics(tmp_path) == {"noisy_input_psnr": None, "scores": [None, 1.5]}
    assert (tmp_path / "leaderboard.csv").read_text().startswith("group,rank,name,")


def test_unknown_variant_exits_2(experiment, data_root, capsys):
    assert evaluate(experiment, data_root, "--variants", "nope") == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
