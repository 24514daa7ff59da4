"""An experiment's record is never lost (issue 20): --resume of a damaged experiment is refused before Ray starts,
with every file as it was; one driver per experiment; studies named by their experiment; the searcher snapshot
loads no code; summary.json never shrinks; SIGTERM is Ctrl-C. Real drivers on a tiny space (300 MNIST images,
1 epoch, 2 trials) made once and copied per case."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, SEARCH, digests, run_search, search_env, write_space

from aetune.errors import UsageError
from aetune.experiment import Summary
from aetune.search import lock
from aetune.search.resumable import no_restart
from aetune.search.searchers import make_router
from aetune.search.snapshot import read_snapshot
from aetune.search.space_file import load_space

TINY = """\
    name: tiny
    epochs: 1
    samples: 2
    scheduler: fifo
    metric: val_bce
    defaults: {train_size: 300, test_size: 100, batch_size: 64, hidden_layers: [16]}
    variants:
      dense: {model: dense, code_size: 4, lr: {loguniform: [0.001, 0.01]}}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    run = run_search("--space", str(write_space(root / "tiny.yaml", TINY)), "--storage", str(root / "runs"),
                     "--quiet")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return root / "runs" / "tiny"


def copy(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "runs" / "tiny")
    return tmp_path / "runs" / "tiny"


