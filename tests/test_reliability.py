"""Reliability (issue #12): each defect a review found, with the test that caught it; paths nobody had tested; and
faults provoked for real — SIGKILL in the middle of checkpoint writes, a full disk, Ctrl-C and a killed driver —
on real MNIST, real Ray and TensorBoard files read back."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
import torch
import yaml
from conftest import DATA_ROOT, REPO, SEARCH, run_search, search_env, study_name, study_states, write_space
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from test_search import crash_once_after_two_epochs, epochs_of, kill_processes_with, trial_dirs

import aetune.search.__main__ as search
import aetune.train.__main__ as train
from aetune.config import TrialConfig
from aetune.errors import UsageError
from aetune.evaluate.__main__ import main as evaluate
from aetune.experiment import Summary, VariantResult
from aetune.models import build_model
from aetune.search.space_file import parse_space, space_to_yaml
from aetune.storage import write_text
from aetune.train.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from aetune.train.data import ImageData
from aetune.train.logger import IMAGE_TAG, TrialLogger
from aetune.train.trainer import Trainer

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = {"model": "dense", "hidden_layers": [16], "code_size": 4, "batch_size": 64, "epochs": 2}


def subset(mnist: ImageData, train: int = 512, val: int = 256) -> ImageData:
    return ImageData(mnist.name, mnist.train_x[:train], mnist.train_y[:train], mnist.val_x[:val], mnist.val_y[:val],
                     mnist.test_x[:val], mnist.test_y[:val])


def trainer(mnist: ImageData, **overrides) -> Trainer:
    return Trainer(TrialConfig.from_dict({**SMALL, **overrides}), subset(mnist), device="cpu")


def events(logdir: Path) -> EventAccumulator:
    return EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0}).Reload()


def session_status(logdir: Path) -> int:
    """The HParams session's end status as TensorBoard reads it (the first end it meets)."""
    content = events(logdir).SummaryMetadata("_hparams_/session_end_info").plugin_data.content
    return HParamsPluginData.FromString(content).session_end_info.status


def val_steps(logdir: Path) -> list[int]:
    return [e.step for e in events(logdir).Scalars("loss/val")]


# --- defects --------------------------------------------------------------------------------------------------------

def test_summary_json_writes_null_for_non_finite_numbers_and_reads_old_nan_files(tmp_path):
    metrics = {"val_loss": 0.5, "kl": math.nan, "code_l1": math.inf}
    best = VariantResult("t1", {"model": "dense", "train_size": None}, metrics, "t1/checkpoint.pt", "t1", trials=1)
    Summary("x", "val_loss", "min", {"dense": best}).write(str(tmp_path))
    text = (tmp_path / "summary.json").read_text()

    def bare(constant):
        raise AssertionError(f"summary.json holds a bare {constant}: not JSON")

    document = json.loads(text, parse_constant=bare)
    assert document["variants"]["dense"]["metrics"] == {"val_loss": 0.5, "kl": None, "code_l1": None}
    back = Summary.read(tmp_path).variants["dense"]
    assert back.metrics["val_loss"] == 0.5 and math.isnan(back.metrics["kl"]) and math.isnan(back.metrics["code_l1"])
    assert back.config["train_size"] is None  # a null config value stays None
    (tmp_path / "summary.json").write_text(text.replace('"kl": null', '"kl": NaN'))  # as written before the fix
    assert math.isnan(Summary.read(tmp_path).variants["dense"].metrics["kl"])


