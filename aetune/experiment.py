"""The on-disk layout of an experiment, and summary.json: the search's output and the evaluation's input.

runs/<name>/space.yaml               the search space actually used
runs/<name>/experiment.json          what made the experiment: aetune's version, the package layout its
                                     snapshots name, space.yaml's digest and the creation id its study names
                                     carry (<name>/<id>/<variant>; aetune 0.1.0 wrote none)
runs/<name>/<variant>-<trial id>/    one folder per trial (Ray Tune's: result.json, event files, checkpoints);
                                     runs/<name> itself is the Ray Tune experiment every variant shares
runs/<name>/optuna.db                every variant's Optuna study
runs/<name>/summary.json             per variant: the pick, its front, every trial (paths relative to runs/<name>)
runs/<name>/eval/                    figures, leaderboard and report.html
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aetune import __version__
from aetune.errors import UsageError, first_line, quote
from aetune.storage import join, read_text, write_text

VARIANT_KEY = "variant"  # a Ray trial's config key beyond the trial config: the variant it belongs to
REPEAT_KEY = "repeat"  # ... and, in a repeat of a variant's pick only: which repeat (1..K)
REPEAT_OF_KEY = "repeat_of"  # ... and the trial id of the pick it repeats
NOT_CONFIG_KEYS = (VARIANT_KEY, REPEAT_KEY, REPEAT_OF_KEY)  # dropped before a Ray config is read as a trial config
DIVERGED = "diverged"  # a trial's result key: True in the last result of a trial whose loss turned NaN/inf
CHECKPOINT_RANK = "checkpoint_rank"  # a trial's result key, higher is better: what Ray keeps the best checkpoints by
REPLAYED = "replayed"  # a trial's result key: True for an epoch told again from a checkpoint's history, not its last
SUMMARY_FILE = "summary.json"
SPACE_FILE = "space.yaml"
MANIFEST_FILE = "experiment.json"
LAYOUT = 2  # 2: one package per command (aetune.search.*); 1 (aetune 0.1.0, no manifest): the flat aetune.* modules
LAST_FLAT_RELEASE = "aetune 0.1.0 (commit 3248cc6)"
EVAL_DIR = "eval"


@dataclass
class VariantResult:
    """What the search of one variant found: its pick (the best trial, or the knee of its Pareto front) or why there
    is none, how it was searched, and every trial. Every metric here comes from the split named in `split`."""

    trial_id: str | None
    config: dict[str, Any]  # trial config keys (aetune.config.TrialConfig.to_dict())
    metrics: dict[str, float]  # the reported metrics of the picked checkpoint's epoch
    checkpoint: str | None  # path of checkpoint.pt, relative to the experiment folder
    trial_dir: str | None  # relative to the experiment folder: the trial's TensorBoard run
    trials: int = 0  # how many trials the variant ran
    errored: list[dict[str, str]] = field(default_factory=list)  # [{"trial_id", "error_file", "error"}]
    diverged: list[str] = field(default_factory=list)  # trial ids that ended with a non-finite loss
    metric: str | list[str] = "val_loss"  # the objective(s) it was searched on
    mode: str | list[str] = "min"
    pick_rule: str = ""  # how the pick was chosen, in words
    split: dict[str, Any] = field(default_factory=dict)  # {"train": 5400, "val": 600, "val_from": "train"|"test"}
    selected_on: str = "validation"  # the split that chose the pick: "test" under val_size 0 (course protocol),
    # "training" for metric: train_loss (aetune.search.picks.selected_on)
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept value(s) of this sweep member
    base: str = ""  # the space's variant a sweep member came from ("" when it is that variant)
    front: list[dict[str, Any]] = field(default_factory=list)  # multi-objective: the non-dominated trials
    trial_results: list[dict[str, Any]] = field(default_factory=list)  # every trial: config, metrics, state
    # The pick's config trained again under new seeds (`repeats: K`): [{"trial_id", "seed", "config", "metrics",
    # "checkpoint", "trial_dir", "state"}], in the order of their seeds. Their mean estimates the pick (its own run
    # was the best of many, so it overstates it). A summary written before repeats existed has none.
    repeats: list[dict[str, Any]] = field(default_factory=list)
    repeats_wanted: int = 0  # K of the space (0: no repeats)


@dataclass
class Summary:
    name: str
    metric: str
    mode: str
    variants: dict[str, VariantResult]
    data_root: str | None = None  # where the trials read their dataset: evaluate's default

    def write(self, experiment_dir: str) -> str:
        """Strict JSON: a non-finite number is written as null (bare NaN is not JSON; other tools reject it).
        Never over a summary that held more (a variant, a trial, a pick this one lacks): that is refused."""
        _check_not_less(self, experiment_dir)
        document = json.dumps(_finite_or_null(asdict(self)), indent=2, allow_nan=False)
        return write_text(join(experiment_dir, SUMMARY_FILE), document)

    @classmethod
    def read(cls, experiment_dir: str | os.PathLike) -> "Summary":
        """Reads null metrics back as NaN; files written with bare NaN (before null) read as well."""
        path = join(str(experiment_dir), SUMMARY_FILE)
        text = read_text(path)
        if text is None:
            raise UsageError(_no_summary(str(experiment_dir)))
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            variants = {name: VariantResult(**{**_typed(name, result), "metrics": _null_as_nan(result.get("metrics", {})),
                                               "repeats": [{**r, "metrics": _null_as_nan(r.get("metrics") or {})}
                                                           for r in result.get("repeats") or []]})
                        for name, result in _typed("variants", raw.pop("variants"), dict).items()}
            return cls(variants=variants, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise UsageError(f"{path} is damaged ({type(err).__name__}: {first_line(err, limit=160)}); "
                             "rerun the search with --resume") from None


_KINDS = {"trial_id": (str, type(None)), "config": dict, "metrics": dict, "checkpoint": (str, type(None)),
          "trial_dir": (str, type(None)), "trials": int, "errored": list, "diverged": list, "metric": (str, list),
          "mode": (str, list), "pick_rule": str, "split": dict, "selected_on": str, "sweep": dict, "base": str,
          "front": list, "trial_results": list}
_ITEMS = {"errored": dict, "diverged": str, "front": dict, "trial_results": dict}


def _typed(name: str, value: Any, kind: type = dict) -> Any:
    """A summary record checked against the types VariantResult's readers rely on: an edited or damaged file is
    refused here, not half way through an evaluation."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} is {quote(value)}, not a JSON object")
    if name == "variants":
        return value
    for key, kinds in _KINDS.items():
        item = value.get(key)
        if key in value and (not isinstance(item, kinds) or isinstance(item, bool)):
            raise TypeError(f"variants.{name}.{key} is {quote(item)}, of the wrong type")
        if key in _ITEMS and isinstance(item, list) and not all(isinstance(i, _ITEMS[key]) for i in item):
            raise TypeError(f"variants.{name}.{key} holds {quote(item)}, of the wrong type")
    return value


