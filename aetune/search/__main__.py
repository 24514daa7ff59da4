"""python -m aetune.search: every variant's search in one Ray Tune run (TPE + ASHA each), TensorBoard, resume."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

import yaml

from aetune import yamlfile
from aetune.errors import UsageError, cli, exit_now, first_line
from aetune.experiment import SPACE_FILE, check_layout, saved_data_root, saved_study_storage
from aetune.search import lock, preflight
from aetune.search.ray_compat import warn_untested
from aetune.search.space_file import load_space, parse_space
from aetune.search.spaces import SearchSpace
from aetune.storage import is_uri, join, read_text

DEFAULT_SPACE = Path("search_spaces") / "quick.yaml"
# Run from the checkout, or anywhere once installed in editable mode: fall back to the repository's copy.
BUNDLED_SPACE = Path(__file__).resolve().parents[2] / DEFAULT_SPACE
# glibc returns multi-MB conv activations to the OS each step and page-faults them back; keeping them mapped
# makes the conv models ~1.5x faster. Workers only see it through the job's runtime_env.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}

EXAMPLES = """\
examples:
  python -m aetune.search                                     # quick.yaml: every variant, a few minutes on a laptop
  python -m aetune.search --space search_spaces/mnist.yaml --name study --samples 32 --epochs 30
  python -m aetune.search --space search_spaces/seeds.yaml --gpus-per-trial 0.25   # 4 trials share each GPU
  python -m aetune.search --address auto --storage /shared/runs   # join a running Ray cluster
  python -m aetune.search --name study --resume               # finish an interrupted experiment
then:
  tensorboard --logdir runs/<name> --host 127.0.0.1
  python -m aetune.evaluate runs/<name>
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aetune.search", description=__doc__.split(":", 1)[1].strip(),
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", type=Path, help=f"search space YAML (default: {DEFAULT_SPACE})")
    p.add_argument("--name", help="experiment name (default: the space's `name`)")
    p.add_argument("--storage", default="runs", help="experiments folder, local path or bucket URI (default: ./runs)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment STORAGE/NAME")
    p.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT (default: start a local Ray)")
    p.add_argument("--study-storage", metavar="URL",
                   help="Optuna storage for the variants' studies: an RDB URL (sqlite:///..., postgresql://...) or a "
                        "journal file path (default: sqlite:///STORAGE/NAME/optuna.db; required with a bucket "
                        "--storage)")
    p.add_argument("--data-root",
                   help="dataset root every node can read (default: $AETUNE_DATA or ~/.cache/aetune/data)")
    group = p.add_argument_group("overrides of the space file")
    group.add_argument("--samples", type=int, help="trials per variant")
    group.add_argument("--repeats", type=int, help="train each variant's pick again under this many new seeds "
                       "(0: none; the evaluation reports their mean and 95%% confidence interval)")
    group.add_argument("--epochs", type=int, help="maximum epochs per trial")
    group.add_argument("--train-size", type=int,
                       help="training images in use: the first N of the training split (default: all of it)")
    group.add_argument("--val-size", type=int, help="of those, images held out to validate on (default: 10%%; "
                       "0 validates on the test split, the course protocol)")
    group.add_argument("--test-size", type=int, help="test images `aetune.evaluate` scores on later (the first N); "
                       "no trial reads the test split")
    group.add_argument("--cpus-per-trial", type=float, dest="cpus", help="CPU cores per trial (its torch threads)")
    group.add_argument("--gpus-per-trial", type=float, dest="gpus", help="fractions share a GPU, e.g. 0.25")
    group.add_argument("--seed", type=int, help="seeds the searchers and every trial")
    group.add_argument("--variants", nargs="+", metavar="VARIANT",
                       help="run only these: a variant of the space (all its sweep members, e.g. dense) or single "
                       "sweep members (dense@code_size=8), as summary.json and aetune.evaluate name them")
    console = p.add_mutually_exclusive_group()
    console.add_argument("--quiet", action="store_true",
                         help="print only the trials' errors and the final table (no status view)")
    console.add_argument("--verbose", action="store_true",
                         help="Ray Tune's own per-trial output instead of aetune's status view")
    return p


