"""What the study found: the helpers over summary.json's trial records, the findings written from a synthetic study
(shaped as summary.json is written), and the linear probe on real MNIST pixels."""
from __future__ import annotations

import copy
import math

import pytest

from aetune.evaluate import study
from aetune.evaluate.baselines import PCA
from aetune.evaluate.findings import findings
from aetune.evaluate.probe import probe_accuracy
from aetune.train.data import to_float


def trial(tid: str, config: dict, state: str = "completed", **metrics) -> dict:
    return {"trial_id": tid, "config": {"seed": int(tid[-1]), **config}, "metrics": metrics,
            "checkpoint": f"x/{tid}/checkpoint.pt", "state": state}


def variant(metric, mode, trials: list[dict], pick: dict, **extra) -> dict:
    return {"trial_id": pick["trial_id"], "config": pick["config"], "metrics": pick["metrics"],
            "checkpoint": pick["checkpoint"], "trial_dir": "x", "metric": metric, "mode": mode,
            "pick_rule": "lowest " + metric if isinstance(metric, str) else "knee of the Pareto front",
            "selected_on": "validation", "split": {"train": 2700, "val": 300, "val_from": "train"},
            "sweep": {}, "trials": len(trials), "errored": [], "diverged": [], "trial_results": trials, "front": [],
            **extra}


def sweep_member(size: int, bces: list[float]) -> dict:
    trials = [trial(f"d{size}_{i}", {"code_size": size, "lr": 10 ** -(2 + i)}, code_size=size, val_bce=b)
              for i, b in enumerate(bces)]
    best = min(trials, key=lambda t: t["metrics"]["val_bce"])
    return variant("val_bce", "min", trials, best, base="dense", sweep={"code_size": size})


@pytest.fixture
def records() -> dict[str, dict]:
    """A code-size sweep of dense, a [val_bce, code_l1] front over l1, and a denoiser searched on val_denoise_bce."""
    sparse_trials = [trial("s1", {"l1": 1e-6}, val_bce=0.10, code_l1=0.9, code_size=32),
                     trial("s2", {"l1": 2e-5}, val_bce=0.11, code_l1=0.4, code_size=32),
                     trial("s3", {"l1": 3e-4}, val_bce=0.14, code_l1=0.2, code_size=32),
                     trial("s4", {"l1": 1e-4}, val_bce=0.15, code_l1=0.5, code_size=32),  # dominated
                     trial("s5", {"l1": 5e-4}, "errored")]
    front = [{k: t[k] for k in ("trial_id", "config", "metrics", "checkpoint")} | {"trial_dir": "x"}
             for t in (sparse_trials[2], sparse_trials[0], sparse_trials[1])]  # unordered, as a search may write it
    noise = [trial(f"n{i}", {"noise_factor": nf}, val_denoise_bce=b, val_bce=0.1, code_size=32)
             for i, (nf, b) in enumerate([(0.1, 0.13), (0.3, 0.11), (0.5, 0.115), (0.7, 0.125)])]
    return {
        **{f"dense@code_size={k}": sweep_member(k, bces)
           for k, bces in ((2, [0.20, 0.19]), (8, [0.14, 0.15]), (32, [0.10, 0.12]))},
        "sparse": variant(["val_bce", "code_l1"], ["min", "min"], sparse_trials, sparse_trials[1], front=front),
        "denoising": variant("val_denoise_bce", "min", noise, noise[1]),
    }


@pytest.fixture
def rows() -> list[dict]:
    def model(name, code, test_bce, val_bce, probe, pca, **extra):
        return {"name": name, "kind": "model", "code": code, "test_bce": test_bce, "val_bce": val_bce,
                "test_probe": probe, "selected_on": "validation", "pca_baseline": pca, "mean_baseline": "mean-image",
                "pixels_baseline": "pixels", **extra}

    return [
        model("dense@code_size=32", 32, 0.101, 0.10, 0.91, "pca-32", test_denoise_bce=0.16),
        model("sparse", 32, 0.112, 0.11, 0.89, "pca-32", test_denoise_bce=0.17),
        model("denoising", 32, 0.104, 0.099, 0.90, "pca-32", test_denoise_bce=0.112),  # best on val, not on test
        model("dense@code_size=8", 8, 0.141, 0.14, 0.85, "pca-8"),
        model("dense@code_size=2", 2, 0.205, 0.19, 0.45, "pca-2"),
        {"name": "pca-32", "kind": "baseline", "code": 32, "test_bce": 0.12, "test_probe": 0.88,
         "test_denoise_bce": 0.2},
        {"name": "pca-8", "kind": "baseline", "code": 8, "test_bce": 0.18, "test_probe": 0.78},
        {"name": "pca-2", "kind": "baseline", "code": 2, "test_bce": 0.20, "test_probe": 0.44},
        {"name": "mean-image", "kind": "baseline", "code": 0, "test_bce": 0.26},
        {"name": "pixels", "kind": "baseline", "model": "pixels", "code": 784, "test_probe": 0.906},
        {"name": "sparse#1", "kind": "front", "trial_id": "s1", "test_bce": 0.102, "test_code_l1": 0.88},
        {"name": "sparse#3", "kind": "front", "trial_id": "s3", "test_bce": 0.142, "test_code_l1": 0.21},
    ]


