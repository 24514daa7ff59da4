"""What a search's trials say, read from summary.json as written (plain dicts, no torch): objectives, fronts,
trade-off points and their lower envelopes, the knobs that varied.

Every function takes a variant's record in summary.json's own shape (see README, "What each trial reports"), so a
summary written before a field existed reads as that field being absent: no points, no front, nothing to show.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from aetune.metrics import MODEL_PROPERTIES  # metrics that are the same on every split
from aetune.numbers import is_finite

Record = dict[str, Any]  # one variant of summary.json's "variants"
NOT_KNOBS = ("seed",)  # config keys that vary between trials without being a question the study asks
NO_BOTTLENECK = "no bottleneck: the code has at least as many numbers as the image"  # a leaderboard row's note


def objectives(record: Record) -> list[tuple[str, str]]:
    """[(metric, mode), ...]: one pair for a single-objective variant, several for a multi-objective one."""
    metric, mode = record.get("metric"), record.get("mode")
    if not metric:
        return []
    if isinstance(metric, str):
        return [(metric, mode if isinstance(mode, str) else "min")]
    modes = mode if isinstance(mode, list) else [mode or "min"] * len(metric)
    return list(zip(metric, modes))


def is_multi_objective(record: Record) -> bool:
    return len(objectives(record)) > 1


def trial_points(trials: Iterable[Record], x: str, y: str) -> list[tuple[float, float, Record]]:
    """(x, y, trial) of every trial whose metrics hold finite x and y (errored and diverged trials hold none)."""
    return [(t["metrics"][x], t["metrics"][y], t) for t in trials
            if is_finite((t.get("metrics") or {}).get(x)) and is_finite((t.get("metrics") or {}).get(y))]


def lower_envelope(points: Iterable[tuple[float, float, Any]]) -> list[tuple[float, float]]:
    """The lowest y at each distinct x, by increasing x: the best any trial reached at that x."""
    best: dict[float, float] = {}
    for x, y, *_ in points:
        best[x] = min(y, best.get(x, math.inf))
    return sorted(best.items())


def sorted_front(record: Record) -> list[Record]:
    """The front's members ordered along the first objective (best first), so they can be drawn connected."""
    pairs = objectives(record)
    if not pairs:
        return []
    metric, mode = pairs[0]
    members = [m for m in record.get("front") or [] if is_finite((m.get("metrics") or {}).get(metric))]
    return sorted(members, key=lambda m: m["metrics"][metric] * (1 if mode == "min" else -1))


def varying_keys(configs: Iterable[dict[str, Any]]) -> list[str]:
    """Config keys whose values differ between the configs (the knobs the search turned), seed excluded."""
    configs = list(configs)
    keys = sorted({key for c in configs for key in c} - set(NOT_KNOBS))
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def groups(records: dict[str, Record]) -> dict[str, list[str]]:
    """Variant names by the YAML variant they came from: a sweep's members share their `base`."""
    by_base: dict[str, list[str]] = defaultdict(list)
    for name, record in records.items():
        by_base[record.get("base") or name].append(name)
    return dict(by_base)


def best_trial(record: Record) -> Record | None:
    """The trial with the best value of a single-objective variant's metric (None without finite values)."""
    pairs = objectives(record)
    if len(pairs) != 1:
        return None
    metric, mode = pairs[0]
    scored = [t for t in record.get("trial_results") or [] if is_finite((t.get("metrics") or {}).get(metric))]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda t: t["metrics"][metric])


def code_sizes(records: dict[str, Record]) -> list[int]:
    """Distinct code sizes over every trial of the study."""
    return sorted({int(t["metrics"]["code_size"]) for r in records.values() for t in r.get("trial_results") or []
                   if is_finite((t.get("metrics") or {}).get("code_size"))})


UNRECORDED = "validation or test (unrecorded)"  # a summary written before splits were recorded: trials then
# were scored on the test split, so its val_* may come from it


def selection_split(records: Iterable[Record]) -> str:
    """The split the search scored these variants' trials on (their val_* metrics), from each record's
    `selected_on`: "validation", or "test" under val_size 0; "validation and test" when they differ; UNRECORDED
    where a record does not say (written before splits were recorded). A variant that scored nothing (every trial
    crashed) says nothing about a split."""
    splits = {r.get("selected_on") for r in records
              if r.get("checkpoint") or any(t.get("metrics") for t in r.get("trial_results") or [])}
    if None in splits:
        return UNRECORDED
    return "validation and test" if len(splits) > 1 else next(iter(splits), "validation")


def test_metric(metric: str) -> str:
    """The evaluation's name for the same metric measured on the test split (val_bce -> test_bce, code_l1 ->
    test_code_l1); a property of the model itself (code_size, params) keeps its name."""
    return metric if metric in MODEL_PROPERTIES else "test_" + metric.removeprefix("val_")


def fmt(value: Any, digits: int = 3) -> str:
    """A number as a finding or a label shows it: `digits` significant digits (1e-05, 0.102, 32)."""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