def _space_for(args: argparse.Namespace) -> tuple[SearchSpace, str, str]:
    """The space (structurally validated: no PyTorch yet), with command-line overrides; on --resume, the
    experiment's saved space. Also the experiment's name and the file it came from."""
    overrides = {k: getattr(args, k) for k in ("samples", "repeats", "epochs", "train_size", "val_size", "test_size",
                                               "cpus", "gpus", "seed")}
    if args.resume:
        if not args.name:
            raise UsageError("--resume needs --name: the experiment to continue (a folder under --storage)")
        _check_name(args.name)
        if any(v is not None for v in overrides.values()) or args.space or args.variants:
            raise UsageError("--resume continues the experiment as it was saved, all its variants; "
                             "drop --space, --variants and the override flags")
        location = join(args.storage, args.name, SPACE_FILE)
        space = _saved_space(args.storage, args.name)
        check_layout(join(_expanded(args.storage), args.name))
        return space, args.name, location
    default = DEFAULT_SPACE if DEFAULT_SPACE.is_file() or not BUNDLED_SPACE.is_file() else BUNDLED_SPACE
    source = str(args.space or default)
    space = load_space(source, models=False).replace(**overrides)
    if args.variants:
        space = space.only(args.variants)
    name = args.name or space.name
    _check_name(name)
    return space, name, source


def console_mode(args: argparse.Namespace) -> str:
    """tuner.set_console's mode: aetune's status view ("live") by default; --quiet: errors and the final table
    ("quiet"); --verbose: Ray Tune's own output ("ray")."""
    return "quiet" if args.quiet else "ray" if args.verbose else "live"


def study_url(args: argparse.Namespace, space: SearchSpace, storage: str, name: str) -> str | None:
    """Where the Optuna studies live: --study-storage, else an SQLite file in the experiment folder."""
    if space.searcher != "optuna":
        return None
    if args.study_storage:
        url = args.study_storage
        return url if "://" in url else str(Path(url).expanduser().resolve())  # a journal file, made absolute
    saved = saved_study_storage(join(storage, name)) if args.resume else None
    if saved:
        return saved  # the restored studies are bound to it (tuner.make_tuner)
    if is_uri(storage):
        raise UsageError(f"--storage {storage} is a bucket, where Optuna cannot keep a study; pass --study-storage "
                         "with an RDB URL (e.g. postgresql://...) or a journal file on a shared filesystem")
    from aetune.search.tuner import default_study_url

    return default_study_url(join(storage, name))


def _expanded(storage: str) -> str:
    return storage if is_uri(storage) else os.path.expanduser(storage)


def _saved_space(storage: str, name: str) -> SearchSpace:
    """STORAGE/NAME/space.yaml, read through the same reader as the rest of the experiment (folders and buckets)."""
    storage = _expanded(storage)
    location = join(storage, name, SPACE_FILE)
    try:
        text = read_text(location)
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {location} ({first_line(err)}); the experiment's saved space is damaged: "
                         "restore it, or start a new experiment") from None
    if text is None:
        raise UsageError(f"{join(storage, name)} is not an aetune experiment (no {SPACE_FILE}); "
                         "check --storage and --name, or start it without --resume")
    try:
        raw = yamlfile.load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{location} is not valid YAML ({first_line(err)}); the experiment's saved space is "
                         "damaged: restore it, or start a new experiment") from None
    return parse_space(raw, source=location, models=False)