PCA_CURVE = {2: 0.20, 8: 0.18, 32: 0.12}


def texts(found: list[dict]) -> str:
    return "\n".join(f["text"] for f in found)


# --- helpers over trial records ------------------------------------------------------------------------------------

def test_lower_envelope_keeps_the_best_trial_per_size_in_size_order():
    points = [(8, 0.15, None), (2, 0.2, None), (8, 0.14, None), (32, 0.1, None), (2, 0.19, None)]
    assert study.lower_envelope(points) == [(2, 0.19), (8, 0.14), (32, 0.1)]


def test_trial_points_skip_trials_without_finite_metrics(records):
    points = study.trial_points(records["sparse"]["trial_results"], "val_bce", "code_l1")
    assert [t["trial_id"] for *_, t in points] == ["s1", "s2", "s3", "s4"]  # s5 errored: no metrics
    nan = [trial("t1", {}, val_bce=math.nan, code_l1=0.1)]
    assert study.trial_points(nan, "val_bce", "code_l1") == []


def test_front_is_sorted_along_its_first_objective_whatever_the_mode(records):
    assert [m["trial_id"] for m in study.sorted_front(records["sparse"])] == ["s1", "s2", "s3"]
    flipped = {**records["sparse"], "mode": ["max", "min"]}
    assert [m["trial_id"] for m in study.sorted_front(flipped)] == ["s3", "s2", "s1"]
    assert study.sorted_front(records["denoising"]) == []


def test_objectives_read_one_metric_a_list_or_none():
    assert study.objectives({"metric": "val_bce", "mode": "min"}) == [("val_bce", "min")]
    assert study.objectives({"metric": ["val_bce", "params"], "mode": ["min", "min"]}) == [("val_bce", "min"),
                                                                                            ("params", "min")]
    assert study.objectives({}) == [] and not study.is_multi_objective({})


def test_knobs_exclude_the_seed_and_sweeps_group_by_base(records):
    assert study.varying_keys(t["config"] for t in records["sparse"]["trial_results"]) == ["l1"]
    assert study.groups(records) == {"dense": ["dense@code_size=2", "dense@code_size=8", "dense@code_size=32"],
                                     "sparse": ["sparse"], "denoising": ["denoising"]}
    assert study.code_sizes(records) == [2, 8, 32]


def test_split_of_a_metric_on_the_test_side():
    assert [study.test_metric(m) for m in ("val_bce", "val_denoise_bce", "code_l1", "code_size", "params")] == \
        ["test_bce", "test_denoise_bce", "test_code_l1", "code_size", "params"]


# --- findings --------------------------------------------------------------------------------------------------

def test_findings_are_written_from_the_numbers_and_name_their_split(records, rows):
    found = findings(records, rows, PCA_CURVE, probe_images=9000, eval_noise=0.5)
    assert found and all(f["split"] in ("validation", "test", "validation and test") for f in found)
    assert all(("validation" in f["text"] or "test" in f["text"]) for f in found)
    text = texts(found)
    # code size: the best trial per size against PCA at the same size, on the same (validation) images
    assert "trials' BCE on the validation split against PCA's at the same size on the same images: " \
        "2: 0.19 (dense@code_size=2) vs PCA 0.2; 8: 0.14 (dense@code_size=8) vs PCA 0.18" in text
    # the denoiser's knob, on its own metric, with the noise it is scored at
    assert "noise_factor 0.3 gives the best val_denoise_bce (clean digits from inputs with noise 0.5), 0.11" in text
    # the front end to end, knob and objectives, and the same ends on the test split
    assert "3 of 4 trials are non-dominated" in text
    assert "l1 1e-06 to 0.0003" in text and "val_bce 0.1 -> 0.14 while code_l1 0.9 -> 0.2" in text
    assert "picked #2 by knee of the Pareto front" in text
    assert "test_bce 0.102 -> 0.142, test_code_l1 0.88 -> 0.21" in text
    # a code-size sweep: the curve, never "the best code_size" (a larger code always wins; the guard's point)
    assert "dense swept over code_size, validation split: val_bce of each member's pick by code_size: " \
        "2: 0.19; 8: 0.14; 32: 0.1 (a trade-off curve, not a best" in text
    assert "code_size 32 gives the best" not in text
    # probe: every pick with its PCA of the same size, and raw pixels
    assert "dense@code_size=32 (32 numbers) 91.0% vs pca-32 88.0%" in text and "raw pixels 90.6%" in text
    assert "of 9000 training images" in text
    # the winner is named on the split the picks were selected on, never by its test score
    assert "On the validation split (the one the picks were selected on), denoising reconstructs best of the 5 " \
        "picked models (BCE 0.099); on the test split its BCE is 0.104, vs 0.12 for PCA" in text
    assert "4 of 5 picked models reconstruct better than PCA with as many components as their code (BCE lower by " \
        "6.7% to 21.7%); not dense@code_size=2 (0.205 vs 0.2 for pca-2)" in text
    assert "denoising 0.112, dense@code_size=32 0.16, sparse 0.17; pca-32 0.2" in text
    assert "largest gap: dense@code_size=2, 0.19 validation vs 0.205 test" in text
    assert "Selected on the test split" not in text


