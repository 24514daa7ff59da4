"""Resuming after a driver died before Tune's experiment snapshot caught up with its trials: the trial goes on from
its newest checkpoint on disk, tells Tune again what the snapshot missed, and every record keeps each epoch once
(result.json, progress.csv, TensorBoard, the Optuna study); last, a real run resumed from a snapshot far behind."""
from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import textwrap
from pathlib import Path

import optuna
import pytest
import ray
import torch
import yaml
from conftest import run_search, study_states, study_trials, write_space
from optuna.trial import TrialState
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from test_reliability import SMALL, events, reported_epochs, start_driver, study_url, trainer, val_steps, wait_until
from test_search import epochs_of, kill_processes_with

from aetune.config import TrialConfig
from aetune.experiment import REPLAYED, VARIANT_KEY, Summary
from aetune.models import build_model
from aetune.search.picks import trial_outcome
from aetune.search.resume import CsvResults, JsonResults, SnapshotBackup, restore_cut_snapshot
from aetune.search.schedulers import make_schedulers
from aetune.search.searchers import make_router, make_searcher
from aetune.search.space_file import parse_space
from aetune.search.trainable import newest_bundle, restore_point
from aetune.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from aetune.train.logger import IMAGE_TAG, TrialLogger

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def checkpoints_by_epoch(mnist, epochs: int) -> list[dict]:
    """The bundle of every epoch of one small dense trial on real MNIST."""
    run = trainer(mnist, epochs=epochs)
    bundles = []
    for _ in range(epochs):
        run.run_epoch()
        bundles.append(run.state_dict())
    return bundles


def save_in(trial_dir: Path, index: int, bundle: dict) -> Path:
    """Where Tune persists a trial's checkpoint number `index`."""
    return save_checkpoint(bundle, trial_dir / StorageContext._make_checkpoint_dir_name(index) / CHECKPOINT_FILE)


def test_a_trial_goes_on_from_its_newest_complete_checkpoint_never_behind_tunes(mnist, tmp_path):
    first, second, third, fourth = checkpoints_by_epoch(mnist, 4)
    trial_dir = tmp_path / "dense-0001"
    save_in(trial_dir, 0, first)
    save_in(trial_dir, 1, second)
    # Restored from a snapshot that knew two checkpoints, the trial wrote epoch 4 into the folder of epoch 3.
    save_in(trial_dir, 2, fourth)
    assert newest_bundle(trial_dir, second)["epoch"] == 4
    # A checkpoint cut by the kill is no place to resume from; Tune's own restore point is never passed over.
    (trial_dir / "checkpoint_000002" / CHECKPOINT_FILE).write_bytes(b"cut")
    assert newest_bundle(trial_dir, second)["epoch"] == 2
    assert newest_bundle(trial_dir, third)["epoch"] == 3
    assert newest_bundle(trial_dir, None)["epoch"] == 2
    assert newest_bundle(None, third)["epoch"] == 3  # storage in a bucket: Tune's choice stands
    assert newest_bundle(tmp_path / "dense-0002", None) is None  # a fresh trial


