"""Schedulers: ASHA or FIFO per variant, and the router that gives each variant its own brackets inside one Ray Tune
run (a shared ASHA would compare a VAE's summed BCE with a dense model's per-pixel BCE)."""
from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from aetune.experiment import REPEAT_KEY, REPLAYED, VARIANT_KEY
from aetune.search.spaces import Search, SearchSpace


def make_scheduler(search: Search, epochs: int) -> TrialScheduler:
    if search.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", metric=search.asha_metric, mode=search.asha_mode, max_t=epochs,
                         grace_period=min(search.grace_period, epochs), reduction_factor=search.reduction_factor)


class PerVariantScheduler(FIFOScheduler):
    """Routes every trial event to its variant's scheduler; which trial runs next is FIFO (as ASHA's own choice is)."""

    def __init__(self, schedulers: dict[str, TrialScheduler]):
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial: Trial) -> TrialScheduler:
        if REPEAT_KEY in trial.config:  # a repeat of a pick runs every epoch: ASHA would judge it against the search
            return self.__dict__.setdefault("repeats", FIFOScheduler())
        return self.schedulers[trial.config[VARIANT_KEY]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return True  # every variant's scheduler has its own metric and mode

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        decision = self._of(trial).on_trial_result(tune_controller, trial, result)  # fills the rungs either way
        # An epoch told again after a resume, with a later checkpoint on disk: the run that trained it went on.
        # (ASHA's brackets are not in Tune's snapshot; a restored ASHA could stop the trial on thinner rungs.)
        return TrialScheduler.CONTINUE if result.get(REPLAYED) else decision

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        kinds = sorted({type(s).__name__ for s in self.schedulers.values()})
        return f"Each variant its own scheduler ({', '.join(kinds)})."


def make_schedulers(space: SearchSpace) -> PerVariantScheduler:
    return PerVariantScheduler({v.name: make_scheduler(space.search(v), space.epochs) for v in space.runs()})
