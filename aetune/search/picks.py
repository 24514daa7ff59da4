"""A variant's Ray Tune results -> its VariantResult: every trial's outcome, the Pareto front of a multi-objective
search, and the pick the leaderboard evaluates."""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from pyarrow.fs import FileType
from ray import tune

from aetune.config import TrialConfig
from aetune.errors import first_line
from aetune.experiment import DIVERGED, NOT_CONFIG_KEYS, REPEAT_KEY, REPEAT_OF_KEY, VariantResult
from aetune.metrics import MODEL_PROPERTIES
from aetune.models import family
from aetune.numbers import is_finite
from aetune.pareto import front
from aetune.pareto import pick as pick_member
from aetune.search.spaces import Search, Variant
from aetune.train.checkpoint import CHECKPOINT_FILE

# Metrics a trial reports that are results (not timings): what summary.json keeps, so that two runs of the same
# search on the same data write the same summary.
RESULT_METRICS = ("epoch", "train_loss", "val_loss", "val_bce", "val_mse", "val_denoise_bce", "code_l1", "code_size",
                  "params")


def trial_outcome(result: tune.Result, search: Search, epochs: int, root: str) -> dict[str, Any]:
    """One trial: its state, and the checkpoint that represents it with that epoch's metrics — its best epoch by
    the metric (single objective), or its last epoch (multi-objective: the values Optuna was told)."""
    trial_id = result.metrics.get("trial_id") or Path(result.path).name
    config = TrialConfig.from_dict({k: v for k, v in result.config.items() if k not in NOT_CONFIG_KEYS}).to_dict()
    outcome = {"trial_id": trial_id, "config": config, "metrics": {}, "checkpoint": None,
               "trial_dir": posixpath.relpath(result.path, root)}
    if result.error:
        return {**outcome, "state": "errored", "error": first_line(result.error, last=True),
                "error_file": posixpath.relpath(f"{result.path}/error.txt", root)}
    if result.metrics.get(DIVERGED):
        return {**outcome, "state": "diverged"}
    state = "completed" if int(result.metrics.get("epoch", 0)) >= epochs else "stopped"
    checkpoints = [(c, m) for c, m in result.best_checkpoints if _finite(m, search.metric) and _on_storage(c)]
    if not checkpoints:
        return {**outcome, "state": state}
    if search.multi_objective:
        checkpoint, metrics = max(checkpoints, key=lambda cm: cm[1]["epoch"])
    else:
        sign = 1 if search.mode[0] == "min" else -1
        checkpoint, metrics = min(checkpoints, key=lambda cm: sign * cm[1][search.metric[0]])
    kept = (*RESULT_METRICS, *family(config["model"]).extra_metrics)
    return {**outcome, "state": state, "metrics": {k: metrics[k] for k in kept if k in metrics},
            "checkpoint": posixpath.relpath(posixpath.join(checkpoint.path, CHECKPOINT_FILE), root)}


def summarise(grid: list[tune.Result], variant: Variant, search: Search, epochs: int, root: str,
              split: dict[str, Any]) -> VariantResult:
    """Single objective: the best checkpoint of any trial. Multi-objective: the front of the completed trials (ASHA
    may have stopped others early: their values are not comparable), and its knee. Repeats (`repeats: K`) are the
    pick's config under new seeds: recorded beside it, never candidates for it."""
    searched = [result for result in grid if REPEAT_KEY not in result.config]
    repeated = sorted((result for result in grid if REPEAT_KEY in result.config), key=lambda r: r.config[REPEAT_KEY])
    result = summarise_search(searched, variant, search, epochs, root, split)
    result.repeats_wanted = search.repeats
    outcomes = [(r.config[REPEAT_OF_KEY], trial_outcome(r, search, epochs, root)) for r in repeated]
    # The router picked by the rule above from what the trials told Tune; were the two ever to differ (a tie), the
    # record says which trial the repeats repeated.
    result.repeats = [{"seed": o["config"]["seed"], "repeat_of": of,
                       **{k: o[k] for k in ("trial_id", "config", "metrics", "checkpoint", "trial_dir", "state")}}
                      for of, o in outcomes]
    return result


def summarise_search(grid: list[tune.Result], variant: Variant, search: Search, epochs: int, root: str,
                     split: dict[str, Any]) -> VariantResult:
    outcomes = [trial_outcome(result, search, epochs, root) for result in grid]
    usable = [o for o in outcomes if o["checkpoint"]]
    described = dict(
        trials=len(outcomes), metric=list(search.metric) if search.multi_objective else search.metric[0],
        mode=list(search.mode) if search.multi_objective else search.mode[0], split=split,
        selected_on=selected_on(search, split),
        sweep=variant.swept, base=variant.base,
        errored=[{k: o[k] for k in ("trial_id", "error_file", "error")} for o in outcomes if o["state"] == "errored"],
        diverged=[o["trial_id"] for o in outcomes if o["state"] == "diverged"],
        trial_results=[{k: o[k] for k in ("trial_id", "config", "metrics", "checkpoint", "state")} for o in outcomes],
    )
    members: list[dict[str, Any]] = []
    if search.multi_objective:
        completed = [o for o in usable if o["state"] == "completed"]  # stopped trials' values are not comparable
        points = [[o["metrics"][m] for m in search.metric] for o in completed]
        members = [completed[i] for i in front(points, search.mode)]
        index, rule = pick_member([[o["metrics"][m] for m in search.metric] for o in members], search.mode,
                                  search.metric)
        pick = None if index is None else members[index]
    else:
        sign = 1 if search.mode[0] == "min" else -1
        pick = min(usable, key=lambda o: sign * o["metrics"][search.metric[0]], default=None)
        rule = f"{'lowest' if sign == 1 else 'highest'} {search.metric[0]} of any trial's checkpoints"
    front_rows = [{k: o[k] for k in ("trial_id", "config", "metrics", "checkpoint", "trial_dir")} for o in members]
    if pick is None:
        return VariantResult(None, {}, {}, None, None, pick_rule=rule, **described)
    return VariantResult(pick["trial_id"], pick["config"], pick["metrics"], pick["checkpoint"], pick["trial_dir"],
                         pick_rule=rule, front=front_rows, **described)


def selected_on(search: Search, split: dict[str, Any]) -> str:
    """The split the pick's objectives were measured on: train_loss on the training images, code_size and params on
    none (properties of the model), every other metric on the validation images (the test split under val_size 0);
    "training and validation" where they mix."""
    held_out = "test" if split.get("val_from") == "test" else "validation"
    splits = {"training" if m == "train_loss" else held_out for m in search.metric if m not in MODEL_PROPERTIES}
    return " and ".join(sorted(splits)) or held_out


def _on_storage(checkpoint: tune.Checkpoint) -> bool:
    """Whether the checkpoint file is there: a restored Tune can list a checkpoint that the killed driver deleted
    after its last snapshot (its folder gone, or left empty by tune_callbacks.RestorableCheckpoints)."""
    info = checkpoint.filesystem.get_file_info(posixpath.join(checkpoint.path, CHECKPOINT_FILE))
    return info.type != FileType.NotFound


def _finite(metrics: dict[str, Any], names: tuple[str, ...]) -> bool:
    return all(is_finite(metrics.get(n)) for n in names)
