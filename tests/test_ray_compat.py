"""The Ray Tune and Optuna versions aetune accepts, and one test per private hook its resume code overrides: when a
release moves one, the failure names it (aetune/search/ray_compat.py lists them)."""
from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path

import optuna
import pytest
from conftest import REPO
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.search.optuna import OptunaSearch

from aetune.experiment import VARIANT_KEY
from aetune.search import ray_compat
from aetune.search.searchers import EnumeratedSearch, RoutedSearch, VariantRouter, restored_trials


def moved(hook: str, user: str) -> str:
    return f"Ray/Optuna moved the private hook {hook} that {user} overrides; adapt it, then widen TESTED"


# --- the accepted versions ----------------------------------------------------------------------------------------

def test_pyproject_accepts_exactly_the_tested_minors():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, (low, high) in ray_compat.TESTED.items():
        spec = next(d for d in dependencies if d.startswith(package))
        upper = f"{high.split('.')[0]}.{int(high.split('.')[1]) + 1}"
        assert f">={low},<{upper}" in spec, f"pyproject.toml's {spec!r} disagrees with ray_compat.TESTED[{package!r}]"


def test_an_untested_ray_is_named_in_one_warning_line(monkeypatch, capsys):
    monkeypatch.setattr(ray_compat, "version", {"ray": "2.61.0", "optuna": "5.0.2"}.get)
    ray_compat.warn_untested()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "ray 2.61.0 is installed" in lines[0] and "tested on ray 2.60.x" in lines[0]
    monkeypatch.setattr(ray_compat, "version", {"ray": "2.60.3", "optuna": "5.0.0"}.get)
    ray_compat.warn_untested()
    assert capsys.readouterr().err == ""


def test_the_installed_versions_are_the_tested_ones():
    assert ray_compat.untested() == []


# --- Ray Tune's logger callbacks (search/resume.py) ---------------------------------------------------------------

@pytest.mark.parametrize("callback", [JsonLoggerCallback, CSVLoggerCallback])
def test_hook_logger_restore_from_remote(callback):
    hook = f"{callback.__name__}._restore_from_remote(file_name, trial)"
    method = getattr(callback, "_restore_from_remote", None)
    assert method is not None, moved(hook, "resume._EachEpochOnce")
    assert list(inspect.signature(method).parameters) == ["self", "file_name", "trial"], moved(hook, "resume._EachEpochOnce")
    assert "_restore_from_remote" in inspect.getsource(callback.log_trial_start) + inspect.getsource(
        getattr(callback, "_setup_trial", callback.log_trial_start)), moved(hook + " (no longer called)", "resume")


@pytest.mark.parametrize("callback", [JsonLoggerCallback, CSVLoggerCallback])
def test_hook_logger_trial_files(callback):
    assert isinstance(getattr(callback(), "_trial_files", None), dict), moved(f"{callback.__name__}._trial_files",
                                                                             "resume._EachEpochOnce")


def test_hook_csv_logger_setup_trial_and_writer():
    logger = CSVLoggerCallback()
    for hook in ("_trial_csv", "_trial_continue"):
        assert isinstance(getattr(logger, hook, None), dict), moved(f"CSVLoggerCallback.{hook}", "resume.CsvResults")
    assert callable(getattr(logger, "_setup_trial", None)), moved("CSVLoggerCallback._setup_trial", "resume.CsvResults")


# --- SearchGenerator (searchers.RoutedSearch) ---------------------------------------------------------------------

def test_hook_search_generator_counter_and_finished():
    """RoutedSearch.restore_from_dir sets both after a restore: _counter (trials created) and _finished decide
    is_finished, i.e. when Tune stops asking for trials."""
    generator = RoutedSearch(VariantRouter({"a": EnumeratedSearch([{"lr": 0.1}])}, {"a": 1}, {}))
    generator._total_samples = 3
    for hook in ("_counter", "_finished"):
        assert hook in vars(generator), moved(f"SearchGenerator.{hook}", "searchers.RoutedSearch.restore_from_dir")
    generator._counter, generator._finished = 3, False
    assert generator.is_finished(), moved("SearchGenerator._counter (is_finished ignores it)", "RoutedSearch")
    generator._counter, generator._finished = 0, True
    assert generator.is_finished(), moved("SearchGenerator._finished (is_finished ignores it)", "RoutedSearch")
    generator._finished = False
    assert not generator.is_finished()
    assert generator.get_state()["counter"] == 0, moved("SearchGenerator._counter (not its saved 'counter')",
                                                        "searchers.RoutedSearch")


