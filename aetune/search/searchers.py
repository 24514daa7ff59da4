"""Searchers: one per variant (Optuna TPE told about pruning, single- or multi-objective, its study in a real Optuna
storage; or the enumerated configs of a random or grid search), and the router that lets one Ray Tune run serve
every variant at once."""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from aetune.errors import UsageError, first_line
from aetune.experiment import REPEAT_KEY, VARIANT_KEY
from aetune.search.domains import OptunaSampler, enumerated_configs
from aetune.search.repeats import Repeats, make_repeats
from aetune.search.snapshot import SNAPSHOT_FORMAT, read_snapshot
from aetune.search.spaces import SearchSpace, Variant

STATES = optuna.trial.TrialState
log = logging.getLogger(__name__)


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
        if value is not None and math.isfinite(value) and trial_id in self._ot_trials:
            try:
                self._ot_trials[trial_id].report(value, int(result["epoch"]))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # told before a driver crash; the restored trial reports what the last snapshot missed again

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

    def forget(self, trial_id: str) -> None:
        """A trial that the experiment state Tune restored never saved: no Ray trial will finish it (fail_orphans
        then marks its study trial FAIL, if it was still running)."""
        self._ot_trials.pop(trial_id, None)
        self._completed_trials.discard(trial_id)

    def adopt(self, trial_id: str, config: dict) -> None:
        """A trial Tune restored that the searcher's snapshot missed: its study trial, found by its Ray trial id."""
        self._attach([trial_id])

    def rebuild(self, trial_ids: list[str]) -> None:
        """Its Ray trials' study trials, read from the study: a searcher snapshot holds none of Optuna's state."""
        self._ot_trials, self._completed_trials = {}, set()
        self._attach(trial_ids)

    def bind(self, storage: optuna.storages.BaseStorage) -> None:
        """Use the variant's study in `storage`, the one --resume checked: the study a restored Tuner's pickle names
        may be another copy (an absolute path). Its sampler draws anew (from the OS), not the Tuner's first draws."""
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._ot_study.study_name, storage=storage,
                                           sampler=self._sampler, pruner=self._ot_study.pruner)
        self._sampler.reseed_rng()

    def _attach(self, trial_ids: list[str]) -> None:
        by_ray_id = {t.user_attrs.get("ray_trial_id"): t for t in self._ot_study.get_trials(deepcopy=False)}
        for trial_id in trial_ids:
            frozen = by_ray_id.get(trial_id)
            if frozen is None:
                log.warning("aetune: study %s has no trial for Ray trial %s; its results will not reach the study",
                            self._ot_study.study_name, trial_id)
                continue
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, frozen._trial_id)
            if frozen.state.is_finished():
                self._completed_trials.add(trial_id)

    def fail_orphans(self) -> None:
        """After a crash the storage may hold trials asked after the last snapshot: no Ray trial will ever finish
        them, so they are marked FAIL instead of staying RUNNING forever."""
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


