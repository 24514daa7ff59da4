"""The search driver end to end on real Ray and real MNIST: outputs, TensorBoard, faults, resume, pruning."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
import torch
from conftest import (DATA_ROOT, REPO, SEARCH, run_search, search_env, study_name, study_states, study_trials,
                      write_space)
from ray.tune.search import Searcher
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import aetune.search.__main__ as search
from aetune.experiment import Summary
from aetune.models import build_model
from aetune.pareto import dominates
from aetune.search import trainable
from aetune.search.picks import RESULT_METRICS
from aetune.search.searchers import VariantRouter
from aetune.train.data import worker_bytes
from aetune.train.logger import IMAGE_TAG, extra_tag, scalar_tags

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers run this file's wrapped trainables


def epochs_of(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def trial_dirs(experiment: Path, variant: str, repeats: bool = False) -> list[Path]:
    """The trial folders of one variant's search (with `repeats`: of its pick's repeats instead), read from the
    config Tune wrote in each: runs/<name>/<variant>-<trial id>/params.json."""
    def repeated(folder: Path) -> bool | None:
        try:
            return "repeat" in json.loads((folder / "params.json").read_text())
        except (OSError, ValueError):  # not there yet, or half written: a trial starting now
            return None

    return sorted(p for p in experiment.glob(f"{variant}-*") if p.is_dir() and repeated(p) is repeats)


# --- end to end ----------------------------------------------------------------------------------------------------

SWEEP = ("dense@code_size=8", "dense@code_size=16")
VARIANTS = {*SWEEP, "denoising", "sparse", "conv", "vae"}


def study(experiment: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=study_name(study_storage(experiment), name), storage=study_storage(experiment))


def study_storage(experiment: Path) -> str:
    """Where an experiment keeps its Optuna studies by default."""
    return f"sqlite:///{experiment / 'optuna.db'}"


def test_summary_names_a_loadable_pick_per_variant(searched):
    summary = Summary.read(searched)
    assert set(summary.variants) == VARIANTS
    assert (searched / "space.yaml").is_file()
    for name, pick in summary.variants.items():
        assert pick.trials == len(pick.trial_results) == (3 if name == "sparse" else 2)
        assert not pick.errored and not pick.diverged
        assert pick.split | {"train": 2700, "val": 300, "val_from": "train"} == pick.split
        assert pick.selected_on == "validation"
        bundle = torch.load(searched / pick.checkpoint, weights_only=True)
        assert bundle["config"] == pick.config and bundle["epoch"] == pick.metrics["epoch"]
        assert bundle["history"][-1]["val_loss"] == pytest.approx(pick.metrics["val_loss"])
        if name != "sparse":  # single objective: the best epoch of any trial
            every_epoch = [json.loads(line)[pick.metric] for t in trial_dirs(searched, name)
                           for line in (t / "result.json").read_text().splitlines()]
            assert pick.metrics[pick.metric] == min(every_epoch)
    assert summary.variants["denoising"].metric == "val_denoise_bce"
    assert summary.variants["vae"].metric == "val_loss" and summary.variants["conv"].metric == "val_bce"


def test_a_sweep_runs_one_study_per_value(searched):
    summary = Summary.read(searched)
    for name, size in zip(SWEEP, (8, 16)):
        member = summary.variants[name]
        assert member.sweep == {"code_size": size} and member.base == "dense"
        assert {t["config"]["code_size"] for t in member.trial_results} == {size} == {member.metrics["code_size"]}
        assert len(study(searched, name).trials) == 2
    created = json.loads((searched / "experiment.json").read_text())["created"]
    assert set(optuna.get_all_study_names(study_storage(searched))) == {f"small/{created}/{v}" for v in VARIANTS}


def test_a_multi_objective_variant_records_its_pareto_front_and_picks_the_knee(searched):
    sparse = Summary.read(searched).variants["sparse"]
    assert sparse.metric == ["val_bce", "code_l1"] and sparse.mode == ["min", "min"]
    points = {t["trial_id"]: (t["metrics"]["val_bce"], t["metrics"]["code_l1"]) for t in sparse.trial_results}
    members = [m["trial_id"] for m in sparse.front]
    assert members and sparse.trial_id == knee_by_hand([points[m] for m in members], members)
    for trial_id, point in points.items():
        dominated = any(dominates(other, point, ["min", "min"]) for other in points.values())
        assert dominated == (trial_id not in members)
    for member in sparse.front:  # every member is evaluable: its last epoch's checkpoint
        bundle = torch.load(searched / member["checkpoint"], weights_only=True)
        assert bundle["epoch"] == 3 and bundle["config"] == member["config"]
    optuna_study = study(searched, "sparse")
    assert optuna_study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    told = {trial_id: tuple(t.values) for trial_id, t in study_trials(study_storage(searched), "sparse").items()}
    assert told == {trial_id: pytest.approx(point) for trial_id, point in points.items()}


def knee_by_hand(points: list[tuple[float, float]], ids: list[str]) -> str:
    """The knee rule written out for two objectives to minimise: each scaled to [0, 1] over the front, the member
    nearest (0, 0); a front of one or two: its lowest first objective."""
    if len(points) < 3:
        return ids[min(range(len(points)), key=lambda i: points[i][0])]
    lows, highs = [min(c) for c in zip(*points)], [max(c) for c in zip(*points)]
    scaled = [[(v - lo) / (hi - lo) for v, lo, hi in zip(p, lows, highs)] for p in points]
    return ids[min(range(len(points)), key=lambda i: scaled[i][0] ** 2 + scaled[i][1] ** 2)]


def test_each_pick_is_repeated_under_new_seeds_after_its_search_ended(searched):
    """repeats: 2 on the sweep and on the front: each pick's config (a front's picked member) trained again from
    scratch under the pick's seed + 1 and + 2, every epoch (no ASHA), after the last trial of its own search ended;
    no Optuna study hears of them; the other variants have none."""
    summary = Summary.read(searched)
    for name, v in summary.variants.items():
        if name not in (*SWEEP, "sparse"):
            assert v.repeats == [] and v.repeats_wanted == 0 and not trial_dirs(searched, name, repeats=True)
            continue
        folders = trial_dirs(searched, name, repeats=True)
        assert v.repeats_wanted == 2 and len(v.repeats) == len(folders) == 2
        assert [r["seed"] for r in v.repeats] == [v.config["seed"] + 1, v.config["seed"] + 2]
        search_ended = max(json.loads(line)["timestamp"] for t in trial_dirs(searched, name)
                           for line in (t / "result.json").read_text().splitlines())
        for repeat in v.repeats:
            assert repeat["repeat_of"] == v.trial_id and repeat["state"] == "completed"
            assert {k: x for k, x in repeat["config"].items() if k != "seed"} == \
                {k: x for k, x in v.config.items() if k != "seed"}
            bundle = torch.load(searched / repeat["checkpoint"], weights_only=True)
            assert bundle["config"] == repeat["config"] and bundle["config"]["seed"] == repeat["seed"]
            results = [json.loads(line) for line in
                       (searched / repeat["trial_dir"] / "result.json").read_text().splitlines()]
            assert [r["epoch"] for r in results] == [1, 2, 3]
            assert results[0]["timestamp"] - results[0]["time_this_iter_s"] >= search_ended - 1  # whole seconds
        assert not {r["trial_id"] for r in v.repeats} & set(study_trials(study_storage(searched), name))
    assert len(study(searched, "sparse").trials) == 3


def test_every_trial_reserves_memory_for_its_own_copy_of_the_data(searched):
    """Ray runs on a node only as many trials as their copies of the images fit: each trial's placement group asks
    for the worker's peak (worker_bytes) of the split its variant read, as recorded in summary.json."""
    splits = [v["split"] for v in json.loads((searched / "summary.json").read_text())["variants"].values()]
    state = json.loads(max(searched.glob("experiment_state-*.json")).read_text())
    bundles = [ray.cloudpickle.loads(bytes.fromhex(json.loads(raw)["placement_group_factory"])).bundles
               for raw, _ in state["trial_data"]]
    assert len(bundles) == len(list(searched.glob("*/result.json")))
    assert all(b == [{"CPU": 1.0, "memory": float(max(map(worker_bytes, splits)))}] for b in bundles)  # no GPU
    assert splits[0]["read"] == 60000  # MNIST's whole training file, whatever train_size keeps
    assert max(map(worker_bytes, splits)) == 3 * 60000 * 784  # reading it: larger than what training holds


