"""The search driver end to end on real Ray and real MNIST: outputs, TensorBoard, faults, resume, pruning."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aetune import search, trainable
from aetune.experiment import Summary
from aetune.tb import IMAGE_TAG, SCALAR_TAGS
from conftest import DATA_ROOT, REPO, run_search, write_space

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers run this file's wrapped trainables


def epochs_of(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def trial_dirs(variant_dir: Path) -> list[Path]:
    return sorted(p for p in variant_dir.glob("trial_*") if p.is_dir())


# --- end to end ----------------------------------------------------------------------------------------------------

def test_summary_names_a_loadable_best_checkpoint_per_variant(searched):
    summary = Summary.read(searched)
    assert set(summary.variants) == {"dense", "denoising", "sparse", "conv", "vae"}
    assert (searched / "space.yaml").is_file()
    for name, best in summary.variants.items():
        assert best.trials == 2 and not best.errored and not best.diverged
        bundle = torch.load(searched / best.checkpoint, weights_only=True)
        assert bundle["config"] == best.config
        assert bundle["history"][-1]["val_loss"] == pytest.approx(best.metrics["val_loss"])
        all_best = [json.loads(line)["val_loss"] for t in trial_dirs(searched / name)
                    for line in (t / "result.json").read_text().splitlines()]
        assert best.metrics["val_loss"] == min(all_best)


def test_each_trial_writes_scalars_images_and_hparams(searched):
    runs = trial_dirs(searched / "denoising") + trial_dirs(searched / "vae")
    assert len(runs) == 4
    for run in runs:
        events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
        tags = events.Tags()
        expected = {tag for key, tag in SCALAR_TAGS.items() if key != "kl" or "vae" in str(run)}
        assert set(tags["scalars"]) == expected
        assert [e.step for e in events.Scalars("loss/val")] == [1, 2, 3]
        assert tags["images"] == [IMAGE_TAG]
        image = events.Images(IMAGE_TAG)[-1]
        rows = 3 if "denoising" in str(run) else 2  # input, noisy input, output
        assert image.height == rows * 30 + 2 and image.width == 8 * 30 + 2
        plugins = events.PluginTagToContent("hparams")
        assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
        start = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        assert b"noise_factor" in start and b"code_size" in start


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


def always_fails_for_code_size_7(config, **kwargs):
    if config["code_size"] == 7:
        raise RuntimeError("persistent failure for code_size 7")
    trainable.train_trial(config, **kwargs)


FAULT_SPACE = """\
    epochs: 4
    samples: 1
    searcher: grid
    scheduler: fifo
    resources: {cpus: 1}
    defaults: {train_size: 1500, test_size: 300, hidden_layers: [32]}
    variants:
      dense:
        model: dense
        code_size: CODE_SIZES
        lr: LRS
"""


def test_crashed_trial_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AETUNE_TEST_MARKER", str(tmp_path / "crashed"))
    space = write_space(tmp_path / "s.yaml", FAULT_SPACE.replace("CODE_SIZES", "8").replace("LRS", "0.001"))
    code = search.main(["--space", str(space), "--storage", str(tmp_path), "--name", "retry", "--quiet",
                        "--data-root", str(DATA_ROOT)], trainable=crash_once_after_two_epochs)
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "crashed").read_text() == "[1, 2, 3]"  # it did crash at epoch 3
    [trial] = trial_dirs(tmp_path / "retry" / "dense")
    assert epochs_of(trial) == [1, 2, 3, 4]  # resumed at 3, not 1: no epoch ran twice
    summary = Summary.read(tmp_path / "retry")
    assert summary.variants["dense"].metrics["epoch"] == 4 and not summary.variants["dense"].errored


def test_diverged_and_failing_trials_end_alone_and_the_best_ignores_them(tmp_path, capsys):
    space = write_space(tmp_path / "s.yaml", FAULT_SPACE.replace("CODE_SIZES", "{grid: [7, 8]}")
                        .replace("LRS", "{grid: [0.001, 1.0e+30]}"))
    code = search.main(["--space", str(space), "--storage", str(tmp_path), "--name", "faults", "--quiet",
                        "--data-root", str(DATA_ROOT)], trainable=always_fails_for_code_size_7)
    out = capsys.readouterr().out
    assert code == 1  # an errored trial
    best = Summary.read(tmp_path / "faults").variants["dense"]
    assert best.trials == 4 and len(best.errored) == 2 and len(best.diverged) == 1
    assert best.config["code_size"] == 8 and best.config["lr"] == 0.001 and best.metrics["epoch"] == 4
    for error in best.errored:
        assert "persistent failure" in (tmp_path / "faults" / error["error_file"]).read_text()
        assert error["trial_id"] in out and "ERROR" in out
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
    study = json.loads((tmp_path / "asha" / "dense" / "optuna_trials.json").read_text())
    state = {row["ray_trial_id"]: row["state"] for row in study}
    epochs = {t.name.removeprefix("trial_"): epochs_of(t) for t in trial_dirs(tmp_path / "asha" / "dense")}
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
            code_size: {grid: [4, 8, 16, 32]}
          second:
            model: dense
            code_size: {grid: [4, 8]}
        """)
    args = ["-m", "aetune.search", "--space", str(space), "--storage", str(tmp_path), "--name", "killed", "--quiet"]
    marker = f"AETUNE_TEST_DRIVER={tmp_path}"  # inherited by the local Ray it starts: how we find all of it
    env = {**os.environ, "AETUNE_DATA": str(DATA_ROOT), "AETUNE_TEST_DRIVER": str(tmp_path)}
    driver = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    variant = tmp_path / "killed" / "first"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once one trial has finished and others have not
        done = [t for t in trial_dirs(variant) if (t / "result.json").exists() and len(epochs_of(t)) == 4]
        if done:
            break
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, at once; then the Ray it started (own sessions)
    driver.wait()
    kill_processes_with(marker)
    before = {t.name: epochs_of(t) for t in trial_dirs(variant) if (t / "result.json").exists()}
    assert any(len(e) == 4 for e in before.values())
    assert not (tmp_path / "killed" / "summary.json").exists()

    run = run_search("--storage", str(tmp_path), "--name", "killed", "--resume", "--quiet")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = Summary.read(tmp_path / "killed")
    assert summary.variants["first"].trials == 4 and summary.variants["second"].trials == 2
    for name in ("first", "second"):
        for trial in trial_dirs(tmp_path / "killed" / name):
            assert epochs_of(trial) == [1, 2, 3, 4], trial  # every epoch once: no gap, no repeat
    for name, epochs in before.items():  # finished trials were not run again
        if len(epochs) == 4:
            assert epochs_of(variant / name) == epochs