def resume(experiment: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_search("--storage", str(experiment.parent), "--name", experiment.name, "--resume", "--quiet", *extra)


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def cut(pattern: str):
    def damage(experiment: Path) -> None:
        for path in experiment.glob(pattern):
            path.write_bytes(path.read_bytes()[:100])
    return damage


def edit_space(old: str, new: str):
    def damage(experiment: Path) -> None:
        path = experiment / "space.yaml"
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    return damage


def delete_a_trial(experiment: Path) -> None:
    shutil.rmtree(next(experiment.glob("dense-*")))


def move_the_study(experiment: Path) -> None:
    (experiment / "optuna.db").rename(experiment.parent / "optuna.db.moved")


def popen(marker: Path) -> bytes:
    """A protocol-4 pickle naming subprocess.Popen by a dotted name under an importable module."""
    def text(value: str) -> bytes:
        return pickle.SHORT_BINUNICODE + bytes([len(value)]) + value.encode()
    return (b"\x80\x04" + text("numpy.distutils.exec_command") + text("subprocess.Popen") + pickle.STACK_GLOBAL
            + pickle.EMPTY_LIST + pickle.MARK + text("touch") + text(str(marker)) + pickle.APPENDS + pickle.TUPLE1
            + pickle.REDUCE + pickle.STOP)


def memmap(target: Path) -> bytes:
    """A pickle that builds numpy.memmap(target, mode="w+"): the file truncated to one byte."""
    import numpy

    class Truncate:
        def __reduce__(self):
            return numpy.memmap, (str(target), numpy.uint8, "w+", 0, (1,))
    return pickle.dumps(Truncate())


def plant_code(experiment: Path) -> None:
    for path in experiment.glob("searcher-state-*.pkl"):
        path.write_bytes(popen(experiment.parent / "ran"))


DAMAGES = {
    "searcher-snapshot-cut-with-its-backup": (cut("searcher-state-*.pkl*"), "is damaged and has no whole backup"),
    "experiment-state-cut-with-its-backup": (cut("experiment_state-*.json*"), "is damaged and has no whole backup"),
    "variant-renamed": (edit_space("  dense:", "  wide:"), "space.yaml changed since the experiment was made"),
    "samples-edited": (edit_space("samples: 2", "samples: 3"), "space.yaml changed since the experiment was made"),
    "trial-folder-deleted": (delete_a_trial, "is missing (terminated in Ray's snapshot)"),
    "study-storage-moved": (move_the_study, "optuna.db is gone"),
    "tuner-pkl-deleted": (lambda e: (e / "tuner.pkl").unlink(), "tuner.pkl is missing"),
    "tuner-pkl-cut": (cut("tuner.pkl"), "tuner.pkl is damaged (cut short)"),
    "searcher-snapshot-runs-code": (plant_code, "is a pickle, as an earlier aetune wrote its searcher snapshots"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=str)
def test_a_damaged_experiment_is_refused_before_ray_with_its_record_unchanged(finished, tmp_path, damage):
    experiment = copy(finished, tmp_path)
    DAMAGES[damage][0](experiment)
    before = digests(tmp_path)
    run = resume(experiment)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("aetune: error: "), run.stderr
    assert DAMAGES[damage][1] in run.stderr
    assert "Ray" not in run.stdout  # Ray never started
    assert digests(tmp_path) == before  # summary.json, optuna.db, every trial folder: byte-identical
    assert not (tmp_path / "runs" / "ran").exists()


def normalised(summary: dict) -> dict:
    for variant in summary["variants"].values():
        variant["trial_results"] = sorted(variant["trial_results"], key=lambda r: r["trial_id"])
    return summary


def test_a_finished_experiment_resumes_to_the_same_summary_and_study(finished, tmp_path):
    """A copy, resumed with no dataset at $AETUNE_DATA: it reads the data root its experiment.json names, and
    writes to its own optuna.db, not to the original's that tuner.pkl names."""
    experiment = copy(finished, tmp_path)
    summary, study = (experiment / "summary.json").read_text(), digests(experiment)["optuna.db"]
    run = subprocess.run([*SEARCH, "--storage", str(experiment.parent), "--name", experiment.name, "--resume",
                          "--quiet"], capture_output=True, text=True, cwd=REPO,
                         env=search_env(AETUNE_DATA=str(tmp_path / "nowhere")), timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert normalised(json.loads((experiment / "summary.json").read_text())) == normalised(json.loads(summary))
    assert digests(experiment)["optuna.db"] == study and digests(finished)["optuna.db"] == study
    assert not (experiment / lock.LOCK_FILE).exists()


def test_summary_json_is_never_rewritten_to_hold_less(finished, tmp_path):
    experiment = copy(finished, tmp_path)
    before = (experiment / "summary.json").read_bytes()
    summary = Summary.read(experiment)
    dense = summary.variants["dense"]
    dense.trial_results = [r for r in dense.trial_results if r["trial_id"] != dense.trial_id]
    with pytest.raises(UsageError, match="its pick|trial "):
        summary.write(str(experiment))
    del summary.variants["dense"]
    with pytest.raises(UsageError, match="holds dense's"):
        summary.write(str(experiment))
    assert (experiment / "summary.json").read_bytes() == before
    Summary.read(experiment).write(str(experiment))  # the same record: written
    summary = Summary.read(experiment)
    summary.variants["dense"].repeats = [{"trial_id": "r1", "seed": 1, "metrics": {}}]
    summary.write(str(experiment))  # more: written
    summary.variants["dense"].repeats = []
    with pytest.raises(UsageError, match="holds dense's repeat r1"):
        summary.write(str(experiment))


def test_studies_carry_the_experiments_name_and_another_of_that_name_is_refused(finished, tmp_path):
    manifest = json.loads((finished / "experiment.json").read_text())
    study = f"sqlite:///{finished / 'optuna.db'}"
    assert optuna.get_all_study_names(study) == [f"tiny/{manifest['created']}/dense"]
    experiment = copy(finished, tmp_path)
    space = write_space(tmp_path / "tiny.yaml", TINY)
    before = digests(tmp_path)
    run = run_search("--space", str(space), "--storage", str(tmp_path / "other"), "--quiet",
                     "--study-storage", f"sqlite:///{experiment / 'optuna.db'}")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"already holds the study 'tiny/{manifest['created']}/dense' of another experiment" in run.stderr
    assert digests(tmp_path) == before
    assert not (tmp_path / "other").exists()


def test_the_searcher_snapshot_is_data_and_a_pickle_in_its_place_runs_nothing(finished, tmp_path):
    real = next(finished.glob("searcher-state-*.pkl"))  # Ray's file name; aetune's JSON
    assert set(read_snapshot(real)["variant_of"].values()) == {"dense"}
    victim = tmp_path / "victim"
    victim.write_bytes(b"kept")
    for name, payload in {"popen": popen(tmp_path / "ran"), "memmap": memmap(victim),
                          "system": pickle.dumps(Payload(tmp_path / "ran"))}.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ValueError):
            read_snapshot(tmp_path / name)
    assert not (tmp_path / "ran").exists() and victim.read_bytes() == b"kept"


def test_a_resumed_router_writes_to_the_study_storage_resume_checked_not_the_pickled_one(tmp_path):
    """tuner.pkl pickles the router with its studies' storage (an absolute path); a copy of the experiment resumed
    must write to its own optuna.db."""
    import ray.cloudpickle as cloudpickle

    space = load_space(write_space(tmp_path / "tiny.yaml", TINY), models=False)
    original, moved = tmp_path / "original.db", tmp_path / "copy.db"
    generator = make_router(space, f"sqlite:///{original}", {}, "tiny/c0ffee/")
    router = generator.searcher
    router.suggest("t1")
    router.save(str(tmp_path / "searcher-state-x.pkl"))
    pickled = cloudpickle.dumps(generator)  # as tuner.pkl holds it
    shutil.copy(original, moved)
    before = hashlib.sha256(original.read_bytes()).hexdigest()
    restored = cloudpickle.loads(pickled).searcher
    restored.bind(f"sqlite:///{moved}")
    restored.restore(str(tmp_path / "searcher-state-x.pkl"))
    assert restored.variant_of == {"t1": "dense"} and set(restored.searchers["dense"]._ot_trials) == {"t1"}
    restored.on_trial_complete("t1", {"val_bce": 0.1, "epoch": 1})
    restored.suggest("t2")
    assert hashlib.sha256(original.read_bytes()).hexdigest() == before
    trials = optuna.load_study(study_name="tiny/c0ffee/dense", storage=f"sqlite:///{moved}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]


def test_a_new_experiment_writes_its_manifest_before_its_space(tmp_path, monkeypatch):
    """A driver stopped between the two writes never leaves a space.yaml (the experiment's marker) without the
    experiment.json --resume checks it against."""
    import aetune.experiment
    from aetune.search import tuner

    written, write_text = [], aetune.experiment.write_text

    def recorded(location: str, text: str, exclusive: bool = False) -> str:
        written.append(Path(location).name)
        return write_text(location, text, exclusive)
    monkeypatch.setattr(aetune.experiment, "write_text", recorded)
    monkeypatch.setattr(tuner, "write_text", recorded)
    space = load_space(write_space(tmp_path / "tiny.yaml", TINY), models=False)
    made = tuner.Experiment(space, "tiny", str(tmp_path / "runs"), "/the/data", None)
    made.create()
    assert written == ["experiment.json", "space.yaml"]
    manifest = json.loads((tmp_path / "runs" / "tiny" / "experiment.json").read_text())
    assert manifest["data_root"] == "/the/data" and manifest["created"] == made.created


def test_rays_restart_fallback_is_an_error():
    with no_restart(), pytest.raises(UsageError, match="Ray could not restore the experiment .KeyError"):
        try:
            raise KeyError("dense")
        except KeyError:
            logging.getLogger("ray.tune.execution.tune_controller").exception("Failed to restore the run state.")
    logging.getLogger("ray.tune.execution.tune_controller").info("Restarting experiment.")  # outside: just logs


def test_a_lease_is_refused_while_held_and_taken_over_once_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AETUNE_LOCK", "lease")
    folder = tmp_path / "exp"
    with lock.hold(str(folder)):
        lease = json.loads((folder / lock.LEASE_FILE).read_text())
        assert lease["pid"] == os.getpid() and lease["host"]
        with pytest.raises(lock.HeldError, match=f"another driver .PID {os.getpid()} on"):
            with lock.hold(str(folder)):
                pass
    assert not (folder / lock.LEASE_FILE).exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for stale, why in (({**lease, "pid": int(gone.stdout)}, "its process is gone"),
                       ({**lease, "host": "elsewhere", "heartbeat": time.time() - 2 * lock.LEASE_S}, "s old")):
        (folder / lock.LEASE_FILE).write_text(json.dumps(stale))
        with lock.hold(str(folder)):
            assert "took over the lock" in capsys.readouterr().err
    (folder / lock.LEASE_FILE).write_text(json.dumps({**lease, "host": "elsewhere", "heartbeat": time.time()}))
    with pytest.raises(lock.HeldError, match="on elsewhere"):
        with lock.hold(str(folder)):
            pass


def test_a_driver_whose_lease_was_taken_over_stops_renewing_it(tmp_path):
    """A driver that stalled past LEASE_S (a laptop asleep) and lost its lease to another must not write it back:
    two drivers would then both hold the experiment."""
    lease = lock.Lease(str(tmp_path))
    lease.acquire()
    try:
        assert lease.beat_once()  # still its own: renewed
        other = {**lease.me, "pid": 1, "host": "elsewhere", "token": "another driver's"}
        (tmp_path / lock.LEASE_FILE).write_text(json.dumps(other))
        assert not lease.beat_once()
        assert json.loads((tmp_path / lock.LEASE_FILE).read_text()) == other  # not written back
    finally:
        lease.stop.set()


# Trials that outlive the test's checks and its SIGTERM, however busy the machine: the driver never ends by itself.
ENDLESS = TINY.replace("epochs: 1", "epochs: 100000")


def test_two_drivers_never_run_one_experiment_and_sigterm_is_ctrl_c(tmp_path):
    space = write_space(tmp_path / "endless.yaml", ENDLESS)
    storage = tmp_path / "runs"
    experiment = storage / "tiny"
    first = subprocess.Popen([*SEARCH, "--space", str(space), "--storage", str(storage), "--quiet"], cwd=REPO,
                             env=search_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(experiment.glob("dense-*/result.json")):  # a trial is training
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(1)
        for args in (["--space", str(space)], ["--name", "tiny", "--resume"]):  # a new driver, and a resume
            second = run_search(*args, "--storage", str(storage), "--quiet")
            assert second.returncode == 2, second.stderr
            assert f"being run by another driver (PID {first.pid} on" in second.stderr
            assert second.stderr.count("\n") == 1
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-3000:]
    assert "interrupted; continue with" in out and err.rstrip().endswith("aetune: interrupted"), err[-3000:]
    assert not (experiment / lock.LOCK_FILE).exists()  # released on the way out


def test_a_dead_drivers_lock_is_taken_over_with_a_notice(finished, tmp_path):
    """A driver killed outright leaves its lock file: the next one takes it over, says so, and goes on."""
    experiment = copy(finished, tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (experiment / lock.LOCK_FILE).write_text(json.dumps({"host": "here", "pid": int(gone.stdout)}))
    run = resume(experiment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"took over the lock of {experiment} from PID {int(gone.stdout)} on here (its process is gone)" in run.stderr
    assert not (experiment / lock.LOCK_FILE).exists()