def test_each_trial_writes_scalars_images_and_hparams(searched):
    runs = trial_dirs(searched, "denoising") + trial_dirs(searched, "vae")
    assert len(runs) == 4
    for run in runs:
        events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
        tags = events.Tags()
        per_image = "vae" in run.name  # the VAE's negative ELBO, in nats per image, charts apart
        expected = set(scalar_tags(per_image).values()) | ({extra_tag("kl")} if per_image else set())
        assert set(tags["scalars"]) == expected
        assert [e.step for e in events.Scalars(scalar_tags(per_image)["val_loss"])] == [1, 2, 3]
        assert tags["images"] == [IMAGE_TAG]
        image = events.Images(IMAGE_TAG)[-1]
        rows = 3 if "denoising" in str(run) else 2  # input, noisy input, output
        assert image.height == rows * 30 + 2 and image.width == 8 * 30 + 2
        plugins = events.PluginTagToContent("hparams")
        assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
        start = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        assert b"noise_factor" in start and b"code_numbers" in start


# --- faults ---------------------------------------------------------------------------------------------------------

def crash_once_after_two_epochs(config, **kwargs):
    """The real trainable, made to die (like a lost worker) before its third report, once."""
    marker = Path(os.environ["AETUNE_TEST_MARKER"])
    report = trainable.tune.report
    calls = []

    def flaky_report(metrics, checkpoint=None):
        calls.append(metrics["epoch"])
        if metrics["epoch"] == 3 and not marker.exists():
            marker.write_text(str(calls))
            raise RuntimeError("injected crash")
        report(metrics, checkpoint=checkpoint)

    trainable.tune.report = flaky_report
    try:
        trainable.train_trial(config, **kwargs)
    finally:
        trainable.tune.report = report


