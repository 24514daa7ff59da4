"""The commands agree with each other and with what they print: every hint a search prints runs as printed, and
`--variants` names the same things in the search and the evaluation."""
from __future__ import annotations

import csv
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_search, search_env

import aetune.evaluate.__main__ as evaluate
from aetune.errors import UsageError
from aetune.experiment import Summary
from aetune.search.space_file import load_space
from aetune.search.tuner import Experiment, print_summary

pytestmark = pytest.mark.slow
QUICK = REPO / "search_spaces" / "quick.yaml"


def hints(text: str) -> dict[str, list[str]]:
    """The summary's `label: command` lines, split as a shell splits them."""
    return {line.split(":", 1)[0]: shlex.split(line.split(":", 1)[1]) for line in text.splitlines()
            if line.split(":", 1)[0] in ("TensorBoard", "Optuna", "evaluate")}


@pytest.fixture(scope="module")
def copied(searched, tmp_path_factory) -> Path:
    """A copy of the search driver's experiment (the hints write into it)."""
    root = tmp_path_factory.mktemp("hints") / "small"
    shutil.copytree(searched, root, ignore=shutil.ignore_patterns("eval"))
    return root


def test_the_summarys_hints_run_as_printed(copied, capsys, data_root):
    space = load_space(copied / "space.yaml", models=False)
    experiment = Experiment(space, "small", str(copied.parent), str(data_root), f"sqlite:///{copied / 'optuna.db'}")
    print_summary(Summary.read(copied), experiment)
    printed = hints(capsys.readouterr().out)
    assert set(printed) == {"TensorBoard", "Optuna", "evaluate"}

    tensorboard = printed["TensorBoard"]  # tensorboard's own check of the folder, the server not started
    assert tensorboard[:2] == ["tensorboard", "--logdir"] and tensorboard[-2:] == ["--host", "127.0.0.1"]
    inspect = subprocess.run([str(Path(sys.executable).with_name("tensorboard")), *tensorboard[1:], "--inspect"],
                             capture_output=True, text=True, timeout=300)
    assert inspect.returncode == 0 and "reconstruction/val_bce" in inspect.stdout

    dashboard = printed["Optuna"]  # optuna-dashboard URL --host 127.0.0.1: the URL opens the studies
    assert dashboard[0] == "optuna-dashboard" and dashboard[-2:] == ["--host", "127.0.0.1"]
    studies = optuna.get_all_study_summaries(dashboard[1])  # named <experiment>/<created>/<variant>
    assert {s.user_attrs.get("variant") for s in studies} == {v.name for v in space.runs()}

    command = printed["evaluate"]  # as printed; its progress and total on stderr, the leaderboard on stdout
    assert command[:3] == ["python", "-m", "aetune.evaluate"]
    # one variant: test_evaluate scores this experiment whole; here the printed words must be what runs
    run = subprocess.run([sys.executable, *command[1:], "--variants", "denoising", "--no-front"], capture_output=True,
                         text=True, cwd=REPO, env=search_env(), timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    progress = run.stderr.splitlines()
    assert any("scoring 1/" in line for line in progress) and any("drew " in line for line in progress)
    assert "done:" in progress[-1] and f"report: {copied / 'eval' / 'report.html'}" in progress[-1]
    assert f"report: {copied / 'eval' / 'report.html'}" in run.stdout and "scoring" not in run.stdout


def test_the_exists_hint_resumes_the_experiment_as_printed(copied):
    run = run_search("--space", str(copied / "space.yaml"), "--storage", str(copied.parent), "--name", "small")
    assert run.returncode == 2 and "exists; continue it with: " in run.stderr
    command = shlex.split(run.stderr.split("continue it with: ")[1].split("  (or")[0])
    assert command[:3] == ["python", "-m", "aetune.search"] and "--storage" in command
    resumed = run_search(*command[3:])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Optuna:      optuna-dashboard sqlite:///" in resumed.stdout  # the finished experiment, summarised again


def test_evaluate_takes_a_variant_of_the_space_for_all_its_sweep_members_and_is_quiet(copied, data_root, capsys):
    assert evaluate.main([str(copied), "--variants", "dense", "--no-front", "--quiet", "--out",
                          str(copied / "eval-dense"), "--data-root", str(data_root), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress
    with open(copied / "eval-dense" / "leaderboard.csv") as table:
        names = {row["name"] for row in csv.DictReader(table) if row["kind"] == "model"}
    assert names == {"dense@code_size=8", "dense@code_size=16"}


def test_both_commands_name_variants_alike(copied):
    space = load_space(QUICK, models=False)
    assert [v.name for v in space.only(["dense@code_size=8"]).runs()] == ["dense@code_size=8"]
    assert [v.name for v in space.only(["dense", "sparse"]).runs()] == ["dense@code_size=8", "dense@code_size=32",
                                                                       "sparse"]
    with pytest.raises(UsageError, match="'dense@code_size=9' is not in the space"):
        space.only(["dense@code_size=9"])
    summary = Summary.read(copied)
    assert evaluate.select(summary, ["dense"]) == ["dense@code_size=8", "dense@code_size=16"]
    assert evaluate.select(summary, ["dense@code_size=16", "sparse"]) == ["dense@code_size=16", "sparse"]
    with pytest.raises(UsageError, match="unknown variant 'dens'"):
        evaluate.select(summary, ["dens"])