def test_a_knob_best_at_the_edge_of_what_was_tried_is_flagged(records, rows):
    edge = copy.deepcopy(records)
    edge["denoising"]["trial_results"][0]["metrics"]["val_denoise_bce"] = 0.05  # noise 0.1: the lowest tried
    text = texts(findings(edge, rows, PCA_CURVE))
    assert "noise_factor 0.1 is the lowest value tried: the best may lie outside the searched range" in text
    assert "outside the searched range" not in texts(findings(records, rows, PCA_CURVE))


def test_selection_on_the_test_split_comes_first(records, rows):
    course = copy.deepcopy(records)
    course["denoising"]["selected_on"] = "test"
    first = findings(course, rows, PCA_CURVE)[0]
    assert first["split"] == "test" and first["text"].startswith("Selected on the test split (val_size: 0")
    assert "denoising was picked by scores on the test split" in first["text"]


def test_only_findings_the_data_supports(records, rows):
    one_size = {"denoising": records["denoising"]}
    text = texts(findings(one_size, rows, PCA_CURVE))
    assert "By code size" not in text and "front" not in text and "swept" not in text
    # a summary from before trial records, fronts and splits: only what the test scores say
    old = {name: {k: r[k] for k in ("trial_id", "config", "metrics", "checkpoint", "trial_dir", "trials",
                                    "errored", "diverged")} for name, r in records.items()}
    old_rows = [{k: v for k, v in r.items() if k not in ("val_bce", "selected_on")} for r in rows]
    found = findings(old, old_rows, {})
    assert found and all(f["split"] == "test" for f in found)
    assert findings({}, [], {}) == []


# --- the probe -------------------------------------------------------------------------------------------------

def test_probe_reads_classes_from_pixels_and_less_from_two_numbers(mnist):
    """3,000 training and 1,000 test images of real MNIST: raw pixels keep the class, a 2-number PCA code much less."""
    train, test = to_float(mnist.train_x), to_float(mnist.test_x)
    pixels = probe_accuracy(train, mnist.train_y, test, mnist.test_y)
    pca = PCA.fit(train)
    accuracy = {k: probe_accuracy(pca.top(k).transform(train), mnist.train_y, pca.top(k).transform(test),
                                  mnist.test_y) for k in (2, 32)}
    assert pixels > 0.80
    assert accuracy[2] < 0.6 < accuracy[32]
    assert 0.1 < accuracy[2]  # well above chance: two numbers still separate some digits


def test_every_package_the_probe_imports_is_declared():
    """threadpoolctl came only through scikit-learn; an import the project does not declare can vanish under it."""
    import ast
    import re
    import sys
    from pathlib import Path

    import tomllib

    import aetune.evaluate.probe

    root = Path(__file__).resolve().parents[1]
    declared = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower()
                for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    tree = ast.parse(Path(aetune.evaluate.probe.__file__).read_text())
    imported = {(node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    distributions = {"sklearn": "scikit-learn"}
    third_party = {distributions.get(m, m) for m in imported if m not in sys.stdlib_module_names and m != "aetune"}
    assert third_party and third_party <= declared, third_party - declared


def test_under_val_size_0_findings_name_the_test_split(records, rows):
    """val_size: 0 (the course protocol): the trials' val_* were measured on the test split, and the text says so."""
    course = copy.deepcopy(records)
    for record in course.values():
        record["selected_on"] = "test"
    found = findings(course, rows, PCA_CURVE, eval_noise=0.5)
    text = texts(found)
    assert "validation split" not in text
    assert "trials' BCE on the test split against PCA's" in text and "dense swept over code_size, test split" in text
    assert "denoising, test split: of 4 trials" in text and "sparse front, test split: " in text
    assert "On the test split (the one the picks were selected on), denoising reconstructs best" in text
    assert all(f["split"] == "test" for f in found if "validation" not in f["text"])


def test_a_sweep_of_a_knob_without_a_known_answer_names_its_best(records, rows):
    swept = copy.deepcopy(records)
    for name in ("dense@code_size=2", "dense@code_size=8", "dense@code_size=32"):
        size = swept[name]["sweep"].pop("code_size")
        swept[name]["sweep"]["lr"] = {2: 0.01, 8: 0.003, 32: 0.001}[size]
    assert "dense swept over lr, validation split: lr 0.001 gives the best val_bce" in texts(findings(swept, rows, {}))