# --- OptunaSearch (searchers.PrunedOptunaSearch) ------------------------------------------------------------------

def test_hook_optuna_search_study_and_trials():
    search = OptunaSearch(space={"lr": optuna.distributions.FloatDistribution(0.1, 1.0)}, metric="loss", mode="min")
    search.suggest("t1")
    assert isinstance(getattr(search, "_ot_study", None), optuna.Study), moved("OptunaSearch._ot_study",
                                                                              "searchers.PrunedOptunaSearch")
    assert isinstance(getattr(search, "_ot_trials", {}).get("t1"), optuna.Trial), moved(
        "OptunaSearch._ot_trials", "searchers.PrunedOptunaSearch")
    search.on_trial_complete("t1", {"loss": 1.0})
    assert "t1" in getattr(search, "_completed_trials", ()), moved("OptunaSearch._completed_trials",
                                                                    "searchers.PrunedOptunaSearch")


# --- Optuna (searchers.PrunedOptunaSearch.adopt and fail_orphans) -------------------------------------------------

def test_hook_optuna_frozen_trial_id_and_study_storage():
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert getattr(frozen, "_trial_id", None) == trial._trial_id, moved("FrozenTrial._trial_id", "searchers.adopt")
    storage = getattr(study, "_storage", None)
    assert isinstance(storage, optuna.storages.BaseStorage), moved("Study._storage", "searchers.fail_orphans")
    storage.set_trial_state_values(frozen._trial_id, optuna.trial.TrialState.FAIL)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


# --- Tune's experiment-state layout (searchers.restored_trials) ---------------------------------------------------

def test_hook_experiment_state_layout(searched: Path):
    template = getattr(TuneController, "CKPT_FILE_TMPL", None)
    assert template is not None and "{}" in template, moved("TuneController.CKPT_FILE_TMPL", "searchers.restored_trials")
    newest = max(searched.glob(template.format("*")), default=None)
    assert newest is not None, moved(f"the experiment-state file name {template}", "searchers.restored_trials")
    trial_data = json.loads(newest.read_text()).get("trial_data")
    assert isinstance(trial_data, list) and all(len(pair) == 2 for pair in trial_data), moved(
        "the experiment state's 'trial_data' list of (trial state, run metadata)", "searchers.restored_trials")
    trials = restored_trials(searched)
    assert trials and all(isinstance(t, Trial) and t.config.get(VARIANT_KEY) for t in trials.values()), moved(
        "Trial.from_json_state(state, stub=True)", "searchers.restored_trials")
    assert {t.status for t in trials.values()} <= {Trial.TERMINATED, Trial.ERROR}


# --- Tuner internals (tuner.make_tuner, set_console) --------------------------------------------------------------

def test_hook_tuner_search_alg(tmp_path):
    from ray import tune

    generator = RoutedSearch(VariantRouter({"a": EnumeratedSearch([{"lr": 0.1}])}, {"a": 1}, {}))
    tuner = tune.Tuner(lambda config: None, tune_config=tune.TuneConfig(search_alg=generator),
                       run_config=tune.RunConfig(storage_path=str(tmp_path)))
    assert ray_compat.search_alg_of(tuner) is generator, moved("Tuner._local_tuner._tune_config.search_alg",
                                                               "tuner.make_tuner (binding a restored run's studies)")


def test_hook_tune_controller_restart_message():
    """resumable.no_restart turns Ray's fallback into an error by the message Ray's TuneController logs when a
    restore fails (and then starts the experiment anew); a new wording or logger would let the fallback run."""
    import logging

    import ray.tune.execution.tune_controller as controller

    source = inspect.getsource(TuneController)
    assert 'logger.exception("Failed to restore the run state.")' in source, moved(
        "TuneController's 'Failed to restore the run state' log line", "aetune.search.resumable.no_restart")
    assert controller.logger is logging.getLogger("ray.tune.execution.tune_controller"), moved(
        "the ray.tune.execution.tune_controller logger", "aetune.search.resumable.no_restart")
