"""The on-disk layout of an experiment, and summary.json: the search's output and the evaluation's input.

runs/<name>/space.yaml               the search space actually used
runs/<name>/<variant>-<trial id>/    one folder per trial (Ray Tune's: result.json, event files, checkpoints);
                                     runs/<name> itself is the Ray Tune experiment every variant shares
runs/<name>/optuna.db                every variant's Optuna study
runs/<name>/summary.json             per variant: the pick, its front, every trial (paths relative to runs/<name>)
runs/<name>/eval/                    figures, leaderboard and report.html
"""
from __future__ import annotations

import errno
import json
import math
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aetune.errors import UsageError, first_line

VARIANT_KEY = "variant"  # the one key a Ray trial's config has beyond the trial config: the variant it belongs to
DIVERGED = "diverged"  # a trial's result key: True in the last result of a trial whose loss turned NaN/inf
CHECKPOINT_RANK = "checkpoint_rank"  # a trial's result key, higher is better: what Ray keeps the best checkpoints by
REPLAYED = "replayed"  # a trial's result key: True for an epoch told again from a checkpoint's history, not its last
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
        """Strict JSON: a non-finite number is written as null (bare NaN is not JSON; other tools reject it)."""
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
            variants = {name: VariantResult(**{**result, "metrics": _null_as_nan(result.get("metrics", {}))})
                        for name, result in raw.pop("variants").items()}
            return cls(variants=variants, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise UsageError(f"{path} is damaged ({type(err).__name__}: {first_line(err, limit=160)}); "
                             "rerun the search with --resume") from None


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


class StorageError(UsageError):
    """A file could not be written (disk full, quota, permissions); the message names the file."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_text(location: str, text: str, exclusive: bool = False) -> str:
    return write_bytes(location, text.encode(), exclusive)


def write_bytes(location: str, data: bytes | memoryview, exclusive: bool = False) -> str:
    """The package's one writer: the file appears complete or not at all.

    Locally: a uniquely named temp file in the target's folder, fsynced, then renamed over the target — or, with
    `exclusive`, hard-linked to it, which fails with FileExistsError when the target exists (an atomic create that
    two processes cannot both win). Buckets replace whole objects anyway; there `exclusive` is check-then-write.
    """
    try:
        if is_uri(location):
            _write_object(location, data, exclusive)
        else:
            _write_local(Path(location), data, exclusive)
    except FileExistsError:
        raise
    except OSError as err:
        fix = ("free space on that disk, then continue with --resume" if err.errno in DISK_FULL
               else "check that its folder is a writable directory")
        raise StorageError(f"cannot write {location}: {err.strerror or first_line(err)}; {fix}") from None
    return location


def _write_local(target: Path, data: bytes, exclusive: bool) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be: not "the target exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # unique name; mode from the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # renamed over the target
            pass


def _write_object(location: str, data: bytes, exclusive: bool) -> None:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if exclusive and fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        raise FileExistsError(errno.EEXIST, "exists", location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)
