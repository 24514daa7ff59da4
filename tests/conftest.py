"""Shared fixtures: the real MNIST files from ../shared/data (or $AETUNE_DATA), small subsets of them."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from aetune.train.data import ImageData, load_data

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("AETUNE_DATA") or REPO.parent / "shared" / "data").resolve()
TRAIN_SIZE, TEST_SIZE = 3000, 1000


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {DATA_ROOT}; set AETUNE_DATA to a folder holding MNIST/raw")
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> ImageData:
    """3,000 training and 1,000 test images of the real MNIST."""
    return load_data("mnist", str(data_root), TRAIN_SIZE, TEST_SIZE, download=False)


SEARCH = (sys.executable, "-m", "aetune.search")  # as a user runs it


def search_env(**extra: str) -> dict[str, str]:
    """The environment of a search under test: the shared MNIST, unbuffered output, and `extra`."""
    return {**os.environ, "AETUNE_DATA": str(DATA_ROOT), "PYTHONUNBUFFERED": "1", **extra}


def run_search(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m aetune.search ARGS` in a subprocess, to its end."""
    return subprocess.run([*SEARCH, *args], capture_output=True, text=True, env=search_env(), timeout=timeout,
                          cwd=REPO)


def digests(root: Path) -> dict[str, str]:
    """Every file and folder under root with its content's hash: what a refused or failed run must leave as it was
    (the lock file included: it is never left behind)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def write_space(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def study_name(storage: str, variant: str) -> str:
    """The study of a variant: named <experiment>/<creation id>/<variant> by a search, <variant> by a bare searcher."""
    names = optuna.get_all_study_names(storage)
    return variant if variant in names else next(n for n in names if n.rsplit("/", 1)[-1] == variant)


def study_trials(storage: str, name: str) -> dict[str, optuna.trial.FrozenTrial]:
    """A variant's Optuna study by the Ray trial id each of its trials was asked for."""
    trials = optuna.load_study(study_name=study_name(storage, name), storage=storage).trials
    return {t.user_attrs["ray_trial_id"]: t for t in trials if "ray_trial_id" in t.user_attrs}


def study_states(storage: str, name: str) -> dict[str, optuna.trial.TrialState]:
    return {trial_id: t.state for trial_id, t in study_trials(storage, name).items()}


SMALL_SPACE = """\
    name: small
    epochs: 3
    samples: 2
    searcher: optuna
    scheduler: fifo
    metric: val_bce
    resources: {cpus: 1}
    defaults: {train_size: 3000, test_size: 500, batch_size: 32, lr: 0.003}
    variants:
      dense:
        model: dense
        hidden_layers: [64]
        lr: {loguniform: [0.001, 0.01]}
        sweep: {code_size: [8, 16]}
        repeats: 2
      denoising:
        model: conv
        filters: [8, 8]
        noise_factor: 0.5
        batch_size: 128
        metric: val_denoise_bce
      sparse:
        model: dense
        hidden_layers: [64]
        code_size: 16
        l1: {loguniform: [1.0e-5, 1.0e-3]}
        metric: [val_bce, code_l1]
        mode: [min, min]
        samples: 3
        repeats: 2
      conv:
        model: conv
        filters: [8, 8]
        batch_size: 128
      vae:
        model: vae
        hidden_layers: [64]
        code_size: 2
        metric: val_loss
"""


@pytest.fixture(scope="session")
def searched(tmp_path_factory, data_root) -> Path:
    """A small but real experiment made by the search driver: five variants (a code-size sweep, a Pareto front over
    l1, a denoiser scored on fixed-noise inputs), two or three trials each, three epochs; the sweep members' picks
    and the front's picked member repeated under two new seeds."""
    root = tmp_path_factory.mktemp("runs")
    space = write_space(root / "small.yaml", SMALL_SPACE)
    run = run_search("--space", str(space), "--storage", str(root), "--quiet")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root / "small"