def test_a_checkpoint_tune_deleted_after_its_last_snapshot_is_no_restore_point(mnist, tmp_path):
    [bundle] = checkpoints_by_epoch(mnist, 1)
    kept = save_in(tmp_path, 0, bundle).parent
    assert restore_point(tune.Checkpoint.from_directory(str(kept)))["epoch"] == 1
    assert restore_point(tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000001"))) is None
    (tmp_path / "checkpoint_000002").mkdir()  # what RestorableCheckpoints puts in a deleted one's place
    assert restore_point(tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000002"))) is None
    assert restore_point(None) is None


def test_the_summary_never_picks_a_checkpoint_deleted_after_the_snapshot_that_names_it(mnist, tmp_path):
    first, second = checkpoints_by_epoch(mnist, 2)
    space = parse_space(BEHIND_SPACE_RAW, "test")
    kept = tune.Checkpoint.from_directory(str(save_in(tmp_path, 1, second).parent))
    (tmp_path / "checkpoint_000000").mkdir()  # better, but deleted: RestorableCheckpoints left it empty
    gone = tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000000"))
    config = {**TrialConfig.from_dict({**SMALL, "epochs": 2}).to_dict(), VARIANT_KEY: "dense"}
    metrics = [{**h, "trial_id": "0001", "config": config} for h in (first["history"][0], second["history"][1])]
    metrics[0]["val_loss"] = 0.0
    result = tune.Result(metrics=metrics[1], checkpoint=kept, error=None, path=str(tmp_path),
                         best_checkpoints=[(gone, metrics[0]), (kept, metrics[1])])
    outcome = trial_outcome(result, space.search(space.variants["dense"]), 2, str(tmp_path))
    assert outcome["checkpoint"] == "checkpoint_000001/checkpoint.pt" and outcome["metrics"]["epoch"] == 2


def test_an_epoch_told_again_goes_on_whatever_a_restored_asha_thinks_and_fills_its_rung():
    space = parse_space({"epochs": 4, "samples": 4, "searcher": "random", "scheduler": "asha",
                         "asha": {"grace_period": 1, "reduction_factor": 2},
                         "variants": {"dense": {"model": "dense", "lr": {"loguniform": [1e-4, 1e-2]}}}}, "test")
    scheduler = make_schedulers(space)
    trials = [Trial("train_trial", config={VARIANT_KEY: "dense"}, stub=True) for _ in range(4)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)

    def decide(trial: Trial, val_loss: float, replayed: bool = False) -> str:
        return scheduler.on_trial_result(None, trial, {"epoch": 1, "val_loss": val_loss, REPLAYED: replayed})

    assert (decide(trials[0], 0.1), decide(trials[1], 0.2)) == (CONTINUE, STOP)  # ASHA's own cut-off
    assert decide(trials[2], 0.9, replayed=True) == CONTINUE  # the run that trained it went on
    assert decide(trials[3], 0.17) == CONTINUE  # above the rung's median once the told-again 0.9 is in it


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def test_result_files_keep_each_epoch_once_when_a_restored_trial_reports_again(local_ray, tmp_path):
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="dense-0001")
    trial = Trial("train_trial", config={}, storage=storage, stub=True)
    trial.init_local_path()

    def driver_logs(*epochs: int, keys: tuple[str, ...] = ("val_bce", "should_checkpoint")) -> None:
        loggers = [JsonResults(), CsvResults()]  # each driver (new or restored) has its own
        for epoch in epochs:
            result = {"epoch": epoch, "val_bce": 1 / epoch, "should_checkpoint": True}
            for logger in loggers:  # Tune's keys differ from one result to the next
                logger.log_trial_result(epoch, trial, {k: v for k, v in result.items() if k in ("epoch", *keys)})
        for logger in loggers:
            logger.log_trial_end(trial)

    folder = Path(trial.local_path)
    driver_logs(1, 2, 3)
    with (folder / "result.json").open("a") as file:
        file.write('{"epoch": 4, "val_b')  # the first driver died mid-line
    with (folder / "progress.csv").open("a") as file:
        file.write("4,0.2")
    assert JsonResults.logged_epochs(folder / "result.json") == CsvResults.logged_epochs(folder / "progress.csv") \
        == {1, 2, 3}
    driver_logs(2, 3, 4, 4, 5, keys=("val_bce",))  # told again from a checkpoint's history, then trained on
    assert [json.loads(line)["epoch"] for line in (folder / "result.json").read_text().splitlines()] == [1, 2, 3, 4, 5]
    with (folder / "progress.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(int(r["epoch"]), float(r["val_bce"])) for r in rows] == [(e, pytest.approx(1 / e)) for e in range(1, 6)]
    assert all(None not in r and None not in r.values() for r in rows)  # every row whole, under its header


def test_the_result_files_are_read_again_when_a_retry_reopens_them_and_a_cut_header_is_written_again(local_ray,
                                                                                                     tmp_path):
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="dense-0002")
    trial = Trial("train_trial", config={}, storage=storage, stub=True)
    trial.init_local_path()
    folder = Path(trial.local_path)
    (folder / "progress.csv").write_text("epo")  # the first row of a new file, cut
    loggers = [JsonResults(), CsvResults()]  # one driver: a trial, its retry

    def log(*epochs: int) -> None:
        for epoch in epochs:
            for logger in loggers:
                logger.log_trial_result(epoch, trial, {"epoch": epoch, "val_bce": 1 / epoch})
        for logger in loggers:
            logger.log_trial_end(trial, failed=True)

    log(1, 2)
    for name in ("result.json", "progress.csv"):  # the retry starts from an older copy of the files
        lines = (folder / name).read_text().splitlines(keepends=True)
        (folder / name).write_text("".join(lines[:-1]))
    log(2, 3)
    assert sorted(JsonResults.logged_epochs(folder / "result.json")) == [1, 2, 3]
    with (folder / "progress.csv").open(newline="") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [1, 2, 3]


def test_a_snapshot_cut_by_the_kill_is_put_back_from_its_backup(local_ray, tmp_path):
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="dense-0003")
    trial = Trial("train_trial", config={}, storage=storage, stub=True)
    staging, experiment = Path(storage.experiment_driver_staging_path), tmp_path / "exp"
    staging.mkdir(parents=True, exist_ok=True)
    experiment.mkdir(exist_ok=True)
    state, searcher = "experiment_state-2026-12-01_10-00-00.json", "searcher-state-2026-12-01_10-00-00.pkl"
    generator = "search_gen_state-2026-12-01_10-00-00.json"  # a pickle, its name notwithstanding
    saved = {state: json.dumps({"trial_data": [1, 2]}).encode(), searcher: json.dumps({"searcher": 1}).encode(),
             generator: pickle.dumps({"counter": 2})}

    def tune_saves(name: str, data: bytes) -> None:  # into its staging folder, then copied to storage
        (staging / name).write_bytes(data)
        (experiment / name).write_bytes(data)

    def backups() -> dict[str, bytes]:
        return {p.name.removesuffix(".bak"): p.read_bytes() for p in experiment.glob("*.bak")}

    for name, data in saved.items():
        tune_saves(name, data)
    backup = SnapshotBackup(every_s=60)
    backup.on_step_end(1, [trial])
    assert backups() == saved
    tune_saves(state, b'{"trial_data": [1, 2, 3]}')
    backup.on_step_end(2, [trial])
    assert backups() == saved  # within every_s: no new copy
    backup.every_s = 0
    (experiment / f"{searcher}.bak").write_bytes(b"copied before")
    backup.on_step_end(3, [trial])  # a new copy of what Tune saved again, and only of that
    assert backups() == {state: b'{"trial_data": [1, 2, 3]}', searcher: b"copied before",
                         generator: saved[generator]}

    (experiment / f"{searcher}.bak").write_bytes(saved[searcher])
    assert restore_cut_snapshot(experiment) == []  # nothing cut
    (experiment / state).write_bytes(b"")  # the kill, mid-copy
    (experiment / searcher).write_bytes(saved[searcher][:9])
    (experiment / generator).write_bytes(saved[generator][:9])
    assert restore_cut_snapshot(experiment) == [state, generator, searcher]
    assert {n: (experiment / n).read_bytes() for n in saved} == backups()


