"""What the driver checks, holding the experiment's lock and before Ray starts, so that a run either continues the
experiment exactly as it was made or is refused in one line with nothing written.

--resume: the space is the one the experiment was made with (its digest in experiment.json); every snapshot file
reads back whole (or its backup does) and the searcher's is aetune's JSON snapshot; the study storage is
there and holds the experiment's studies; every trial the snapshot names as started is on disk. A new experiment:
its name is free, and the study storage holds no study of another experiment of that name. Last, Ray's own fallback
("Failed to restore the run state ... Restarting experiment", a new run over the old record) is made an error.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from aetune.errors import UsageError, first_line
from aetune.experiment import SPACE_FILE, VARIANT_KEY, read_manifest, space_digest
from aetune.search.resume import BACKUP, SNAPSHOT_FILES, whole
from aetune.search.searchers import study_prefix
from aetune.search.snapshot import read_snapshot
from aetune.storage import join, read_text

TUNER_FILE = "tuner.pkl"


class NotResumable(UsageError):
    """The experiment cannot be resumed exactly as it was made."""


def check_resume(experiment: Any, folder: str | None) -> None:
    """`experiment`: tuner.Experiment (its `created` is set from the manifest); `folder`: its local path, None on a
    bucket (where only the space is checked: the snapshot files are Ray's to read there)."""
    path = experiment.path
    manifest = read_manifest(path)
    experiment.created = manifest.get("created")
    recorded = manifest.get("space_sha256")
    if recorded and space_digest(read_text(join(path, SPACE_FILE)) or "") != recorded:
        raise NotResumable(f"{join(path, SPACE_FILE)} changed since the experiment was made; --resume continues a "
                           "search only as it began: put the file back, or run the edited space as a new experiment "
                           f"(--space FILE --name NEW)")
    if folder is None:
        return
    root = Path(folder)
    state = _snapshots(root)
    if state is None:
        return  # stopped before Tune saved anything: the search starts from the beginning, as it was made
    trials = [t for t, _ in state["trial_data"]]
    _check_studies(experiment, {json.loads(t)["config"].get(VARIANT_KEY) if isinstance(t, str) else None
                                for t in trials})
    _check_trials(root, trials)


def _snapshots(root: Path) -> dict | None:
    """The newest experiment state (each file whole, or its backup); None when Tune never saved one."""
    files = sorted(p for pattern in SNAPSHOT_FILES for p in root.glob(pattern))
    if not files and not (root / TUNER_FILE).exists():
        return None
    if not (root / TUNER_FILE).is_file():
        raise NotResumable(f"{root / TUNER_FILE} is missing: Ray cannot restore the search without it; put it back "
                           "(nothing else replaces it), or start a new experiment with another --name")
    if not whole(root / TUNER_FILE):
        raise NotResumable(f"{root / TUNER_FILE} is damaged (cut short): Ray cannot restore the search without it; "
                           "put a whole copy back (nothing else replaces it), or start a new experiment with another "
                           "--name")
    readable = {}
    for path in files:
        if path.name.startswith("searcher-state-") and path.read_bytes()[:1] == b"\x80":
            raise NotResumable(f"{path} is a pickle, as an earlier aetune wrote its searcher snapshots; this one reads "
                               "them only as data and does not load it (README \"Security\"): finish the search with "
                               "the aetune that made it, or start a new experiment with another --name")
        usable = path if whole(path) else path.with_name(path.name + BACKUP)
        if not whole(usable):
            raise NotResumable(f"{path} is damaged and has no whole backup ({path.name}{BACKUP}); put a copy back, "
                               "or start a new experiment with another --name")
        readable[path.name] = usable
    for name, usable in readable.items():
        if name.startswith("searcher-state-"):
            try:
                read_snapshot(usable)
            except (ValueError, TypeError, KeyError) as err:
                raise NotResumable(f"{root / name} is not a searcher snapshot aetune wrote ({first_line(err)}); "
                                   "put back a trusted copy, or start a new experiment") from None
    states = sorted(n for n in readable if n.startswith("experiment_state-"))
    if not states:
        raise NotResumable(f"{root} has no experiment_state-*.json: Ray's record of its trials is gone; put it back, "
                           "or start a new experiment with another --name")
    return json.loads(readable[states[-1]].read_bytes())


def _check_studies(experiment: Any, variants: set[str | None]) -> None:
    url = experiment.study_storage
    if url is None or not variants:
        return
    names = study_names(url)
    if names is None:
        raise NotResumable(f"the study storage {url} is gone; its trials' records are there: put it back "
                           "(or pass --study-storage with where it is now)")
    prefix = study_prefix(experiment.name, experiment.created)
    missing = sorted(f"{prefix}{v}" for v in variants if v and f"{prefix}{v}" not in names)
    if missing:
        raise NotResumable(f"the study storage {url} lacks the study {missing[0]!r} of this experiment; pass the "
                           "--study-storage it was made with, or put that storage back")


def _check_trials(root: Path, trials: list) -> None:
    for raw in trials:
        state = json.loads(raw) if isinstance(raw, str) else {}
        config, status = state.get("config") or {}, state.get("status")
        folder = root / (state.get("relative_logdir") or f"{config.get(VARIANT_KEY)}-{state.get('trial_id')}")
        if status in ("TERMINATED", "ERROR") and not folder.is_dir():  # a running one may not have made it yet
            raise NotResumable(f"trial folder {folder} is missing ({status.lower()} in Ray's snapshot); put it back: "
                               "resuming without it would drop its results")


def study_names(url: str) -> set[str] | None:
    """The studies in an Optuna storage, read without creating or changing anything; None when it is not there."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return {row[0] for row in db.execute("SELECT study_name FROM studies")}
        except sqlite3.Error as err:
            raise NotResumable(f"cannot read the study storage {url} ({first_line(err)}); put back a whole copy "
                               "(or pass --study-storage with where it is now)") from None
    import optuna

    from aetune.search.searchers import open_study_storage

    if "://" not in url and not Path(url).is_file():
        return None
    return set(optuna.get_all_study_names(open_study_storage(url)))


def check_new(experiment: Any, given_storage: bool) -> None:
    """A new experiment: its name is free (no space.yaml there), and a --study-storage holds no study of another
    experiment with this name (study names carry the experiment's name)."""
    if read_text(join(experiment.path, SPACE_FILE)) is not None:
        raise experiment.exists_error()
    if not given_storage or experiment.study_storage is None:
        return
    names = study_names(experiment.study_storage) or set()
    others = sorted(n for n in names if n.startswith(f"{experiment.name}/"))
    if others:
        raise UsageError(f"--study-storage {experiment.study_storage} already holds the study {others[0]!r} of "
                         f"another experiment named {experiment.name!r}; pass another --name or another "
                         "--study-storage")


class _RefuseRestart(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to restore the run state"):
            err = record.exc_info[1] if record.exc_info else None
            cause = f"{type(err).__name__}: {first_line(err)}" if err else "no cause given"
            raise NotResumable(f"Ray could not restore the experiment ({cause}); nothing was run: put back the "
                               "files it names, or start a new experiment with another --name")
        return True


@contextlib.contextmanager
def no_restart() -> Iterator[None]:
    """Ray's TuneController logs "Failed to restore the run state" and starts the experiment anew when a restore
    fails: here that message raises instead, before anything runs."""
    logger, guard = logging.getLogger("ray.tune.execution.tune_controller"), _RefuseRestart()
    logger.addFilter(guard)
    try:
        yield
    finally:
        logger.removeFilter(guard)
