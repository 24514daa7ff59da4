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
from aetune.evaluate.scoring import leaderboard
from aetune.evaluate.stats import TEST
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
                "pixels_baseline": "pixels", "image_numel": 784, **extra}

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
        *repeat_rows("dense@code_size=32", 32, val=[0.100, 0.101, 0.102], test=[0.100, 0.102, 0.101]),
        *repeat_rows("denoising", 32, val=[0.098, 0.106, 0.100], test=[0.104, 0.112, 0.096]),
        *repeat_rows("dense@code_size=8", 8, val=[0.15, 0.17, 0.16], test=[0.17, 0.19, 0.185]),
    ]


def repeat_rows(name: str, code: int, val: list[float], test: list[float]) -> list[dict]:
    """The rows of a pick's repeats as the evaluation scores them (kind "repeat", named <pick>~seed=N)."""
    return [{"name": f"{name}~seed={i}", "kind": "repeat", "code": code, "val_bce": v, "test_bce": t}
            for i, (v, t) in enumerate(zip(val, test), 1)]


def board(rows: list[dict]) -> list[dict]:
    """The rows as findings get them: through the leaderboard (groups, ranks, the repeats' estimates)."""
    return leaderboard(rows)


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
    found = findings(records, board(rows), PCA_CURVE, probe_images=9000, eval_noise=0.5)
    assert found and all(f["split"] in ("validation", "test", "validation and test") for f in found)
    assert all(("validation" in f["text"] or "test" in f["text"]) for f in found)
    text = texts(found)
    # code size: the best trial per size against PCA at the same size, on the same (validation) images
    assert "trials' BCE on the validation split against PCA's at the same size on the same images: " \
        "2: 0.19 (dense@code_size=2) vs PCA 0.2; 8: 0.14 (dense@code_size=8) vs PCA 0.18" in text
    # the denoiser's knob: one run per trial, so named as the best score, not as a tested best
    assert "denoising, validation split: of 4 trials (one run each; not tested across seeds), noise_factor 0.3 " \
        "scored best on val_denoise_bce (clean images from inputs with noise 0.5), 0.11 (worst of the 4 that ran " \
        "every epoch: 0.13)" in text
    # the front end to end, knob and objectives, and the same ends on the test split
    assert "3 of 4 trials that ran every epoch are non-dominated" in text
    assert "l1 1e-06 to 0.0003" in text and "val_bce 0.1 -> 0.14 while code_l1 0.9 -> 0.2" in text
    assert "picked #2 by knee of the Pareto front" in text
    assert "test_bce 0.102 -> 0.142, test_code_l1 0.88 -> 0.21" in text
    # a code-size sweep: the curve, never "the best code_size" (a larger code always wins; the guard's point)
    assert "dense swept over code_size, validation split: val_bce of each member's pick by code_size: " \
        "2: 0.19; 8: 0.14; 32: 0.1 (a trade-off curve, not a best" in text
    assert "32: 0.1 (denoising) vs PCA 0.12 (each size's best of its trials, one run picked for being lowest: it " \
        "overstates what the size gives; not tested)" in text
    assert "code_size 32 gives the best" not in text
    # probe: every pick with its PCA of the same size, within its code size (the pick's one run), and raw pixels
    assert "code size 8: dense@code_size=8 (8 numbers) 85.0% vs pca-8 78.0% (one pick at this size; not tested); " \
        "code size 32: dense@code_size=32 (32 numbers) 91.0% vs pca-32 88.0%, denoising (32 numbers) 90.0% vs " \
        "pca-32 88.0%, sparse (32 numbers) 89.0% vs pca-32 88.0% (dense@code_size=32 vs denoising: one run; not " \
        "tested); raw pixels 90.6%" in text
    assert "of 9000 training images" in text
    # within a code size, ranked on validation by the repeats' mean; the test difference is inside seed noise
    assert "At code size 32, dense@code_size=32 ranks first of the 3 picks on the validation split (BCE 0.101 ± " \
        "0.0025 over 3 seeds); on the test split 0.101 ± 0.0025 over 3 seeds vs 0.104 ± 0.02 over 3 seeds for " \
        "denoising: dense@code_size=32 vs denoising: indistinguishable at 3 seeds" in text
    assert "reconstructs better than denoising" not in text and "reconstructs best" not in text
    # against PCA of the same size: tested where repeats exist, said untested where not
    assert "[better: dense@code_size=32 0.101 ± 0.0025 over 3 seeds vs 0.12 for pca-32]" in text
    assert "indistinguishable at 3 seeds: dense@code_size=8 0.1817 ± 0.026 over 3 seeds vs 0.18 for pca-8" in text
    assert "[one run; not tested: dense@code_size=2 0.205 (one run) vs 0.2 for pca-2; sparse 0.112 (one run) vs " \
        "0.12 for pca-32]" in text
    assert "within each code size: code size 32: denoising 0.112 (one run), dense@code_size=32 0.16 (one run), " \
        "sparse 0.17 (one run); pca-32 0.2 (denoising vs dense@code_size=32: one run; not tested)" in text
    assert "largest gap: dense@code_size=2, 0.19 validation vs 0.205 test" in text
    assert "Selected on the test split" not in text