def test_a_study_told_before_the_crash_takes_the_restored_trials_reports_without_error(tmp_path):
    space = parse_space({"epochs": 2, "samples": 1, "searcher": "optuna", "scheduler": "asha",
                         "variants": {"dense": {"model": "dense", "lr": {"loguniform": [1e-4, 1e-2]}}}}, "test")
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    snapshot = tmp_path / "searcher"
    searcher = make_searcher(space, space.variants["dense"], storage)
    searcher.set_search_properties(None, None, {})
    assert searcher.suggest("t1")
    searcher.save(str(snapshot))  # Tune's last snapshot of the searcher
    for epoch in (1, 2):
        searcher.on_trial_result("t1", {"epoch": epoch, "val_loss": 0.3 / epoch})
    searcher.on_trial_complete("t1", {"epoch": 2, "val_loss": 0.15})  # told, then the driver was killed

    restored = make_searcher(space, space.variants["dense"], storage)
    restored.restore(str(snapshot))
    restored.on_trial_result("t1", {"epoch": 2, "val_loss": 0.15})  # the restored trial tells its last epoch again
    restored.on_trial_complete("t1", {"epoch": 2, "val_loss": 0.15})
    [told] = optuna.load_study(study_name="dense", storage=storage).trials
    assert told.state == optuna.trial.TrialState.COMPLETE and told.value == pytest.approx(0.15)
    assert told.intermediate_values == {1: pytest.approx(0.3), 2: pytest.approx(0.15)}


TWO_VARIANTS = {"epochs": 4, "samples": 2, "searcher": "optuna", "scheduler": "fifo", "variants": {
    "dense": {"model": "dense", "lr": {"loguniform": [1e-4, 1e-2]}},
    "deep": {"model": "dense", "hidden_layers": [64, 32], "lr": {"loguniform": [1e-4, 1e-2]}}}}