def _check_not_less(new: Summary, experiment_dir: str) -> None:
    try:
        old = Summary.read(experiment_dir)
    except UsageError:  # none yet, or a damaged one: nothing readable is lost
        return
    for name, was in old.variants.items():
        now = new.variants.get(name)
        ids = {r.get("trial_id") for r in now.trial_results} if now else set()
        repeats = {r.get("trial_id") for r in now.repeats} if now else set()
        lost = ("record" if now is None else
                f"trials ({now.trials} of {was.trials})" if now.trials < was.trials else
                next((f"trial {r.get('trial_id')}" for r in was.trial_results if r.get("trial_id") not in ids), None)
                or (f"its pick {was.trial_id}" if was.trial_id is not None and was.trial_id not in ids else None)
                or next((f"repeat {r.get('trial_id')}" for r in was.repeats if r.get("trial_id") not in repeats), None))
        if lost:
            raise UsageError(f"{join(experiment_dir, SUMMARY_FILE)} holds {name}'s {lost}, which this run lacks; "
                             "it is kept as it was (check the experiment's trial folders and optuna.db)")


def _no_summary(experiment_dir: str) -> str:
    if read_text(join(experiment_dir, SPACE_FILE)) is None:
        return (f"{experiment_dir} is not a finished aetune experiment (no {SUMMARY_FILE}); "
                "pass the runs/<name> folder that `python -m aetune.search` wrote")
    storage, _, name = experiment_dir.rstrip("/").rpartition("/")
    return (f"{experiment_dir} has no {SUMMARY_FILE} yet: its search is still running or was interrupted; "
            f"finish it with `python -m aetune.search --storage {storage or '.'} --name {name} --resume`, "
            "then evaluate")


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _null_as_nan(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: math.nan if v is None else v for k, v in metrics.items()}