def test_every_finding_names_its_test_or_says_it_has_none(records, rows):
    """A claim is tested (the test named), said untested or indistinguishable, or the finding is descriptive."""
    course = copy.deepcopy(records)
    course["denoising"]["selected_on"] = "test"
    found = findings(course, board(rows), PCA_CURVE, probe_images=9000, eval_noise=0.5)
    assert len(found) >= 10
    for f in found:
        assert f.get("descriptive") or any(word in f["text"] for word in (TEST, "not tested", "indistinguishable")), \
            f["text"]
    assert [f["text"][:20] for f in found if f.get("descriptive")] == [
        "Selected on the test", "dense swept over cod", "Validation vs test: "]


def test_a_knob_best_at_the_edge_of_what_was_tried_is_flagged(records, rows):
    edge = copy.deepcopy(records)
    edge["denoising"]["trial_results"][0]["metrics"]["val_denoise_bce"] = 0.05  # noise 0.1: the lowest tried
    text = texts(findings(edge, board(rows), PCA_CURVE))
    assert "noise_factor 0.1 is the lowest value tried: the best may lie outside the searched range" in text
    assert "outside the searched range" not in texts(findings(records, board(rows), PCA_CURVE))


def test_selection_on_the_test_split_comes_first(records, rows):
    course = copy.deepcopy(records)
    course["denoising"]["selected_on"] = "test"
    first = findings(course, board(rows), PCA_CURVE)[0]
    assert first["split"] == "test" and first["text"].startswith("Selected on the test split (val_size: 0")
    assert "denoising was picked by scores on the test split" in first["text"]


def test_only_findings_the_data_supports(records, rows):
    one_size = {"denoising": records["denoising"]}
    text = texts(findings(one_size, board(rows), PCA_CURVE))
    assert "By code size" not in text and "front" not in text and "swept" not in text
    # a summary from before trial records, fronts and splits: only what the test scores say
    old = {name: {k: r[k] for k in ("trial_id", "config", "metrics", "checkpoint", "trial_dir", "trials",
                                    "errored", "diverged")} for name, r in records.items()}
    old_rows = board([{k: v for k, v in r.items() if k not in ("val_bce", "selected_on")} for r in rows
                      if r["kind"] != "repeat"])
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


def findings_selected_on(split: str, records: dict, rows: list) -> list:
    """The findings of the study as if every pick had been selected on `split`."""
    relabelled = {name: {**record, "selected_on": split} for name, record in copy.deepcopy(records).items()}
    return findings(relabelled, board([{**r, "selected_on": split} if r["kind"] == "model" else r for r in rows]),
                    PCA_CURVE, eval_noise=0.5)


def test_under_val_size_0_findings_name_the_test_split(records, rows):
    """val_size: 0 (the course protocol): the trials' val_* were measured on the test split, and the text says so."""
    found = findings_selected_on("test", records, rows)
    text = texts(found)
    assert "validation split" not in text
    assert "trials' BCE on the test split against PCA's" in text and "dense swept over code_size, test split" in text
    assert "denoising, test split: of 4 trials" in text and "sparse front, test split: " in text
    assert "At code size 32, dense@code_size=32 ranks first of the 3 picks on the test split" in text
    assert all(f["split"] == "test" for f in found)