def open_study_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from its URL: an RDB URL (sqlite:///..., postgresql://...) or a journal file path.
    One that cannot be opened is a UsageError, before Ray starts a trial."""
    from optuna.storages.journal import JournalFileBackend

    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    except Exception as err:  # SQLAlchemy, a missing DB driver, an unwritable folder: one cause each
        raise UsageError(f"--study-storage {url}: cannot open it ({first_line(err, limit=160)}); pass an RDB URL "
                         "(sqlite:///path.db, postgresql://...) or a journal file in a writable folder") from None


class EnumeratedSearch(Searcher):
    """Random and grid search: hands out the variant's enumerated configs in order (aetune.search.spaces)."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__()
        self.configs = configs
        self.handed: dict[str, int] = {}  # trial id -> the index of its config

    def suggest(self, trial_id: str) -> dict | str | None:
        index = next(self._free(), None)
        if index is None:
            return Searcher.FINISHED
        self.handed[trial_id] = index
        return dict(self.configs[index])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def forget(self, trial_id: str) -> None:
        """A trial that the experiment state Tune restored never saved: its config is handed out again."""
        self.handed.pop(trial_id, None)

    def adopt(self, trial_id: str, config: dict) -> None:
        """A trial Tune restored that the searcher's snapshot missed: its config is not handed out again."""
        index = next((i for i in self._free() if self.configs[i].items() <= config.items()), None)
        if index is None:
            log.warning("aetune: Ray trial %s has none of the configs left to hand out; one may run twice", trial_id)
        else:
            self.handed[trial_id] = index

    def rebuild(self, handed: dict[str, int]) -> None:
        self.handed = dict(handed)

    def _free(self):
        taken = set(self.handed.values())
        return (i for i in range(len(self.configs)) if i not in taken)


def study_prefix(experiment: str, created: str | None) -> str:
    """What every study name of an experiment starts with: its name and creation id, so that two experiments (or two
    made one after the other under one name) never share a study in one storage. Experiments made before creation
    ids named their studies after the variant alone ("")."""
    return f"{experiment}/{created}/" if created else ""


def make_searcher(space: SearchSpace, variant: Variant, storage_url: str | None, prefix: str = "") -> Searcher:
    """Optuna (its study named `prefix` + the variant, in the experiment's storage), or the enumerated configs."""
    search = space.search(variant)
    if space.searcher != "optuna":
        return EnumeratedSearch(enumerated_configs(space, variant))
    metric, mode = (list(search.metric), list(search.mode)) if search.multi_objective else (
        search.metric[0], search.mode[0])
    # TPE (multi-objective TPE for a front), seeded; the space's `sampler` section tunes it.
    sampler = optuna.samplers.TPESampler(seed=space.seed, **space.sampler)
    return PrunedOptunaSearch(space=OptunaSampler(space, variant), metric=metric, mode=mode, sampler=sampler,
                              study_name=prefix + variant.name, storage=open_study_storage(storage_url) if storage_url else None,
                              max_epochs=space.epochs)


def label_studies(router: "VariantRouter", space: SearchSpace, space_file: str) -> None:
    """Name what optuna-dashboard shows, right after the studies are created: each study's objectives (it shows
    "0", "1" otherwise) and, as user attributes, the variant it searches, the YAML variant and sweep value it
    comes from, and the space file."""
    for variant in space.runs():
        searcher = router.searchers[variant.name]
        if not isinstance(searcher, PrunedOptunaSearch):
            continue
        search, study = space.search(variant), searcher._ot_study
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and still so in 5.0 (pinned)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(search.metric))
        labels = {"variant": variant.name, "base_variant": variant.base or variant.name, "sweep": variant.swept,
                  "space_file": space_file, "objectives": dict(zip(search.metric, search.mode))}
        for key, value in labels.items():
            study.set_user_attr(key, value)