def write_manifest(experiment_dir: str, space_text: str | None = None, created: str | None = None,
                   study_storage: str | None = None, data_root: str | None = None) -> None:
    """What made this experiment, beside its space: a later aetune reads it before it resumes anything. `space_text`:
    the saved space.yaml, whose digest --resume compares; `created`: the id of this creation, in its study names;
    `study_storage`: where its Optuna studies live when that is not in the folder (a password in the URL is not
    written); `data_root`: where its trials read the dataset, --resume's default."""
    document = {"aetune": __version__, "layout": LAYOUT}
    if space_text is not None:
        document["space_sha256"] = space_digest(space_text)
    if created is not None:
        document["created"] = created
    if study_storage:
        document["study_storage"] = without_password(study_storage)
    if data_root:
        document["data_root"] = data_root
    write_text(join(experiment_dir, MANIFEST_FILE), json.dumps(document, indent=2) + "\n")


def read_manifest(experiment_dir: str) -> dict[str, Any]:
    """The manifest ({} for an experiment of aetune 0.1.0, which wrote none); check_layout vouched for it."""
    text = read_text(join(experiment_dir, MANIFEST_FILE))
    return json.loads(text) if text else {}


def space_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def saved_study_storage(experiment_dir: str) -> str | None:
    """The study storage the experiment's manifest names (None: the default beside it, or an older manifest)."""
    return _saved(experiment_dir, "study_storage")


def saved_data_root(experiment_dir: str) -> str | None:
    """Where the experiment's trials read their dataset (None: a manifest written before it was kept)."""
    return _saved(experiment_dir, "data_root")


def _saved(experiment_dir: str, key: str) -> str | None:
    try:
        value = read_manifest(experiment_dir).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check_layout(experiment_dir: str) -> None:
    """Refuse to resume an experiment whose Ray and searcher snapshots name another package layout's modules
    (unpickling them would fail half way, after Ray has started), or whose manifest is damaged or lacks the space
    digest --resume compares."""
    text = read_text(join(experiment_dir, MANIFEST_FILE))
    if text is None:
        layout, made_by = 1, LAST_FLAT_RELEASE
    else:
        try:
            manifest = json.loads(text)
            layout, made_by = manifest["layout"], f"aetune {manifest['aetune']}"
            if not all(isinstance(manifest.get(k, ""), str) for k in ("space_sha256", "created", "data_root")):
                raise TypeError("space_sha256, created and data_root are texts")
            if layout == LAYOUT and "space_sha256" not in manifest:
                raise KeyError("space_sha256")
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{join(experiment_dir, MANIFEST_FILE)} is damaged; restore it, or start a new "
                             "experiment with another --name") from None
    if layout != LAYOUT:
        raise UsageError(f"{experiment_dir} was made by {made_by}, whose snapshots name modules this aetune "
                         f"{__version__} does not have; resume it with that version, or start a new --name "
                         f"(python -m aetune.evaluate {experiment_dir} reads it as it is)")