GRID = {"epochs": 4, "samples": 1, "searcher": "grid", "scheduler": "fifo",
        "variants": {"dense": {"model": "dense", "lr": {"grid": [1e-3, 2e-3, 3e-3]}}}}


def idle(config: dict) -> None:
    """A trainable for a trial generator that never runs its trials."""


def restored_search(raw_space: dict, study: str | None, folder: Path, searcher_after: int, state_after: int):
    """A search whose generator asked its whole budget (its first trial finished at once, its second errored), its
    snapshot files from different moments, as a kill can leave them in storage: the searcher's and the
    generator's saved after `searcher_after` trials, Tune's experiment state after `state_after`. The generator
    restored from them, and the trials asked."""
    space = parse_space(raw_space, "test")
    budget = sum(map(space.trial_count, space.runs()))
    generator, trials = make_router(space, study, {}), []
    generator.add_configurations([tune.Experiment("exp", run=idle, num_samples=budget, storage_path=str(folder))])

    def snapshot_of_the_searcher() -> None:
        generator.save_to_dir(str(folder), session_str="2026-12-01_10-00-00")

    for asked in range(budget):
        if asked == searcher_after:
            snapshot_of_the_searcher()
        trials.append(generator.next_trial())
        trials[-1].create_placement_group_factory()  # as Tune does when it adds the trial
        if asked < 2:
            generator.on_trial_complete(trials[-1].trial_id, {"epoch": 4, "val_loss": 0.1}, error=asked == 1)
            trials[-1].set_status(Trial.ERROR if asked == 1 else Trial.TERMINATED)
    assert generator.next_trial() is None and generator.is_finished()
    if searcher_after == budget:
        snapshot_of_the_searcher()
    (folder / "experiment_state-2026-12-01_09-00-00.json").write_text("{}")  # older: Tune takes the newest
    state = {"trial_data": [t.get_json_state() for t in trials[:state_after]]}  # what Tune's save_to_dir writes
    (folder / "experiment_state-2026-12-01_10-00-00.json").write_text(json.dumps(state))
    restored = make_router(space, study, {})
    restored.restore_from_dir(str(folder))
    return restored, trials


def variant(trial) -> str:
    return trial.config[VARIANT_KEY]


def test_a_trial_the_searcher_asked_but_tune_never_saved_gives_its_place_in_the_budget_to_a_new_one(tmp_path):
    """Tune copies its snapshot files to storage one by one: after a kill the searcher's may count a trial that the
    experiment state Tune restores never saved. The restored search spends its whole budget all the same."""
    study = f"sqlite:///{tmp_path / 'studies.db'}"
    restored, trials = restored_search(TWO_VARIANTS, study, tmp_path, searcher_after=4, state_after=3)
    assert [variant(t) for t in trials] == ["dense", "dense", "deep", "deep"]
    assert not restored.is_finished()
    assert (restored.searcher.asked, restored.searcher.done) == ({"dense": 2, "deep": 1}, {"dense": 2, "deep": 0})
    again = restored.next_trial()
    assert variant(again) == "deep" and restored.next_trial() is None and restored.is_finished()
    lost = {trials[3].trial_id: TrialState.FAIL}  # no Ray trial will finish it
    assert study_states(study, "deep") == {trials[2].trial_id: TrialState.RUNNING, **lost,
                                           again.trial_id: TrialState.RUNNING}
    assert study_states(study, "dense") == {trials[0].trial_id: TrialState.COMPLETE,
                                            trials[1].trial_id: TrialState.FAIL}

    grid, trials = restored_search(GRID, None, tmp_path / "grid", searcher_after=3, state_after=2)
    assert grid.next_trial().config["lr"] == trials[2].config["lr"] and grid.next_trial() is None