def test_picks_selected_on_training_loss_are_not_called_validated(records, rows):
    """metric: train_loss selects on the training images: the ranking finding names that split, not validation."""
    found = findings_selected_on("training", records, rows)
    ranked = [f for f in found if "ranks first" in f["text"]]
    assert ranked and all(f["split"] == "training and test" and "on the training split" in f["text"] for f in ranked)


def lr_sweep(records: dict, runs: dict[float, list[float]] | None) -> dict:
    """The dense sweep turned into a sweep over lr (0.01, 0.003, 0.001), each member's pick repeated (runs: the
    repeats' val_bce by lr) or not (None)."""
    swept = copy.deepcopy(records)
    for name in ("dense@code_size=2", "dense@code_size=8", "dense@code_size=32"):
        member = swept[name]
        member["sweep"] = {"lr": {2: 0.01, 8: 0.003, 32: 0.001}[member["sweep"]["code_size"]]}
        member["metrics"]["code_size"] = 32  # one code size: lr is a knob without a known answer
        if runs:
            member["repeats"] = [{"seed": i, "metrics": {"val_bce": v}} for i, v in enumerate(runs[member["sweep"]["lr"]])]
    return swept


def test_a_sweeps_best_value_is_claimed_only_when_it_beats_every_other_across_seeds(records, rows):
    apart = lr_sweep(records, {0.01: [0.150, 0.152, 0.151], 0.003: [0.100, 0.101, 0.102], 0.001: [0.130, 0.131, 0.129]})
    text = texts(findings(apart, board(rows), {}))
    assert "dense swept over lr, validation split: lr 0.003 gives the best val_bce (Welch's t-test, Holm-corrected " \
        "over the finding's comparisons, 5% level) (0.01: 0.151 ± 0.0025 (3 seeds); 0.003: 0.101 ± 0.0025 (3 seeds); " \
        "0.001: 0.13 ± 0.0025 (3 seeds))." in text
    close = lr_sweep(records, {0.01: [0.150, 0.152, 0.151], 0.003: [0.100, 0.110, 0.120], 0.001: [0.105, 0.125, 0.115]})
    text = texts(findings(close, board(rows), {}))
    assert "no value of lr is better than every other: lr 0.003 has the best mean, indistinguishable at 3 seeds " \
        "from 0.001" in text
    assert "gives the best" not in text


def test_a_sweeps_best_of_one_run_each_is_untested_and_flagged_on_the_edge(records, rows):
    """The old finding "lr 0.001 gives the best val_bce" from one run per value, at the lowest lr tried."""
    text = texts(findings(lr_sweep(records, None), board(rows), {}))
    assert "dense swept over lr, validation split: lr 0.001 has the best val_bce of one run each; not tested " \
        "(0.01: 0.19; 0.003: 0.14; 0.001: 0.1); lr 0.001 is the lowest value tried: the best may lie outside the " \
        "range." in text
    assert "gives the best" not in text


def test_a_sweep_whose_values_change_the_code_size_is_a_curve_not_a_best(records, rows):
    """e.g. filter lists: [8, 8] and [16, 16] are codes of 392 and 784 numbers."""
    swept = lr_sweep(records, {0.01: [0.150, 0.152, 0.151], 0.003: [0.100, 0.101, 0.102],
                               0.001: [0.130, 0.131, 0.129]})
    for name, size in (("dense@code_size=2", 2), ("dense@code_size=8", 8)):
        swept[name]["metrics"]["code_size"] = size
    text = texts(findings(swept, board(rows), {}))
    assert "(a trade-off curve, not a best: the values give codes of different sizes)" in text
    assert "gives the best" not in text


def test_stopped_trials_are_left_out_of_front_counts_and_of_worst(records, rows):
    stopped = copy.deepcopy(records)
    stopped["sparse"]["trial_results"].append(trial("s6", {"l1": 9e-4}, "stopped", val_bce=0.5, code_l1=0.01,
                                                    code_size=32))
    stopped["denoising"]["trial_results"].append(trial("n9", {"noise_factor": 0.9}, "stopped", val_denoise_bce=0.4,
                                                       val_bce=0.3, code_size=32))
    text = texts(findings(stopped, board(rows), {}))
    assert "3 of 4 trials that ran every epoch are non-dominated (1 stopped early left out)" in text
    assert "(worst of the 4 that ran every epoch: 0.13; 1 stopped early by ASHA left out)" in text


