"""The driver's Tune callbacks that keep a resumed search exact when the driver died before Tune's experiment
snapshot caught up with its trials.

A snapshot that the kill cut is put back from a backup taken every second. Tune's result files (result.json,
progress.csv) never log an epoch twice: a restored trial reports again what the
snapshot missed (trainable.py), and these loggers skip an epoch already in their file. A trial whose last snapshot
names a checkpoint that Tune deleted since (no longer among the best few) still restores.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from pyarrow.fs import FileType
from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.result import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

from aetune.storage import write_bytes

SNAPSHOT_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")  # Tune's, per driver
BACKUP = ".bak"


class SnapshotBackup(Callback):
    """Tune rewrites its experiment snapshot in place and copies it to storage in the background: a kill at the
    wrong moment leaves a cut file that --resume cannot read. At most every `every_s`, after Tune's save, a whole
    copy of the driver's snapshot goes beside it in the experiment folder (`<file>.bak`, written atomically);
    `restore_cut_snapshot` puts it back. Local storage only: a bucket stores each object whole or not at all."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self._last, self._copied = -math.inf, {}  # file name -> the mtime of the save it last copied

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if not trials or time.monotonic() - self._last < self.every_s:
            return
        storage = trials[0].storage  # where this run keeps the experiment (it may have moved since it was made)
        if storage.storage_filesystem.type_name != "local":
            return
        staging = Path(storage.experiment_driver_staging_path)  # complete: Tune saved it in this step
        for pattern in SNAPSHOT_FILES:
            for path in staging.glob(pattern):
                saved = path.stat().st_mtime_ns
                if self._copied.get(path.name) != saved:  # a file Tune did not save again needs no new copy
                    write_bytes(str(Path(storage.experiment_fs_path, path.name + BACKUP)), path.read_bytes())
                    self._copied[path.name] = saved
        self._last = time.monotonic()

    def __getstate__(self) -> dict:  # pickled with the Tuner: nothing of this driver's
        return {**self.__dict__, "_last": -math.inf, "_copied": {}}


def restore_cut_snapshot(experiment_dir: Path) -> list[str]:
    """Put the backup in place of every snapshot file that does not read back whole; the names it replaced."""
    replaced = []
    for backup in sorted(experiment_dir.glob(f"*{BACKUP}")):
        target = backup.with_suffix("")
        if not whole(target) and whole(backup):
            write_bytes(str(target), backup.read_bytes())
            replaced.append(target.name)
    return replaced


def whole(path: Path) -> bool:
    """Reads back whole: the experiment state and the searcher's snapshot (aetune's, data), JSON that parses; the
    generator's (search_gen_state-*.json, Ray's pickle), one that ends in pickle's STOP opcode."""
    try:
        data = path.read_bytes()
        if path.name.startswith(("experiment_state-", "searcher-state-")):
            json.loads(data)
            return True
        return data.endswith(b".")
    except (OSError, ValueError):
        return False


class RestorableCheckpoints(Callback):
    """Tune refuses to restore a trial whose snapshot's checkpoint folder is gone (the trial errors, every retry
    alike). An empty folder in its place lets it start; train_trial then finds no checkpoint in it and goes on from
    the newest one on local storage (on a bucket: from the start), telling Tune every epoch again."""

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is not None and checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.NotFound:
            checkpoint.filesystem.create_dir(checkpoint.path)


class _EachEpochOnce:
    """Mixin for a Tune logger callback that writes `file_name` in each trial's folder."""

    file_name: str

    def __init__(self) -> None:
        super().__init__()
        self._logged: dict[Any, set[int]] = {}

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._logged:
            if trial not in self._trial_files:
                self._open(trial)  # Tune's own set-up first: it fetches the stored file of a restored trial
            self._logged[trial] = self.logged_epochs(Path(trial.local_path) / self.file_name)
        epoch = result.get("epoch")
        if epoch in self._logged[trial]:
            return
        if epoch is not None:
            self._logged[trial].add(epoch)
        super().log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        super().log_trial_end(trial, failed)
        self._logged.pop(trial, None)  # a retry opens the file again

    def _restore_from_remote(self, file_name: str, trial) -> None:
        # Tune fetches the stored copy of the file whenever a trial with a checkpoint starts, a retry too; this
        # driver's own copy is the whole one (the stored copy is synced in the background and may lag it).
        if not (Path(trial.local_path) / file_name).exists():
            super()._restore_from_remote(file_name, trial)

    def _open(self, trial) -> None:
        raise NotImplementedError

    @staticmethod
    def logged_epochs(path: Path) -> set[int]:
        raise NotImplementedError


class JsonResults(_EachEpochOnce, JsonLoggerCallback):
    file_name = EXPR_RESULT_FILE

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(trial)
        drop_cut_line(Path(trial.local_path) / self.file_name)  # else the next record is glued onto it

    def _open(self, trial) -> None:
        self.log_trial_start(trial)

    @staticmethod
    def logged_epochs(path: Path) -> set[int]:
        epochs = set()
        for line in whole_lines(path):
            try:
                epochs.add(json.loads(line)["epoch"])
            except (ValueError, KeyError, TypeError):
                continue
        return epochs


class CsvResults(_EachEpochOnce, CSVLoggerCallback):
    file_name = EXPR_PROGRESS_FILE

    def _setup_trial(self, trial) -> None:
        super()._setup_trial(trial)
        path = Path(trial.local_path) / self.file_name
        drop_cut_line(path)
        header = next(csv.reader(whole_lines(path)), None)
        self._trial_continue[trial] = header is not None  # a cut first line was all there was: write a header
        if header:  # go on under the file's own columns: Tune's keys differ between results (should_checkpoint)
            self._trial_csv[trial] = csv.DictWriter(self._trial_files[trial], header)

    def _open(self, trial) -> None:
        self._setup_trial(trial)

    @staticmethod
    def logged_epochs(path: Path) -> set[int]:
        epochs = set()
        for row in csv.DictReader(whole_lines(path)):
            try:
                epochs.add(int(float(row["epoch"])))
            except (ValueError, KeyError, TypeError):  # a row without its epoch (None) is not logged
                continue
        return epochs


def whole_lines(path: Path) -> list[str]:
    """The file's lines but a last one that a kill cut short (no newline at its end)."""
    text = path.read_text() if path.is_file() else ""
    return text[:text.rfind("\n") + 1].splitlines()


def drop_cut_line(path: Path) -> None:
    """Truncate a last line that a kill cut short."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)