def test_a_search_whose_searcher_snapshot_missed_a_trial_tune_saved_adopts_it(tmp_path):
    study = f"sqlite:///{tmp_path / 'studies.db'}"
    restored, trials = restored_search(TWO_VARIANTS, study, tmp_path, searcher_after=1, state_after=4)
    assert restored.next_trial() is None and restored.is_finished()  # the budget is spent
    adopted = trials[3].trial_id
    assert study_states(study, "deep")[adopted] == TrialState.RUNNING  # not failed as an orphan
    restored.on_trial_result(adopted, {"epoch": 1, "val_loss": 0.2})
    restored.on_trial_complete(adopted, {"epoch": 4, "val_loss": 0.1})
    told = study_trials(study, "deep")[adopted]
    assert told.state == TrialState.COMPLETE and told.intermediate_values == {1: pytest.approx(0.2)}

    grid, _ = restored_search(GRID, None, tmp_path / "grid", searcher_after=1, state_after=3)
    assert grid.next_trial() is None  # no config handed out twice


def test_epochs_told_again_from_a_history_reach_tensorboard_once_with_images_only_of_the_model_at_hand(tmp_path):
    config = TrialConfig.from_dict({**SMALL, "epochs": 5})
    model, digits = build_model(config, (1, 28, 28)), torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    with TrialLogger(tmp_path, config, digits, image_every=2) as logger:
        for epoch in (1, 2, 3):  # the killed run logged 3 epochs; its snapshot knew of one
            logger.log_epoch({"epoch": epoch, "val_loss": 10.0 + epoch}, model)
    with TrialLogger(tmp_path, config, digits, start_epoch=1, image_every=2) as logger:
        logger.log_epoch({"epoch": 2, "val_loss": 12.0}, model, images=False)  # from the epoch-3 checkpoint's history
        logger.log_epoch({"epoch": 3, "val_loss": 13.0}, model)  # the model of epoch 3, resumed from
        for epoch in (4, 5):
            logger.log_epoch({"epoch": epoch, "val_loss": 20.0 + epoch}, model)
    scalars = events(tmp_path).Scalars("loss/val")
    assert [(e.step, e.value) for e in scalars] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 24.0), (5, 25.0)]
    assert [e.step for e in events(tmp_path).Images(IMAGE_TAG)] == [1, 4, 5]  # epoch 2's model is gone


# --- end to end: a snapshot far behind the trial folders ------------------------------------------------------------

BEHIND_SPACE = """\
    epochs: 4
    samples: 4
    searcher: optuna
    scheduler: fifo
    resources: {cpus: 1}
    defaults: {train_size: 3000, test_size: 200, hidden_layers: [32], code_size: 8, batch_size: 64}
    variants:
      dense:
        model: dense
        lr: {loguniform: [1.0e-4, 1.0e-2]}
"""


def one_trial_at_a_time(space: str) -> str:
    """Each trial takes every CPU a local Ray finds (Ray's own count: a trial asking for more would never start):
    Tune knows one trial running and one waiting, and asks the next as the waiting one starts."""
    from ray._private.utils import get_num_cpus

    return space.replace("cpus: 1", f"cpus: {get_num_cpus()}")


BEHIND_SPACE_RAW = yaml.safe_load(textwrap.dedent(BEHIND_SPACE))


def snapshot_files(experiment: Path) -> set[str]:
    """Tune's experiment snapshot: the trials' states, the searcher's, the trial generator's (one set per driver),
    and the backups of them."""
    return {p.name for p in experiment.glob("*state-*")}


def snapshot_trials(experiment: Path, name: str | None = None) -> set[str]:
    """The trial ids in an experiment state file (the newest by default)."""
    path = experiment / name if name else max(experiment.glob("experiment_state-*.json"), default=None)
    try:
        return {json.loads(t)["trial_id"] for t, _ in json.loads(path.read_text())["trial_data"]} if path else set()
    except (OSError, ValueError):  # being written
        return set()


def trials_counted(path: Path) -> int:
    """How many trials a snapshot of the router or of Tune's trial generator counts (0 while it is written)."""
    try:  # the router's is JSON, the generator's a pickle
        state = json.loads(path.read_bytes()) if path.name.startswith("searcher-state-") else pickle.loads(
            path.read_bytes())
    except Exception:  # cut, or being written
        return 0
    return state["counter"] if "counter" in state else len(state["variant_of"])


def finished_in_study(study: str) -> int:
    return list(study_states(study, "dense").values()).count(TrialState.COMPLETE)