def always_fails_for_batch_63(config, **kwargs):
    if config["batch_size"] == 63:
        raise RuntimeError("persistent failure for batch size 63")
    trainable.train_trial(config, **kwargs)


FAULT_SPACE = """\
    epochs: 4
    samples: 1
    searcher: grid
    scheduler: fifo
    resources: {cpus: 1}
    defaults: {train_size: 1500, test_size: 300, hidden_layers: [32], code_size: 8}
    variants:
      dense:
        model: dense
        batch_size: BATCHES
        lr: LRS
"""


def test_crashed_trial_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AETUNE_TEST_MARKER", str(tmp_path / "crashed"))
    space = write_space(tmp_path / "s.yaml", FAULT_SPACE.replace("BATCHES", "64").replace("LRS", "0.001"))
    code = search.main(["--space", str(space), "--storage", str(tmp_path), "--name", "retry", "--quiet",
                        "--data-root", str(DATA_ROOT)], trainable=crash_once_after_two_epochs)
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "crashed").read_text() == "[1, 2, 3]"  # it did crash at epoch 3
    [trial] = trial_dirs(tmp_path / "retry", "dense")
    assert epochs_of(trial) == [1, 2, 3, 4]  # resumed at 3, not 1: no epoch ran twice
    summary = Summary.read(tmp_path / "retry")
    assert summary.variants["dense"].metrics["epoch"] == 4 and not summary.variants["dense"].errored


def test_diverged_and_failing_trials_end_alone_and_the_best_ignores_them(tmp_path, capsys):
    space = write_space(tmp_path / "s.yaml", FAULT_SPACE.replace("BATCHES", "{grid: [63, 64]}")
                        .replace("LRS", "{grid: [0.001, 1.0e+30]}"))
    code = search.main(["--space", str(space), "--storage", str(tmp_path), "--name", "faults", "--quiet",
                        "--data-root", str(DATA_ROOT)], trainable=always_fails_for_batch_63)
    out, err = capsys.readouterr()
    assert code == 1  # an errored trial
    best = Summary.read(tmp_path / "faults").variants["dense"]
    assert best.trials == 4 and len(best.errored) == 2 and len(best.diverged) == 1
    assert best.config["batch_size"] == 64 and best.config["lr"] == 0.001 and best.metrics["epoch"] == 4
    for error in best.errored:
        assert "persistent failure" in (tmp_path / "faults" / error["error_file"]).read_text()
        assert error["trial_id"] in out and "ERROR" in out
        # --quiet still prints each error as it happens, with its error file
        assert f"persistent failure for batch size 63; error file: {tmp_path / 'faults' / error['error_file']})" in err
    assert "diverged" in out