def test_a_code_without_a_bottleneck_is_never_ranked_nor_called_best(records, rows):
    wide = rows + [{"name": "conv", "kind": "model", "code": 784, "image_numel": 784, "test_bce": 0.05,
                    "val_bce": 0.04,
                    "selected_on": "validation", "pca_baseline": "pca-196"},
                   {"name": "pca-196", "kind": "baseline", "code": 196, "test_bce": 0.07}]
    ranked = board(wide)
    conv = next(r for r in ranked if r["name"] == "conv")
    assert conv["rank"] is None and conv["note"].startswith("no bottleneck")
    pca = next(r for r in ranked if r["name"] == "pca-196" and r.get("group") == 784)
    assert pca["note"] == "PCA capped at 196 components (the code has 784)"
    text = texts(findings(records, ranked, {}))
    assert "conv: the code has at least as many numbers as the image (no bottleneck), so it is not ranked" in text
    assert "conv ranks first" not in text and "conv 0.05" not in text  # nor compared with a capped PCA


def test_the_leaderboard_groups_by_code_size_with_pca_first_and_ranks_within(rows):
    ranked = board(rows)
    groups = [(r.get("group"), r["name"], r["rank"]) for r in ranked if r["kind"] in ("model", "baseline")
              and r.get("group") is not None]
    assert groups == [(2, "pca-2", None), (2, "dense@code_size=2", 1),
                      (8, "pca-8", None), (8, "dense@code_size=8", 1),
                      (32, "pca-32", None), (32, "dense@code_size=32", 1), (32, "denoising", 2), (32, "sparse", 3)]
    dense = next(r for r in ranked if r["name"] == "dense@code_size=32")
    t_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5 % quantile (tables)
    values = [0.100, 0.102, 0.101]
    sd = math.sqrt(sum((v - 0.101) ** 2 for v in values) / 2)
    assert dense["repeats"] == 3 and dense["test_bce_mean"] == pytest.approx(0.101)
    assert dense["test_bce_ci"] == pytest.approx(t_975_2 * sd / math.sqrt(3))
    assert "repeats" not in next(r for r in ranked if r["name"] == "sparse")  # no repeats: one run, no interval


def test_a_vaes_code_size_sweep_on_its_negative_elbo_names_a_best_size(records, rows):
    """On val_loss, a VAE's negative ELBO (its rows say likelihood) charges each latent dimension its KL: the best
    code size is a finding, tested like any knob; on a loss that is no likelihood bound it stays a curve."""
    vae = {}
    for size, runs in ((2, [0.150, 0.151, 0.152]), (8, [0.100, 0.101, 0.102]), (32, [0.120, 0.121, 0.122])):
        member = sweep_member(size, [runs[0]])
        member["metric"], member["base"], member["pick_rule"] = "val_loss", "vae", "lowest val_loss"
        member["metrics"] = {"val_loss": runs[0], "code_size": size}
        member["repeats"] = [{"seed": i, "metrics": {"val_loss": v}} for i, v in enumerate(runs)]
        vae[f"vae@code_size={size}"] = member
    picked = [{"name": name, "kind": "model", "code": r["metrics"]["code_size"], "likelihood": True}
              for name, r in vae.items()]
    text = texts(findings(vae, board(picked), {}))
    assert "vae swept over code_size, validation split: code_size 8 gives the best val_loss (Welch's t-test" in text
    assert "trade-off curve" not in text
    no_bound = texts(findings(vae, board([dict(r, likelihood=False) for r in picked]), {}))
    assert "vae swept over code_size, validation split: val_loss of each member's pick by code_size: 2: 0.151 ± " \
        "0.0025 (3 seeds); 8: 0.101 ± 0.0025 (3 seeds); 32: 0.121 ± 0.0025 (3 seeds) (a trade-off curve" in no_bound