@pytest.mark.slow
def test_a_resume_from_a_snapshot_far_behind_its_trials_and_its_searcher_tells_every_epoch_once(tmp_path):
    """The worst a kill leaves: the experiment state Tune restores (the first driver's, at Ctrl-C) misses all that a
    second driver did before it died without one of its own: a trial finished and told to the study, checkpoints
    ahead of the snapshot's (the restored trials write theirs into the same folders), result.json lines it never
    saw, and trials asked that only the second driver's searcher snapshot knows (Tune copies the snapshot files to
    storage one by one): the search still spends its whole budget."""
    space = write_space(tmp_path / "behind.yaml", one_trial_at_a_time(BEHIND_SPACE))
    experiment, study, marker = tmp_path / "behind", study_url(tmp_path), f"AETUNE_TEST_DRIVER={tmp_path}"
    first = start_driver(tmp_path, "behind", "--space", str(space))
    wait_until(lambda: reported_epochs(experiment) >= 1)
    os.killpg(first.pid, signal.SIGINT)
    first.communicate(timeout=180)
    kill_processes_with(marker)
    assert first.returncode == 130
    kept = snapshot_files(experiment)
    [restored_state] = [n for n in kept if n.startswith("experiment_state-") and n.endswith(".json")]
    stored = {p: p.read_bytes() for p in experiment.glob("dense-*/*") if p.name in ("result.json", "progress.csv")}

    second, asked = start_driver(tmp_path, "behind", "--resume"), set()

    def second_asked_the_last_trial() -> bool:  # and every copy of its searcher's snapshot, cut or not, says so
        asked.update(snapshot_trials(experiment))
        if len(asked) < 4:
            return False
        searchers = [n for n in snapshot_files(experiment) - kept if n.startswith(("search_gen_state-", "searcher-"))]
        return len(searchers) == 4 and all(trials_counted(experiment / n) == 4 for n in sorted(searchers))

    wait_until(lambda: second_asked_the_last_trial() or second.poll() is not None)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    second.stdout.close()
    kill_processes_with(marker)
    assert second.returncode == -signal.SIGKILL and 1 <= finished_in_study(study) < 4  # killed mid-run
    lost = asked - snapshot_trials(experiment, restored_state)
    # Asked by the second driver only: the last trial (it cannot have run yet: the one before it holds the slot),
    # and the one before it if the first driver had not asked it (that one may even have finished).
    at_the_kill = study_states(study, "dense")
    running = {i for i in lost if at_the_kill[i] == TrialState.RUNNING}
    assert running
    # As if it had died before its experiment state reached storage, its searcher's did: the result files are
    # synced with the experiment state (the checkpoints and TensorBoard files are written by the trials themselves).
    for name in snapshot_files(experiment) - kept:
        if name.startswith("experiment_state-"):
            (experiment / name).unlink()
    for path in experiment.glob("dense-*/*"):
        if path.name in ("result.json", "progress.csv"):
            path.write_bytes(stored[path]) if path in stored else path.unlink()

    run = run_search("--storage", tmp_path.as_uri(), "--name", "behind", "--study-storage", study, "--resume",
                     "--quiet")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = Summary.read(experiment).variants["dense"]
    assert [t["state"] for t in summary.trial_results] == ["completed"] * 4  # the budget, new trials for the lost
    ran = {result["trial_id"] for result in summary.trial_results}
    assert not ran & lost
    for trial_id in ran:
        trial = experiment / f"dense-{trial_id}"
        assert epochs_of(trial) == [1, 2, 3, 4], trial
        with (trial / "progress.csv").open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and all(None not in r.values() for r in rows)
        assert val_steps(trial) == [1, 2, 3, 4], trial  # TensorBoard
    told = study_trials(study, "dense")
    assert {i: t.state for i, t in told.items()} == {**dict.fromkeys(ran, TrialState.COMPLETE),
                                                      **{i: at_the_kill[i] for i in lost - running},
                                                      **dict.fromkeys(running, TrialState.FAIL)}
    for result in summary.trial_results:
        last = json.loads((experiment / f"dense-{result['trial_id']}" / "result.json").read_text().splitlines()[-1])
        trial = told[result["trial_id"]]  # the study holds what the trial reported, each epoch once
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4] and trial.value == pytest.approx(last["val_loss"])
        # The pick is the trial's best epoch, and its folder holds that epoch, though folders were written twice.
        logged = [json.loads(line) for line in (experiment / f"dense-{result['trial_id']}" / "result.json").open()]
        assert result["metrics"]["epoch"] == min(logged, key=lambda r: r["val_loss"])["epoch"]
        assert load_checkpoint(experiment / result["checkpoint"])["epoch"] == result["metrics"]["epoch"]