def test_asha_stopped_trials_are_pruned_in_the_optuna_study(tmp_path):
    space = write_space(tmp_path / "s.yaml", """\
        epochs: 4
        samples: 8
        searcher: optuna
        scheduler: asha
        asha: {grace_period: 1, reduction_factor: 2}
        resources: {cpus: 1}
        defaults: {train_size: 1500, test_size: 300, hidden_layers: [32], code_size: 8}
        variants:
          dense:
            model: dense
            lr: {loguniform: [1.0e-5, 1.0e-1]}
        """)
    run = run_search("--space", str(space), "--storage", str(tmp_path), "--name", "asha", "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    state = {i: s.name for i, s in study_states(study_storage(tmp_path / "asha"), "dense").items()}
    epochs = {t.name.removeprefix("dense-"): epochs_of(t) for t in trial_dirs(tmp_path / "asha", "dense")}
    assert len(state) == len(epochs) == 8
    stopped = [t for t, e in epochs.items() if e[-1] < 4]
    assert stopped, "ASHA stopped no trial"
    for trial_id, seen in epochs.items():
        assert state[trial_id] == ("PRUNED" if seen[-1] < 4 else "COMPLETE")


# --- resume after the driver is killed ------------------------------------------------------------------------------

def kill_processes_with(environment_entry: str) -> None:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and environment_entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_resume_after_sigkill_finishes_without_rerunning_anything(tmp_path):
    space = write_space(tmp_path / "s.yaml", """\
        epochs: 4
        samples: 1
        searcher: grid
        scheduler: fifo
        resources: {cpus: 1}
        defaults: {train_size: 4000, test_size: 500, hidden_layers: [64]}
        variants:
          first:
            model: dense
            lr: {grid: [0.001, 0.002, 0.004, 0.008]}
          second:
            model: dense
            lr: {grid: [0.001, 0.002]}
        """)
    args = ["--space", str(space), "--storage", str(tmp_path), "--name", "killed", "--quiet"]
    marker = f"AETUNE_TEST_DRIVER={tmp_path}"  # inherited by the local Ray it starts: how we find all of it
    driver = subprocess.Popen([*SEARCH, *args], cwd=REPO, env=search_env(AETUNE_TEST_DRIVER=str(tmp_path)),
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    experiment = tmp_path / "killed"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once one trial has finished and others have not
        done = [t for t in trial_dirs(experiment, "first") if (t / "result.json").exists() and len(epochs_of(t)) == 4]
        if done:
            break
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, at once; then the Ray it started (own sessions)
    driver.wait()
    kill_processes_with(marker)
    before = {t.name: epochs_of(t) for t in trial_dirs(experiment, "first") if (t / "result.json").exists()}
    assert any(len(e) == 4 for e in before.values())
    assert not (tmp_path / "killed" / "summary.json").exists()

    run = run_search("--storage", str(tmp_path), "--name", "killed", "--resume", "--quiet")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = Summary.read(tmp_path / "killed")
    assert summary.variants["first"].trials == 4 and summary.variants["second"].trials == 2
    for name in ("first", "second"):
        for trial in trial_dirs(experiment, name):
            assert epochs_of(trial) == [1, 2, 3, 4], trial  # every epoch once: no gap, no repeat
    for name, epochs in before.items():  # finished trials were not run again
        if len(epochs) == 4:
            assert epochs_of(experiment / name) == epochs


# --- the test split cannot influence a search ------------------------------------------------------------------------

ISOLATION_SPACE = """\
    epochs: 2
    samples: 2
    searcher: optuna
    scheduler: fifo
    metric: val_bce
    resources: {cpus: 1}
    defaults: {train_size: 1500, test_size: 300, hidden_layers: [32], code_size: 8, batch_size: 64}
    variants:
      dense:
        model: dense
        lr: {loguniform: [1.0e-3, 1.0e-2]}
      denoising:
        model: dense
        noise_factor: {uniform: [0.0, 0.6]}
        metric: val_denoise_bce
"""


def data_root_with_blank_test_images(folder: Path) -> Path:
    """A copy of the MNIST root whose test images are all zeros (same file sizes and headers)."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (DATA_ROOT / "MNIST" / "raw").glob("*-ubyte"):
        data = source.read_bytes()
        blank = source.name.startswith("t10k-images")
        (raw / source.name).write_bytes(data[:16] + bytes(len(data) - 16) if blank else data)
    return folder


def normalised(experiment: Path) -> tuple[str, dict[str, list[list]]]:
    """summary.json and every trial's per-epoch results, with Ray's random trial ids named by their (seeded,
    reproducible) configs, and the experiment's name and data root taken out: what must not change when only the
    test images do."""
    trials = {t.name.removeprefix(f"{variant}-"): t for variant in ("dense", "denoising")
              for t in trial_dirs(experiment, variant)}
    order = sorted(trials, key=lambda trial_id: (trials[trial_id] / "params.json").read_text())  # variant included
    label = {trial_id: f"trial-{i}" for i, trial_id in enumerate(order)}
    summary = json.loads((experiment / "summary.json").read_text())
    root, _ = summary.pop("data_root"), summary.pop("name")
    text = json.dumps(summary, sort_keys=True).replace(root, "<data root>")  # the split names where it read from
    for trial_id, name in label.items():
        text = text.replace(trial_id, name)
    epochs = {label[trial_id]: [[json.loads(line)[k] for k in RESULT_METRICS]
                                for line in (trial / "result.json").read_text().splitlines()]
              for trial_id, trial in trials.items()}
    return text, epochs


def test_the_test_split_cannot_influence_a_search(tmp_path):
    space = write_space(tmp_path / "s.yaml", ISOLATION_SPACE)
    blank = data_root_with_blank_test_images(tmp_path / "blank")
    runs = {}
    for name, root in (("real", DATA_ROOT), ("blank", blank)):
        run = run_search("--space", str(space), "--storage", str(tmp_path), "--name", name, "--quiet",
                         "--data-root", str(root))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        runs[name] = normalised(tmp_path / name)
    assert runs["real"] == runs["blank"]  # bit-equal: no trial, searcher or pick read a test image
    assert len(runs["real"][1]) == 4 and all(len(epochs) == 2 for epochs in runs["real"][1].values())

    # The course protocol (val_size: 0) validates on the test split, and says so.
    course = write_space(tmp_path / "course.yaml", ISOLATION_SPACE.replace("batch_size: 64", "batch_size: 64, "
                                                                                          "val_size: 0"))
    run = run_search("--space", str(course), "--storage", str(tmp_path), "--name", "course", "--quiet",
                     "--data-root", str(blank))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "selected on the TEST split" in run.stdout
    summary = Summary.read(tmp_path / "course")
    real = Summary.read(tmp_path / "real")
    for name in ("dense", "denoising"):
        assert summary.variants[name].selected_on == "test" and real.variants[name].selected_on == "validation"
        assert summary.variants[name].split | {"train": 1500, "val": 300, "val_from": "test"} == \
            summary.variants[name].split
        assert summary.variants[name].metrics["val_bce"] != real.variants[name].metrics["val_bce"]


class Counting:
    """A sub-searcher that hands out numbered configs."""

    def __init__(self):
        self.count = 0

    def suggest(self, trial_id):
        self.count += 1
        return {"n": self.count}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def test_the_router_spreads_trials_over_variants_and_starts_the_costliest_first():
    """Among the variants with the fewest trials in flight, the costliest gets the next trial: the long trials
    start first instead of becoming the tail every other slot waits for."""
    costs = {"dense": 1.0, "conv": 50.0, "vae": 5.0}
    router = VariantRouter({name: Counting() for name in costs}, dict.fromkeys(costs, 2), costs)
    first = [router.suggest(f"t{i}")["variant"] for i in range(4)]
    assert first == ["conv", "vae", "dense", "conv"]  # one each, costliest first (not the space's order), again
    router.on_trial_complete("t0")  # a conv trial ends, but conv's budget is spent
    assert [router.suggest(f"t{i}")["variant"] for i in (4, 5)] == ["vae", "dense"]
    assert router.suggest("t6") == Searcher.FINISHED
    assert {name: s.count for name, s in router.searchers.items()} == dict.fromkeys(costs, 2)


def test_training_flops_rank_the_families_and_count_recurrent_layers():
    flops = {name: build_model(config).training_flops() for name, config in {
        "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
        "conv": {"model": "conv", "filters": [16, 8, 8]},
        "denoising": {"model": "conv", "filters": [32, 32], "noise_factor": 0.5},
        "lstm": {"model": "lstm", "hidden_layers": [100], "code_size": 30}}.items()}
    assert flops["dense"] < flops["conv"] < flops["denoising"]
    lstm_layers = 3 * 8 * 28 * (100 * (28 + 100) + 30 * (100 + 30) + 100 * (30 + 100))  # 28 rows, 3 LSTMs
    assert lstm_layers < flops["lstm"] < 1.1 * lstm_layers  # the dense row layer adds a little


def test_a_router_saved_before_it_had_costs_resumes_in_the_space_order():
    router = VariantRouter({name: Counting() for name in ("dense", "conv")}, {"dense": 1, "conv": 1},
                           {"dense": 1.0, "conv": 50.0})
    del router.__dict__["costs"]  # what an experiment saved by an earlier aetune restores
    assert [router.suggest(f"t{i}")["variant"] for i in range(2)] == ["dense", "conv"]
