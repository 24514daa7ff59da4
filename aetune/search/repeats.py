"""Repeats of a variant's pick (`repeats: K`): once the variant's search trials have all ended, the pick's config is
trained again from scratch under K new seeds (the pick's seed + 1 ... + K), as trials of the same Tune run, on the
same split. The router (searchers.VariantRouter) hands them out; this class knows what each search trial told Tune,
which trial the search picked (the rule picks.summarise applies to the finished results), and which repeats are out.

Its state is the router's, so it is saved and restored with it; `reconcile` makes it agree with the trials Tune
restored after a crash (a repeat asked after Tune's snapshot is asked again under the same seed; one Tune restored
is never asked twice)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ray.tune.experiment import Trial

from aetune.experiment import DIVERGED, REPEAT_KEY, REPEAT_OF_KEY, VARIANT_KEY
from aetune.numbers import is_finite
from aetune.pareto import front
from aetune.pareto import pick as pick_member


@dataclass
class Told:
    """What one search trial told Tune: the best finite value of a single objective over its epochs, or the values
    of its last epoch (a front is made of last epochs), and how it ended."""

    config: dict[str, Any]
    best: float | None = None
    last: list[float] | None = None
    epoch: int = 0
    ok: bool = True  # neither diverged nor errored
    finished: bool = False


@dataclass
class Repeats:
    counts: dict[str, int]  # variant -> K
    objectives: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # variant -> (metrics, modes)
    epochs: int
    told: dict[str, dict[str, Told]] = field(default_factory=dict)  # variant -> search trial id -> Told
    handed: dict[str, tuple[str, int]] = field(default_factory=dict)  # repeat trial id -> (variant, repeat 1..K)
    finished: set[str] = field(default_factory=set)  # repeat trial ids that ended

    # --- what the search trials tell -----------------------------------------------------------------------

    def asked(self, name: str, trial_id: str, config: dict[str, Any]) -> None:
        self.told.setdefault(name, {})[trial_id] = Told(config)

    def on_result(self, name: str, trial_id: str, result: dict[str, Any]) -> None:
        told = self.told.get(name, {}).get(trial_id)
        if told is None:
            return
        metrics, modes = self.objectives[name]
        told.ok = told.ok and not result.get(DIVERGED)
        told.epoch = max(told.epoch, int(result.get("epoch", 0)))
        told.last = [result.get(m, math.nan) for m in metrics]
        value = result.get(metrics[0])
        if len(metrics) == 1 and is_finite(value):
            sign = 1 if modes[0] == "min" else -1
            told.best = value if told.best is None else min(told.best, value, key=lambda v: sign * v)

    def on_complete(self, name: str, trial_id: str, result: dict | None, error: bool) -> None:
        told = self.told.get(name, {}).get(trial_id)
        if told is not None:
            if result:
                self.on_result(name, trial_id, result)
            told.finished, told.ok = True, told.ok and not error

    # --- the pick, and its repeats ---------------------------------------------------------------------------

    def pick(self, name: str) -> str | None:
        """The trial id the variant's search picked, from its finished, healthy trials: the best value of a single
        objective over any epoch; the knee (or best end) of the front of the completed trials' last epochs."""
        metrics, modes = self.objectives[name]
        healthy = [(trial_id, t) for trial_id, t in self.told.get(name, {}).items() if t.finished and t.ok]
        if len(metrics) == 1:
            sign = 1 if modes[0] == "min" else -1
            scored = [(trial_id, t.best) for trial_id, t in healthy if t.best is not None]
            return min(scored, key=lambda p: sign * p[1])[0] if scored else None
        completed = [(trial_id, t.last) for trial_id, t in healthy
                     if t.epoch >= self.epochs and t.last and all(is_finite(v) for v in t.last)]
        members = front([values for _, values in completed], modes)
        index, _ = pick_member([completed[i][1] for i in members], modes, metrics)
        return None if index is None else completed[members[index]][0]

    def pending(self, name: str) -> bool:
        """Repeats of the variant not handed out yet."""
        return self._count(name) < self.counts.get(name, 0)

    def ready(self, name: str, search_over: bool) -> bool:
        """Whether a repeat of the variant can be handed out now: its search is over and it picked a trial. A search
        that ended without a pick has nothing to repeat: its repeats are dropped."""
        if not search_over or not self.pending(name):
            return False
        if self.pick(name) is None:
            self.counts[name] = self._count(name)
            return False
        return True

    def suggest(self, name: str, trial_id: str) -> dict[str, Any]:
        """The next repeat: the pick's config under the pick's seed + the lowest repeat number not out."""
        picked = self.pick(name)
        taken = {index for variant, index in self.handed.values() if variant == name}
        index = min(i for i in range(1, self.counts[name] + 1) if i not in taken)
        self.handed[trial_id] = (name, index)
        config = self.told[name][picked].config
        return {**config, "seed": config["seed"] + index, VARIANT_KEY: name, REPEAT_KEY: index, REPEAT_OF_KEY: picked}

    def on_repeat_complete(self, trial_id: str) -> None:
        self.finished.add(trial_id)

    def in_flight(self, name: str) -> int:
        return sum(1 for trial_id, (variant, _) in self.handed.items()
                   if variant == name and trial_id not in self.finished)

    @property
    def count(self) -> int:
        """Repeats handed out, every variant."""
        return len(self.handed)

    def _count(self, name: str) -> int:
        return sum(1 for variant, _ in self.handed.values() if variant == name)

    # --- resume --------------------------------------------------------------------------------------------

    def reconcile(self, trials: dict[str, Trial]) -> None:
        """Agree with the trials Tune restored: their configs, results and states are the truth; a repeat asked
        after Tune's snapshot is forgotten (its seed is handed out again), one the snapshot holds is kept."""
        restored = {trial_id: t for trial_id, t in trials.items() if REPEAT_KEY not in t.config}
        for variant in self.told.values():
            for trial_id in set(variant) - set(restored):
                del variant[trial_id]
        for trial_id, trial in restored.items():
            self._adopt(trial.config[VARIANT_KEY], trial_id, trial)
        repeats = {trial_id: t for trial_id, t in trials.items() if REPEAT_KEY in t.config}
        self.handed = {trial_id: (t.config[VARIANT_KEY], int(t.config[REPEAT_KEY])) for trial_id, t in repeats.items()}
        self.finished = {trial_id for trial_id, t in repeats.items() if t.status in (Trial.TERMINATED, Trial.ERROR)}

    def _adopt(self, name: str, trial_id: str, trial: Trial) -> None:
        told = Told(dict(trial.config), finished=trial.status in (Trial.TERMINATED, Trial.ERROR),
                    ok=trial.status != Trial.ERROR)
        self.told.setdefault(name, {})[trial_id] = told
        result = trial.last_result or {}
        if result:
            self.on_result(name, trial_id, result)
        metrics, modes = self.objectives[name]
        if len(metrics) == 1:  # the best over every epoch, which Tune keeps for each metric
            analysis = (trial.metric_analysis or {}).get(metrics[0]) or {}
            best = analysis.get("min" if modes[0] == "min" else "max")
            told.best = best if is_finite(best) else told.best


def make_repeats(space) -> Repeats:
    runs = space.runs()
    return Repeats({v.name: space.search(v).repeats for v in runs},
                   {v.name: (space.search(v).metric, space.search(v).mode) for v in runs}, space.epochs)
