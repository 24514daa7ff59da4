"""The Ray Tune and Optuna releases aetune is tested on, and the private parts of them it leans on.

aetune's resume code overrides parts of Ray Tune that are not public API, so a new Ray minor can break --resume
without an error at import time. pyproject.toml therefore accepts only the minors in TESTED, a search names an
untested install in one warning line at start-up, and tests/test_ray_compat.py checks each hook below (a failure
names the hook that moved).

Private hooks (where aetune uses them):
- ray.tune.logger's JsonLoggerCallback/CSVLoggerCallback: `_restore_from_remote`, `_setup_trial`, `_trial_files`,
  `_trial_csv`, `_trial_continue` (search/resume.py: _EachEpochOnce, JsonResults, CsvResults)
- ray.tune.search.SearchGenerator: `_counter`, `_finished` (search/searchers.py: RoutedSearch)
- ray.tune.search.optuna.OptunaSearch: `_ot_study`, `_ot_trials`, `_completed_trials` (searchers.PrunedOptunaSearch)
- Tune's experiment-state file: TuneController.CKPT_FILE_TMPL, its "trial_data" list of (trial JSON state,
  run metadata) pairs read by Trial.from_json_state (searchers.restored_trials)
- ray.tune.Tuner._local_tuner.get_run_config(): the run config a restored Tuner fits with (tuner.set_console)
- ray.tune.Tuner._local_tuner._tune_config.search_alg: the searcher a restored Tuner fits with (tuner.make_tuner)
- optuna: FrozenTrial._trial_id, Study._storage (searchers.PrunedOptunaSearch.adopt, fail_orphans)
- TuneController's log line "Failed to restore the run state." on its module's logger, before it restarts the
  experiment anew (resumable.no_restart turns it into an error)
PyTorch: none (TensorBoard's writer and hparams summary are public), so torch keeps a lower bound only.
"""
from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version

TESTED = {"ray": ("2.60", "2.60"), "optuna": ("5.0", "5.0")}  # first and last minor the whole suite passed on


def minor(release: str) -> tuple[int, ...]:
    """"2.60.0", "2.61.0rc1" -> (2, 60), (2, 61)."""
    return tuple(int(n) for n in re.findall(r"\d+", release)[:2])


def untested() -> list[str]:
    """One line per installed package outside its tested minors."""
    lines = []
    for package, (low, high) in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            continue
        if not minor(low) <= minor(installed) <= minor(high):
            tested = f"{low}.x" if low == high else f"{low}.x to {high}.x"
            lines.append(f"aetune: warning: {package} {installed} is installed; aetune is tested on {package} "
                         f"{tested} (its resume code uses private {package} hooks: aetune/search/ray_compat.py); "
                         f"if a search or --resume misbehaves, pip install '{package}=={high}.*'")
    return lines


def warn_untested() -> None:
    for line in untested():
        print(line, file=sys.stderr)


def run_config_of(tuner):
    """The RunConfig a Tuner will fit with; Tuner.restore takes none, and this driver's console (tuner.set_console)
    must not be the one of the run that saved it."""
    return tuner._local_tuner.get_run_config()


def search_alg_of(tuner):
    """The search algorithm a restored Tuner will fit with (unpickled from tuner.pkl): its studies are bound to the
    storage --resume checked before Tune restores it."""
    return tuner._local_tuner._tune_config.search_alg