class VariantRouter(Searcher):
    """One searcher for a Ray Tune run that serves every variant at once: each new trial goes to the variant with
    the fewest trials in flight that still has budget, the costliest of those (`costs`: work per trial) first, so
    that the longest trials do not start last and become the tail every other slot waits for; its sub-searcher
    (the variant's own study) proposes the config. Results go back to the sub-searcher that proposed the trial."""

    costs: dict[str, float] = {}  # what a router saved before it had costs restores with: the space's order

    def __init__(self, searchers: dict[str, Searcher], budgets: dict[str, int], costs: dict[str, float],
                 repeats: Repeats | None = None):
        super().__init__()
        self.searchers, self.budgets, self.costs = searchers, budgets, costs
        self.repeats = repeats or Repeats({}, {}, 0)  # the picks' repeats, handed out once each variant has picked
        self.done = dict.fromkeys(searchers, 0)
        self.variant_of: dict[str, str] = {}  # trial id -> its variant, for every trial asked

    @property
    def asked(self) -> dict[str, int]:
        counts = Counter(self.variant_of.values())
        return {name: counts[name] for name in self.searchers}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True  # every sub-searcher has its own metric and mode

    def suggest(self, trial_id: str) -> dict | str | None:
        asked = self.asked
        ready = [n for n in self.searchers
                 if self.repeats.ready(n, search_over=asked[n] >= self.budgets[n] and self.done[n] >= asked[n])]
        open_variants = [n for n in self.searchers if asked[n] < self.budgets[n] or n in ready]
        if not open_variants:  # repeats wait for their variant's last trials to end
            return None if any(map(self.repeats.pending, self.searchers)) else Searcher.FINISHED
        in_flight = {n: asked[n] - self.done[n] + self.repeats.in_flight(n) for n in open_variants}
        name = min(open_variants, key=lambda n: (in_flight[n], -self.costs.get(n, 0.0)))  # ties: the space's order
        if name in ready:
            return self.repeats.suggest(name, trial_id)
        config = self.searchers[name].suggest(trial_id)
        if config == Searcher.FINISHED:  # fewer configs than the budget said: that variant is done
            self.budgets[name] = asked[name]
            return self.suggest(trial_id)
        if config is None:
            return None
        self.variant_of[trial_id] = name
        self.repeats.asked(name, trial_id, {**config, VARIANT_KEY: name})
        return {**config, VARIANT_KEY: name}

    @property
    def trials_asked(self) -> int:
        """Every trial handed out: the searches' and the repeats'."""
        return sum(self.asked.values()) + self.repeats.count

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        name = self.variant_of.get(trial_id)
        if name is not None:
            self.searchers[name].on_trial_result(trial_id, result)
            self.repeats.on_result(name, trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.variant_of.get(trial_id)
        if name is not None:
            self.done[name] += 1
            self.searchers[name].on_trial_complete(trial_id, result=result, error=error)
            self.repeats.on_complete(name, trial_id, result, error)
        elif trial_id in self.repeats.handed:  # a repeat: no study hears of it
            self.repeats.on_repeat_complete(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """The router's state as JSON (Ray's file name, searcher-state-*.pkl, notwithstanding): its counts, which
        variant each trial is of, the enumerated configs handed out, the repeats. The studies are in their storage."""
        with open(checkpoint_path, "w") as f:
            json.dump(snapshot_of(self), f)

    def restore(self, checkpoint_path: str) -> None:
        state = read_snapshot(Path(checkpoint_path))
        if set(state["budgets"]) != set(self.searchers):
            raise ValueError(f"{checkpoint_path} names the variants {sorted(state['budgets'])}, not the space's")
        self.budgets, self.done, self.variant_of = state["budgets"], state["done"], state["variant_of"]
        self.repeats.counts, self.repeats.told = state["repeats"]["counts"], state["repeats"]["told"]
        self.repeats.handed, self.repeats.finished = state["repeats"]["handed"], state["repeats"]["finished"]
        for name, searcher in self.searchers.items():
            if isinstance(searcher, EnumeratedSearch):
                searcher.rebuild(state["handed"].get(name, {}))
            else:
                searcher.rebuild([trial_id for trial_id, variant in self.variant_of.items() if variant == name])

    def bind(self, storage_url: str) -> None:
        """Every study in the storage --resume checked (PrunedOptunaSearch.bind); before Tune restores the router."""
        storage = open_study_storage(storage_url)
        for searcher in self.searchers.values():
            if isinstance(searcher, PrunedOptunaSearch):
                searcher.bind(storage)

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        super().restore_from_dir(checkpoint_dir)  # the newest searcher snapshot in the folder
        trials = restored_trials(Path(checkpoint_dir))
        if trials is not None:  # None: a searcher reused outside a Tune run
            self.reconcile(trials)

    def reconcile(self, trials: dict[str, Trial]) -> None:
        """Agree with the trials Tune restored, whichever moment the searcher's snapshot is from: a trial asked
        after the experiment state Tune restored is forgotten (its budget is free again), one the searcher's
        snapshot missed is adopted; what is in flight is what Tune will run."""
        self.repeats.reconcile(trials)
        trials = {trial_id: t for trial_id, t in trials.items() if REPEAT_KEY not in t.config}
        for trial_id in set(self.variant_of) - set(trials):
            self.searchers[self.variant_of.pop(trial_id)].forget(trial_id)
        for trial_id, trial in trials.items():
            if trial_id not in self.variant_of:
                self.variant_of[trial_id] = trial.config[VARIANT_KEY]
                self.searchers[trial.config[VARIANT_KEY]].adopt(trial_id, trial.config)
        finished = Counter(self.variant_of[i] for i, t in trials.items() if t.status in (Trial.TERMINATED, Trial.ERROR))
        self.done = {name: finished[name] for name in self.searchers}
        self.fail_orphans()

    def fail_orphans(self) -> None:
        for searcher in self.searchers.values():
            if isinstance(searcher, PrunedOptunaSearch):
                searcher.fail_orphans()


def snapshot_of(router: VariantRouter) -> dict[str, Any]:
    repeats = router.repeats
    return {"format": SNAPSHOT_FORMAT, "budgets": router.budgets, "done": router.done, "variant_of": router.variant_of,
            "handed": {name: s.handed for name, s in router.searchers.items() if isinstance(s, EnumeratedSearch)},
            "repeats": {"counts": repeats.counts,
                        "told": {name: {t: asdict(told) for t, told in trials.items()}
                                 for name, trials in repeats.told.items()},
                        "handed": repeats.handed, "finished": sorted(repeats.finished)}}


class RoutedSearch(SearchGenerator):
    """Tune's trial generator around the router, restored in step with Tune's trials. Tune copies its snapshot
    files to storage one by one, in the background, and a cut one is put back from an older backup: after a kill
    the searcher's and the generator's snapshots may count trials that the experiment state Tune restores never
    saved, and Tune would end the search that many trials short of its budget, on every --resume."""

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)  # the router reconciles itself with Tune's trials
        self._counter, self._finished = self.searcher.trials_asked, False  # the router says when it is done

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        """Tune writes the searcher's snapshots through temp files inside `dirpath`, the folder its driver syncer
        copies to storage in the background: a copy that lists a temp file just before its rename printed a 30-line
        FileNotFoundError traceback (harmless, but it reads as a failure). Snapshot every step (tuner.connect) made
        it frequent. The temp files go to a folder beside it (same filesystem, never copied); each finished file is
        then renamed in, whole."""
        scratch = Path(dirpath).parent / f".{Path(dirpath).name}-searcher"
        scratch.mkdir(exist_ok=True)
        super().save_to_dir(str(scratch), session_str)
        for path in scratch.iterdir():
            if not path.name.startswith("."):  # a temp file a crash left behind
                os.replace(path, Path(dirpath, path.name))


def restored_trials(folder: Path) -> dict[str, Trial] | None:
    """The trials of the newest experiment state in the folder Tune restores the searcher from: a copy of the
    storage's snapshot files, whose newest experiment state is the one Tune restores. (On a cluster that outlives
    its drivers the folder may also hold the files of a driver killed before its first copy reached storage: Tune
    restores the searcher from them too, and that resume may end short of the budget with "interrupted; continue
    with ... --resume"; the next one completes it.)"""
    newest = max(folder.glob(TuneController.CKPT_FILE_TMPL.format("*")), default=None)
    if newest is None:
        return None
    trial_data = json.loads(newest.read_text())["trial_data"]
    return {t.trial_id: t for t in (Trial.from_json_state(state, stub=True) for state, _ in trial_data)}


def make_router(space: SearchSpace, storage_url: str | None, costs: dict[str, float],
                prefix: str = "") -> RoutedSearch:
    runs = space.runs()
    return RoutedSearch(VariantRouter({v.name: make_searcher(space, v, storage_url, prefix) for v in runs},
                                      {v.name: space.trial_count(v) for v in runs}, costs, make_repeats(space)))
