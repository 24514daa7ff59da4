"""Searchers and schedulers for one variant: Optuna TPE (told about pruning), random, grid; ASHA or FIFO."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from aetune.spaces import OptunaSampler, SearchSpace, Variant

STATES = optuna.trial.TrialState


class PrunedOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about how a trial ended.

    Ray's stock OptunaSearch tells a trial that ASHA stopped as COMPLETE with its last, partial value, which
    TPE then takes for a finished result. Here a trial that reported fewer epochs than the maximum is PRUNED
    (TPE ranks it by its last intermediate value, below completed trials), a diverged or errored one FAILED.
    Every tell is mirrored to `trials_file` so the study can be inspected after the run.
    """

    def __init__(self, *args, max_epochs: int, trials_file: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.trials_file = trials_file
        self._ray_ids: dict[int, str] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if trial_id in self._completed_trials or value is None or not math.isfinite(value):
            return
        self._ot_trials[trial_id].report(value, int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        state = final_state(result, error, self.max_epochs)
        value = result[self.metric] if state == STATES.COMPLETE else None
        ot_trial = self._ot_trials[trial_id]
        self._ot_study.tell(ot_trial, value, state=state)
        self._completed_trials.add(trial_id)
        self._ray_ids[ot_trial.number] = trial_id
        self._write_trials()

    def _write_trials(self) -> None:
        if not self.trials_file:
            return
        rows = [{"ray_trial_id": self._ray_ids.get(t.number), "number": t.number, "state": t.state.name,
                 "value": t.value, "last_step": t.last_step, "params": t.params}
                for t in self._ot_study.get_trials(deepcopy=False)]
        try:
            tmp = f"{self.trials_file}.tmp"
            Path(tmp).write_text(json.dumps(rows, indent=1, default=str))
            os.replace(tmp, self.trials_file)
        except OSError:  # the experiment folder moved or is a bucket: the study itself is unaffected
            pass


def final_state(result: dict | None, error: bool, max_epochs: int) -> "optuna.trial.TrialState":
    if error or not result or result.get("diverged"):
        return STATES.FAIL
    if int(result.get("epoch", 0)) < max_epochs:
        return STATES.PRUNED
    return STATES.COMPLETE


def make_searcher(space: SearchSpace, variant: Variant, trials_file: str | None) -> Searcher:
    if space.searcher == "optuna":
        return PrunedOptunaSearch(space=OptunaSampler(space, variant), metric=space.metric, mode=space.mode,
                                  seed=space.seed, max_epochs=space.epochs, trials_file=trials_file)
    # random and grid: Ray's variant generator samples the domains (grid_search ones are enumerated).
    return BasicVariantGenerator(random_state=space.seed)


def make_scheduler(space: SearchSpace) -> Any:
    if space.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", max_t=space.epochs, grace_period=min(space.grace_period, space.epochs),
                         reduction_factor=space.reduction_factor)