def test_checkpoint_of_another_format_version_names_the_file_and_both_versions(mnist, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({**trainer(mnist).state_dict(), "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and str(path) in message
    assert f"format version {FORMAT_VERSION + 1}" in message and f"reads version {FORMAT_VERSION}" in message


def test_amp_autocasts_to_bf16_on_cpu_as_documented(mnist):
    """README: `amp` is bf16 autocast on CUDA and on CPUs (faster on CPUs with bf16 units)."""
    dtypes: dict[bool, set] = {False: set(), True: set()}
    for amp in (False, True):
        bf16 = trainer(mnist, amp=amp, train_size=128)
        bf16.model.encoder.register_forward_hook(lambda module, args, out, amp=amp: dtypes[amp].add(out.dtype))
        bf16.train_epoch()
    assert dtypes == {False: {torch.float32}, True: {torch.bfloat16}}


def test_a_resumed_run_shows_each_epoch_once_in_tensorboard(tmp_path):
    """Epoch 3 is logged, then the process dies before checkpointing it; the run resumes from epoch 2."""
    config = TrialConfig.from_dict({**SMALL, "epochs": 4})
    model, digits = build_model(config, (1, 28, 28)), torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="died"):
        with TrialLogger(tmp_path, config, digits) as logger:
            for epoch in (1, 2, 3):
                logger.log_epoch({"epoch": epoch, "val_loss": 10.0 + epoch}, model)
            raise RuntimeError("died after logging epoch 3, before its checkpoint")
    with TrialLogger(tmp_path, config, digits, start_epoch=2) as logger:
        for epoch in (3, 4):
            logger.log_epoch({"epoch": epoch, "val_loss": 20.0 + epoch}, model)
    scalars = events(tmp_path).Scalars("loss/val")
    assert [(e.step, e.value) for e in scalars] == [(1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0)]
    assert [e.step for e in events(tmp_path).Images(IMAGE_TAG)] == [1, 4]
    assert session_status(tmp_path) == api_pb2.STATUS_SUCCESS  # the crash left the session open, not failed


def test_a_diverged_run_ends_its_hparams_session_as_failure(tmp_path, data_root, capsys):
    out = tmp_path / "run"
    code = train.main(["--hidden-layers", "16", "--code-size", "4", "--lr", "1e30", "--epochs", "2",
                       "--train-size", "512", "--test-size", "256", "--out", str(out), "--data-root",
                       str(data_root), "--no-download", "--device", "cpu"])
    assert code == 1 and "diverged" in capsys.readouterr().err
    assert session_status(out) == api_pb2.STATUS_FAILURE


RACE_SPACE = """\
    epochs: 1
    samples: 1
    variants:
      dense: {model: dense, lr: {choice: [0.001, 0.002]}}
"""


def test_two_searches_creating_one_experiment_at_once_cannot_both_win(tmp_path):
    from aetune.search.tuner import Experiment

    space = parse_space(yaml.safe_load(textwrap.dedent(RACE_SPACE)), "race.yaml")
    for attempt in range(20):
        barrier, outcomes = threading.Barrier(6), []

        def create():
            experiment = Experiment(space, f"race{attempt}", str(tmp_path), str(DATA_ROOT))
            barrier.wait()
            try:
                experiment.create()
                outcomes.append("created")
            except UsageError as err:
                outcomes.append("refused" if "exists; continue it with:" in str(err) else str(err))
            except Exception as err:  # noqa: BLE001 - any other outcome is the failure this test looks for
                outcomes.append(repr(err))

        threads = [threading.Thread(target=create) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["created"] + ["refused"] * 5, outcomes
        assert (tmp_path / f"race{attempt}" / "space.yaml").read_text() == space_to_yaml(space)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("writer", ["write_text", "save_checkpoint"])
def test_concurrent_writers_of_one_file_never_collide_or_mix(tmp_path, writer):
    target = tmp_path / "file"
    payloads = [{"epoch": i, "model": {"w": torch.full((50_000,), float(i))}} for i in range(6)]
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(10):
                if writer == "write_text":
                    write_text(str(target), f"writer {i}\n" * 20_000)
                else:
                    save_checkpoint({**payloads[i], "config": {}, "input_shape": [1, 28, 28]}, target)
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    if writer == "write_text":
        lines = set(target.read_text().splitlines())
        assert len(lines) == 1 and target.read_text().count("\n") == 20_000  # one writer's whole text
    else:
        bundle = load_checkpoint(target)
        assert bool((bundle["model"]["w"] == bundle["epoch"]).all())
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temp file left behind


def test_resume_reads_the_saved_space_from_a_bucket_uri(tmp_path):
    """The bucket code path with a URI pyarrow serves locally: create, refuse a second create, resume."""
    from aetune.search.tuner import Experiment

    storage = (tmp_path / "runs").as_uri()
    space = parse_space(yaml.safe_load(textwrap.dedent(RACE_SPACE)), "race.yaml")
    Experiment(space, "bucket", storage, str(DATA_ROOT)).create()
    assert (tmp_path / "runs" / "bucket" / "space.yaml").is_file()
    with pytest.raises(UsageError, match="exists"):
        Experiment(space, "bucket", storage, str(DATA_ROOT)).create()
    args = search._parser().parse_args(["--storage", storage, "--name", "bucket", "--resume"])
    saved, name, _ = search._space_for(args)
    assert name == "bucket" and space_to_yaml(saved) == space_to_yaml(space)
    missing = search._parser().parse_args(["--storage", storage, "--name", "other", "--resume"])
    with pytest.raises(UsageError, match=f"{storage}/other is not an aetune experiment"):
        search._space_for(missing)


def test_resume_refuses_variants_instead_of_ignoring_them():
    args = search._parser().parse_args(["--name", "x", "--resume", "--variants", "dense"])
    with pytest.raises(UsageError, match="drop --space, --variants"):
        search._space_for(args)


# --- paths nobody had tested ----------------------------------------------------------------------------------------

def test_mse_loss_trains_and_its_objective_is_the_pixel_mse(mnist):
    mse = trainer(mnist, loss="mse")
    first, second = mse.run_epoch(), mse.run_epoch()
    assert second["val_loss"] < first["val_loss"]
    assert second["val_loss"] == pytest.approx(second["val_mse"], rel=1e-5)  # dense, no l1, no noise
    bce = trainer(mnist, loss="bce").run_epoch()
    assert bce["val_loss"] == pytest.approx(bce["val_bce"], rel=1e-5)


def test_sparse_conv_penalises_its_conv_code(mnist):
    conv = {"model": "conv", "filters": [8, 4], "batch_size": 32}
    plain, sparse = trainer(mnist, **conv), trainer(mnist, **conv, l1=1e-2)
    assert sparse.run_epoch()["code_l1"] < 0.5 * plain.run_epoch()["code_l1"]
    x = subset(mnist).test_x[:64].float() / 255
    with torch.no_grad():
        out = sparse.model.objective(x, x)
    assert out.code.dim() == 4  # a feature map, penalised as a whole: l1 * sum|code| per image, batch mean
    assert float(out.reg_loss) == pytest.approx(1e-2 * float(out.code.abs().flatten(1).sum(1).mean()), rel=1e-5)
    assert float(out.loss) == pytest.approx(float(out.recon_loss + out.reg_loss), rel=1e-6)


def test_the_trainer_draws_fresh_noise_for_every_batch(mnist):
    image = subset(mnist).train_x[:1]
    same = ImageData("mnist", image.repeat(128, 1, 1, 1), torch.zeros(128, dtype=torch.long), mnist.test_x[:64],
                     mnist.test_y[:64])
    denoising = Trainer(TrialConfig.from_dict({**SMALL, "noise_factor": 0.5}), same, device="cpu")
    seen: list[torch.Tensor] = []
    denoising.model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    denoising.train_epoch()
    denoising.train_epoch()
    assert len(seen) == 4  # two batches of 64 copies of one image, two epochs
    clean = same.train_x[:64].float() / 255
    for batch in seen:
        assert not torch.equal(batch, clean) and batch.min() >= 0 and batch.max() <= 1
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(seen[i], seen[j]), (i, j)  # the same images, new noise every batch
    assert not torch.equal(seen[0][0], seen[0][1])  # and every image in a batch its own


# --- faults provoked for real ---------------------------------------------------------------------------------------

def _write_checkpoints_forever(bundles: list[dict], path: Path) -> None:
    for i in range(10**9):
        save_checkpoint(bundles[i % len(bundles)], path)


def test_sigkill_in_the_middle_of_checkpoint_writes_never_leaves_a_broken_checkpoint(tmp_path):
    """A child writes 8 MB checkpoints back to back; it is SIGKILLed 25 times at random moments."""
    path = tmp_path / "checkpoint.pt"
    bundles = [{"config": {}, "input_shape": [1, 28, 28], "epoch": epoch,
                "model": {"w": torch.full((2_000_000,), float(epoch))}} for epoch in (1, 2, 3)]
    fork, rng = multiprocessing.get_context("fork"), random.Random(12)
    seen = set()
    for _ in range(25):
        child = fork.Process(target=_write_checkpoints_forever, args=(bundles, path), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if path.exists():
            bundle = load_checkpoint(path)  # never truncated: the rename is the only way in
            assert bool((bundle["model"]["w"] == bundle["epoch"]).all())
            seen.add(bundle["epoch"])
    assert len(seen) >= 2  # the kills landed at different moments
    leftovers = list(tmp_path.glob(".checkpoint.pt.*.tmp"))
    assert leftovers, "no kill landed in the middle of a write"  # each is a write cut short; the target is intact
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["checkpoint.pt"]


# One thread: on a busy 2-core machine two OpenMP threads per process spin against each other (20x slower epochs).
CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aetune.train", "--hidden-layers", "32", "--code-size", "8", "--train-size", "2000",
            "--test-size", "300", "--batch-size", "64", "--out", str(out), "--data-root", str(DATA_ROOT),
            "--no-download", "--device", "cpu", *extra]


def test_train_cli_killed_at_a_random_moment_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cli(out, "--epochs", "10"), stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env=CLI_ENV)
    for line in proc.stdout:
        if line.startswith("epoch=2 "):
            break
    time.sleep(random.Random(3).uniform(0.0, 0.4))
    proc.kill()
    proc.wait()
    proc.stdout.close()
    killed = load_checkpoint(out / "checkpoint.pt")
    assert 2 <= killed["epoch"] < 10
    assert [h["epoch"] for h in killed["history"]] == list(range(1, killed["epoch"] + 1))

    run = subprocess.run(train_cli(out, "--epochs", "10", "--resume"), capture_output=True, text=True, cwd=REPO,
                         env=CLI_ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].startswith(f"epoch={killed['epoch'] + 1} ")  # from the last checkpoint on
    done = load_checkpoint(out / "checkpoint.pt")
    assert done["epoch"] == 10 and [h["epoch"] for h in done["history"]] == list(range(1, 11))
    assert done["history"][:killed["epoch"]] == killed["history"]
    assert val_steps(out) == list(range(1, 11))  # an epoch logged but not checkpointed before the kill: shown once
    assert session_status(out) == api_pb2.STATUS_SUCCESS


def _limit_file_size(limit: int):
    def limit_in_child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_in_child


def test_a_full_disk_fails_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(train_cli(out, "--epochs", "2"), capture_output=True, text=True, cwd=REPO, env=CLI_ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = out / "checkpoint.pt"
    before = checkpoint.read_bytes()
    # Files may grow to half a checkpoint: the event file fits, the next checkpoint does not.
    run = subprocess.run(train_cli(out, "--epochs", "4", "--resume"), capture_output=True, text=True, cwd=REPO,
                         env=CLI_ENV, preexec_fn=_limit_file_size(len(before) // 2))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("aetune: error: cannot write ")
    assert str(checkpoint) in run.stderr and "File too large" in run.stderr and "--resume" in run.stderr
    assert checkpoint.read_bytes() == before and load_checkpoint(checkpoint)["epoch"] == 2
    assert not list(out.glob(".*.tmp"))


# --- one small search on a bucket URI: random searcher, mode max, a crash retried, a diverged trial ---------------

PATHS_SPACE = """\
    epochs: 3
    samples: 4
    searcher: random
    scheduler: fifo
    metric: code_l1
    mode: max
    seed: 1
    resources: {cpus: 1}
    defaults: {train_size: 600, test_size: 200, hidden_layers: [16], batch_size: 64}
    variants:
      ranged:
        model: dense
        code_size: 4
        batch_size: {randint: [63, 64]}
      diverging:
        model: dense
        code_size: 4
        lr: 1.0e+30
"""


@pytest.fixture(scope="module")
def bucket_search(tmp_path_factory) -> Path:
    """The search driver with --storage file:///... (pyarrow's filesystem, as for s3:// and gs://); the first trial
    to reach epoch 3 crashes once (after TensorBoard logged the epoch) and is retried from its checkpoint."""
    root = tmp_path_factory.mktemp("bucket")
    space = write_space(root / "paths.yaml", PATHS_SPACE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AETUNE_TEST_MARKER", str(root / "crashed"))
        code = search.main(["--space", str(space), "--storage", root.as_uri(), "--name", "paths", "--quiet",
                            "--data-root", str(DATA_ROOT)], trainable=crash_once_after_two_epochs)
    assert code == 0
    assert (root / "crashed").read_text() == "[1, 2, 3]"  # the crash did happen
    return root / "paths"


def results(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]


@pytest.mark.slow
def test_random_searcher_draws_randint_upper_bound(bucket_search):
    trials = trial_dirs(bucket_search, "ranged")
    assert len(trials) == 4
    assert {results(t)[0]["config"]["batch_size"] for t in trials} == {63, 64}  # randint [63, 64] is inclusive


@pytest.mark.slow
def test_mode_max_picks_the_largest_metric(bucket_search):
    summary = Summary.read(bucket_search)
    assert (summary.metric, summary.mode) == ("code_l1", "max")
    reported = [r["code_l1"] for t in trial_dirs(bucket_search, "ranged") for r in results(t)]
    best = summary.variants["ranged"]
    assert best.metrics["code_l1"] == max(reported) > min(reported)
    assert load_checkpoint(bucket_search / best.checkpoint)["history"][-1]["code_l1"] == max(reported)


@pytest.mark.slow
def test_a_retried_trial_shows_each_epoch_once_in_tensorboard(bucket_search):
    trials = trial_dirs(bucket_search, "ranged")
    retried = [t for t in trials if len(list(t.glob("events.out.tfevents.*"))) > 1]
    assert len(retried) == 1  # the crashed trial: a second event file from its retry
    for trial in trials:
        assert epochs_of(trial) == [1, 2, 3]
        assert val_steps(trial) == [1, 2, 3], trial
        assert session_status(trial) == api_pb2.STATUS_SUCCESS, trial


@pytest.mark.slow
def test_a_diverged_trial_ends_its_hparams_session_as_failure(bucket_search):
    summary = Summary.read(bucket_search).variants["diverging"]
    assert len(summary.diverged) == 4 and summary.checkpoint is None
    for trial in trial_dirs(bucket_search, "diverging"):
        assert session_status(trial) == api_pb2.STATUS_FAILURE


# --- TPE + ASHA on a bucket URI: Ctrl-C, resume, SIGKILL, resume ------------------------------------------------------

TPE_SPACE = """\
    epochs: 4
    samples: 5
    searcher: optuna
    scheduler: asha
    asha: {grace_period: 1, reduction_factor: 2}
    resources: {cpus: 1}
    defaults: {train_size: 1000, test_size: 200, hidden_layers: [32], batch_size: 64}
    variants:
      dense:
        model: dense
        code_size: 8
        batch_size: {choice: [32, 64]}
        lr: {loguniform: [1.0e-4, 1.0e-2]}
"""


def reported_epochs(experiment: Path) -> int:
    return sum(len(epochs_of(t)) for t in trial_dirs(experiment, "dense") if (t / "result.json").exists())


def wait_until(condition, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def start_driver(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    """`python -m aetune.search` on experiment `name` under tmp_path (given as a file:// URI, as a bucket is), its
    Optuna studies in tmp_path/studies.db. The driver and the local Ray it starts carry tmp_path in their
    environment (kill_processes_with finds them), and get a session of their own (a terminal's Ctrl-C: killpg)."""
    return subprocess.Popen([*SEARCH, "--storage", tmp_path.as_uri(), "--name", name, "--study-storage",
                             study_url(tmp_path), "--quiet", *args], cwd=REPO,
                            env=search_env(AETUNE_TEST_DRIVER=str(tmp_path)), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def study_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"  # a bucket holds no Optuna study: it lives beside


@pytest.mark.slow
def test_tpe_asha_run_survives_ctrl_c_and_sigkill_and_resumes_exactly(tmp_path, capsys):
    space = write_space(tmp_path / "tpe.yaml", TPE_SPACE)
    storage, experiment, study = tmp_path.as_uri(), tmp_path / "tpe", study_url(tmp_path)
    marker = f"AETUNE_TEST_DRIVER={tmp_path}"

    # Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) once two epochs are reported.
    first = start_driver(tmp_path, "tpe", "--space", str(space))
    wait_until(lambda: reported_epochs(experiment) >= 2)
    os.killpg(first.pid, signal.SIGINT)
    output = first.communicate(timeout=180)[0]
    kill_processes_with(marker)
    assert first.returncode == 130, output[-3000:]
    hint = f"continue with: python -m aetune.search --storage {storage} --name tpe --resume --study-storage {study}"
    assert hint in output and "Tuner.restore(" not in output  # Ray's own hint is for Tuner users

    # Resume, then SIGKILL the driver and its Ray once it has made progress.
    progress = reported_epochs(experiment)
    second = start_driver(tmp_path, "tpe", "--resume")
    wait_until(lambda: reported_epochs(experiment) > progress or second.poll() is not None)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    second.stdout.close()
    assert second.returncode == -signal.SIGKILL  # killed mid-run, not finished
    kill_processes_with(marker)
    before = {t.name: epochs_of(t) for t in trial_dirs(experiment, "dense") if (t / "result.json").exists()}
    assert not (tmp_path / "tpe" / "summary.json").exists()

    # The killed experiment cannot be evaluated yet: one line that says how to finish it.
    assert evaluate([str(tmp_path / "tpe")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search is still running or was interrupted" in err and "--resume" in err

    command = shlex.split(hint.removeprefix("continue with: "))  # the printed hint, run as printed
    assert command[:3] == ["python", "-m", "aetune.search"]
    run = run_search(*command[3:], "--quiet")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    best = Summary.read(tmp_path / "tpe").variants["dense"]
    assert best.trials == 5 and best.checkpoint and not best.errored  # the budget, through both restores
    for result in best.trial_results:
        epochs = epochs_of(experiment / f"dense-{result['trial_id']}")
        assert epochs == list(range(1, len(epochs) + 1)), result  # no gap, no epoch twice
    for name, epochs in before.items():
        if len(epochs) == 4:  # finished before the kill: not run again
            assert epochs_of(experiment / name) == epochs
    # The same Optuna study went on through both restores: every Ray trial told once, in its true state, and no
    # trial left RUNNING by the kills.
    states = {trial_id: state.name for trial_id, state in study_states(study, "dense").items()}
    orphans = [t for t in optuna.load_study(study_name=study_name(study, "dense"), storage=study).trials
               if t.state.name == "RUNNING"]
    assert not orphans
    # What Optuna was told is what the summary records of each trial: finished ones COMPLETE, stopped ones PRUNED;
    # a trial asked after the last snapshot (no Ray trial will ever finish it) FAIL.
    told = {"completed": "COMPLETE", "stopped": "PRUNED"}
    expected = {t["trial_id"]: told[t["state"]] for t in best.trial_results}
    assert {i: s for i, s in states.items() if i in expected} == expected
    assert {s for i, s in states.items() if i not in expected} <= {"FAIL"}