def _check_name(name: str) -> None:
    """An experiment name is one folder under --storage (it must not climb out of it or nest)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UsageError(f"experiment name {name!r} must be a single folder name (no '/', not '.' or '..'); "
                         "pass another --name")


def _splits(space: SearchSpace, data_root: Path, resume: bool) -> dict[str, dict]:
    """What each variant's trials will read: present (downloaded once, here) and splittable before any trial
    starts. A resumed experiment downloads nothing: its trials already read the dataset, so a missing one means
    the data root moved."""
    from aetune.config import TrialConfig
    from aetune.train.data import DataError, load_data, trial_data

    try:
        return {v.name: trial_data(TrialConfig.from_dict(space.base_config(v)), data_root, download=not resume).split
                for v in space.runs()}
    except DataError as err:
        if not resume:
            raise
        what = first_line(err).split("; ")[0]  # "cannot read mnist from ... (files not found)"
        raise DataError(f"--resume: {what}; if the dataset moved, pass --data-root with its new folder "
                        "(a resumed experiment downloads nothing)") from None
    finally:
        load_data.cache_clear()  # the trials' workers load their own copies: the driver keeps none for the run


def _checked_input(space: SearchSpace, source: str, args: argparse.Namespace) -> tuple[Path, dict[str, dict]]:
    """The checks that need PyTorch: every model builds and fits the images; the dataset is there (downloaded
    once, here) and splits. Returns the data root and each variant's split."""
    space.check_models(source)
    from aetune.train.data import resolve_data_root

    saved = saved_data_root(join(_expanded(args.storage), args.name)) if args.resume else None
    data_root = resolve_data_root(args.data_root or saved)  # a given --data-root wins over the experiment's own
    return data_root, _splits(space, data_root, args.resume)


@cli
def main(argv: list[str] | None = None, trainable: Callable[..., None] | None = None) -> int:
    """Validate everything, then run. `trainable` lets tests wrap the real one (fault injection)."""
    args = _parser().parse_args(argv)
    warn_untested()  # a Ray or Optuna minor the resume code was not tested on: one line, then go on
    space, name, source = _space_for(args)  # PyTorch is not imported yet: a mistyped file fails at once
    # Then the checks that need PyTorch, before Ray. (Run in a thread while Ray started, they made no difference
    # on 2 cores: both are imports and process start-ups competing for the same cores and the GIL.)
    data_root, splits = _checked_input(space, source, args)
    from aetune.search import tuner

    storage = tuner.storage_location(args.storage)
    experiment = tuner.Experiment(space, name, storage, str(data_root), study_url(args, space, storage, name),
                                   splits)
    preflight.check_name_lengths(space, storage, name)
    preflight.check_address(args.address)
    with lock.hold(experiment.path):  # one driver per experiment, from before its first write to its end
        summary = _run_held(experiment, args, trainable)
    tuner.print_summary(summary, experiment)
    return 1 if any(v.errored for v in summary.variants.values()) else 0


def _run_held(experiment, args: argparse.Namespace, trainable: Callable[..., None] | None):
    """Holding the lock: check that the experiment can be continued (or made), connect, check the cluster can run
    a trial, then write and run. Every refusal comes before the first write."""
    from aetune.search import resumable, tuner

    if args.resume:
        resumable.check_resume(experiment, tuner.local_path(experiment.path))
    else:
        resumable.check_new(experiment, given_storage=bool(args.study_storage))
    preflight.sigterm_as_interrupt()
    tuner.connect(args.address, WORKER_ENV)
    try:
        preflight.sigterm_as_interrupt()  # again: ray.init installed its own
        preflight.check_resources(experiment.trial_resources)
        if args.study_storage and experiment.study_storage:
            from aetune.search.searchers import open_study_storage

            open_study_storage(experiment.study_storage)  # a bad URL fails here, in one line, before any write
        if not args.resume:
            experiment.create()
        with resumable.no_restart():
            return tuner.run(experiment, resume=args.resume, trainable=trainable, console=console_mode(args))
    finally:
        tuner.disconnect()


if __name__ == "__main__":
    exit_now(main())
