"""The on-disk layout of an experiment, and summary.json: the search's output and the evaluation's input.

runs/<name>/space.yaml               the search space actually used
runs/<name>/<variant>-<trial id>/    one folder per trial (Ray Tune's: result.json, event files, checkpoints);
                                     runs/<name> itself is the Ray Tune experiment every variant shares
runs/<name>/optuna.db                every variant's Optuna study
runs/<name>/summary.json             per variant: the pick, its front, every trial (paths relative to runs/<name>)
runs/<name>/eval/                    figures, leaderboard and report.html
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aetune.errors import UsageError

VARIANT_KEY = "variant"  # the one key a Ray trial's config has beyond the trial config: the variant it belongs to
SUMMARY_FILE = "summary.json"
SPACE_FILE = "space.yaml"
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
    selected_on: str = "validation"  # the split that chose the pick: "test" only under val_size 0 (course protocol)
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept value(s) of this sweep member
    base: str = ""  # the space's variant a sweep member came from ("" when it is that variant)
    front: list[dict[str, Any]] = field(default_factory=list)  # multi-objective: the non-dominated trials
    trial_results: list[dict[str, Any]] = field(default_factory=list)  # every trial: config, metrics, state


@dataclass
class Summary:
    name: str
    metric: str
    mode: str
    variants: dict[str, VariantResult]
    data_root: str | None = None  # where the trials read their dataset: evaluate's default

    def write(self, experiment_dir: str) -> str:
        return write_text(join(experiment_dir, SUMMARY_FILE), json.dumps(asdict(self), indent=2, allow_nan=True))

    @classmethod
    def read(cls, experiment_dir: str | os.PathLike) -> "Summary":
        path = join(str(experiment_dir), SUMMARY_FILE)
        text = read_text(path)
        if text is None:
            raise UsageError(f"{experiment_dir} is not a finished aetune experiment (no {SUMMARY_FILE}); "
                             "pass the runs/<name> folder that `python -m aetune.search` wrote")
        try:
            raw = json.loads(text)
            variants = {name: VariantResult(**result) for name, result in raw.pop("variants").items()}
            return cls(variants=variants, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise UsageError(f"{path} is damaged ({type(err).__name__}: {err}); "
                             "rerun the search with --resume") from None


# --- local paths and bucket URIs (s3://, gs://, ...) alike ----------------------------------------------------------

def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def read_text(location: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if not is_uri(location):
        return Path(location).read_text() if Path(location).is_file() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_text(location: str, text: str) -> str:
    """Write atomically on a local disk (temp file + rename); buckets replace whole objects anyway."""
    if is_uri(location):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(location)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(text.encode())
        return location
    target = Path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return location
