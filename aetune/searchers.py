"""Searchers and schedulers for one variant: Optuna TPE (told about pruning, single- or multi-objective, its study
in a real Optuna storage), random, grid; ASHA or FIFO."""
from __future__ import annotations

import math
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from aetune.spaces import OptunaSampler, Search, SearchSpace, Variant

STATES = optuna.trial.TrialState


class PrunedOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about how a trial ended.

    Ray's stock OptunaSearch tells a trial that ASHA stopped as COMPLETE with its last, partial value, which
    TPE then takes for a finished result. Here a trial that reported fewer epochs than the maximum is PRUNED
    (TPE ranks it by its last intermediate value, below completed trials), a diverged or errored one FAILED.
    Multi-objective studies get no intermediate values (Optuna has no pruning for them).
    """

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # optuna-dashboard and the tests match studies to Ray trials by this
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return
        value = result.get(self.metric)
        if value is not None and math.isfinite(value):
            self._ot_trials[trial_id].report(value, int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        self._completed_trials.add(trial_id)
        if ot_trial.number in finished_numbers(self._ot_study):
            return  # told before a driver crash that the last searcher snapshot does not know of
        state = final_state(result, error, self.max_epochs)
        values = None
        if state == STATES.COMPLETE:
            values = [result[m] for m in self.metric] if isinstance(self.metric, list) else result[self.metric]
        self._ot_study.tell(ot_trial, values, state=state)

    def restore(self, checkpoint_path: str) -> None:
        """After a crash the storage may hold trials asked after the last snapshot: no Ray trial will ever finish
        them, so they are marked FAIL instead of staying RUNNING forever."""
        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        storage = self._ot_study._storage
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(STATES.RUNNING,)):
            if orphan.number not in known:
                storage.set_trial_state_values(orphan._trial_id, STATES.FAIL)


def finished_numbers(study: optuna.Study) -> set[int]:
    return {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}


def final_state(result: dict | None, error: bool, max_epochs: int) -> "optuna.trial.TrialState":
    if error or not result or result.get("diverged"):
        return STATES.FAIL
    if int(result.get("epoch", 0)) < max_epochs:
        return STATES.PRUNED
    return STATES.COMPLETE


def study_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from its URL: an RDB URL (sqlite:///..., postgresql://...) or a journal file path."""
    if "://" in url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def make_searcher(space: SearchSpace, variant: Variant, storage_url: str | None) -> Searcher:
    """Optuna (its study named after the variant, in the experiment's storage), or Ray's random/grid generator."""
    search = space.search(variant)
    if space.searcher == "optuna":
        metric, mode = (list(search.metric), list(search.mode)) if search.multi_objective else (
            search.metric[0], search.mode[0])
        # TPE (multi-objective TPE for a front), seeded; the space's `sampler` section tunes it.
        sampler = optuna.samplers.TPESampler(seed=space.seed, **space.sampler)
        return PrunedOptunaSearch(space=OptunaSampler(space, variant), metric=metric, mode=mode, sampler=sampler,
                                  study_name=variant.name, storage=study_storage(storage_url) if storage_url else None,
                                  max_epochs=space.epochs)
    # random and grid: Ray's variant generator samples the domains (grid_search ones are enumerated).
    return BasicVariantGenerator(random_state=space.seed)


def make_scheduler(search: Search, epochs: int) -> Any:
    if search.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", metric=search.asha_metric, mode=search.asha_mode, max_t=epochs,
                         grace_period=min(search.grace_period, epochs), reduction_factor=search.reduction_factor)
