"""The Ray side of a search: connect, one Tuner for every variant (new or restored), results -> summary.json."""
from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import ray
from ray import tune

from aetune.errors import UsageError, first_line
from aetune.experiment import CHECKPOINT_RANK, SPACE_FILE, VARIANT_KEY, Summary, VariantResult, write_manifest
from aetune.models import family
from aetune.search import preflight
from aetune.search.console import LiveStatus, hide_ray_resume_hint
from aetune.search.picks import summarise
from aetune.search.ray_compat import run_config_of, search_alg_of
from aetune.search.resume import CsvResults, JsonResults, RestorableCheckpoints, SnapshotBackup, restore_cut_snapshot
from aetune.search.schedulers import make_schedulers
from aetune.search.searchers import label_studies, make_router, study_prefix
from aetune.search.space_file import space_to_yaml
from aetune.search.spaces import SearchSpace
from aetune.search.trainable import train_trial
from aetune.storage import is_uri, join, write_text

KEEP_CHECKPOINTS = 2  # the best two by the variant's metric; Ray always keeps the latest as well, for resuming
MAX_FAILURES = 2  # a crashed trial is retried from its last checkpoint this many times


def storage_location(storage: str) -> str:
    """Absolute local path (Ray workers run elsewhere) or a bucket URI, unchanged."""
    return storage if is_uri(storage) else str(Path(storage).expanduser().resolve())


@dataclass
class Experiment:
    space: SearchSpace
    name: str
    storage: str
    data_root: str
    study_storage: str | None = None  # the Optuna storage URL (or journal file) every variant's study lives in
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # per variant: what its trials read
    created: str | None = None  # the creation id (experiment.json) its study names carry; None: made before ids

    @property
    def path(self) -> str:
        return join(self.storage, self.name)

    @property
    def trial_resources(self) -> dict[str, float]:
        """What each of its trials asks Ray for (CPUs, GPUs, memory for its copy of the data)."""
        return preflight.trial_resources(self.space, self.splits)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """C x H x W of its images, as the driver's check of the data found them (not read again)."""
        return tuple(next(iter(self.splits.values()))["shape"])

    def create(self) -> None:
        """Save the space used; never overwrite an existing experiment (that would lose work). Called holding the
        experiment's lock once resumable.check_new found the name free: the manifest is written first, so a
        space.yaml (the experiment's marker, created exclusively) always has its experiment.json beside it."""
        text = space_to_yaml(self.space)
        self.created = uuid.uuid4().hex[:12]
        write_manifest(self.path, text, self.created,
                       self.study_storage if self.study_storage != default_study_url(self.path) else None,
                       self.data_root)
        try:
            write_text(join(self.path, SPACE_FILE), text, exclusive=True)
        except FileExistsError:
            raise self.exists_error() from None

    def exists_error(self) -> UsageError:
        return UsageError(f"experiment {self.path} exists; continue it with: {self.resume_command()}  "
                          "(or start another with --name)")

    def resume_command(self) -> str:
        """The command that continues this experiment, as it works when typed: its storage and study storage."""
        words = ["python", "-m", "aetune.search", "--storage", self.storage, "--name", self.name, "--resume"]
        if self.study_storage and self.study_storage != default_study_url(self.path):
            words += ["--study-storage", self.study_storage]
        return shlex.join(words)


def default_study_url(experiment_path: str) -> str:
    """Where an experiment's Optuna studies live unless --study-storage says otherwise."""
    return f"sqlite:///{Path(experiment_path) / 'optuna.db'}"


def connect(address: str | None, worker_env: dict[str, str]) -> None:
    """Join a cluster, or start a local Ray whose dashboard listens on 127.0.0.1 only."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no second set of TensorBoard files
    # The experiment snapshot is what --resume restores. Tune takes one every ~10 s (or every num_to_keep trial
    # checkpoints) and meanwhile deletes checkpoints that fell out of the best num_to_keep: a driver killed in
    # between leaves a snapshot behind its trials (trainable.py, tune_callbacks.py and results.py make up for it).
    # With every trial reporting at once, snapshot after every step of the loop (a small local file) to keep that
    # lag short.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime_env = {"env_vars": worker_env}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        else:
            ray.init(dashboard_host="127.0.0.1", runtime_env=runtime_env)
        token = Path.home() / ".ray" / "auth_token"  # Ray writes it with the umask (often 0644): owner-only
        if token.is_file():
            token.chmod(0o600)
    except ConnectionError as err:
        raise UsageError(f"cannot reach the Ray cluster at --address {address} ({first_line(err, limit=160)}); "
                         "start it first (launch/local_cluster.sh up) or drop --address for a local Ray") from None


def check_storage_reachable(storage: str) -> None:
    """With several nodes, a local --storage must be the same folder on every one (a shared filesystem)."""
    nodes = preflight.live_nodes()
    if len(nodes) < 2 or is_uri(storage):
        return
    marker = Path(storage) / f".aetune-reach-{os.getpid()}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("ok")
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0)(os.path.exists)
        seen = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(str(marker)) for n in nodes])
    finally:
        marker.unlink()
    blind = [n["NodeManagerAddress"] for n, ok in zip(nodes, seen) if not ok]
    if blind:
        raise UsageError(f"--storage {storage} is not visible from node(s) {', '.join(blind)}; pass a folder on a "
                         "filesystem every node mounts, or a bucket URI (s3://..., gs://...)")


def local_path(location: str) -> str | None:
    """A folder on this filesystem (a file:// URI included), or None for a bucket."""
    if location.startswith("file://"):
        return location.removeprefix("file://")
    return None if is_uri(location) else location


def trial_dirname(trial: Any) -> str:
    return f"{trial.config[VARIANT_KEY]}-{trial.trial_id}"  # trainable.train_trial finds its folder by this


def trial_costs(space: SearchSpace, shape: tuple[int, ...]) -> dict[str, float]:
    """Each variant's work per trial, as FLOPs of a training step on one image of its first config (epochs and
    training images are the same for every variant): the router starts the costliest first."""
    from aetune.models import build_model

    return {v.name: build_model(space.first_config(v), shape).training_flops() for v in space.runs()}


def make_tuner(experiment: Experiment, trainable: Callable, resume: bool, console: str = "live") -> tune.Tuner:
    """One Ray Tune run for every variant at once, so no variant's tail leaves workers idle: the router searcher
    hands each new trial to a variant and its own study; each variant keeps its own ASHA brackets."""
    space = experiment.space
    runs = space.runs()
    rank_by = {v.name: ("epoch", "max") if space.search(v).multi_objective else
               (space.search(v).metric[0], space.search(v).mode[0]) for v in runs}
    threads = max(1, int(space.cpus))
    folder = local_path(experiment.path)
    trainable = tune.with_resources(
        tune.with_parameters(trainable, data_root=experiment.data_root, threads=threads, rank_by=rank_by,
                             experiment=folder),
        experiment.trial_resources)
    if resume and folder:
        for name in restore_cut_snapshot(Path(folder)):
            print(f"aetune: {name} was cut by the kill; resuming from its backup", file=sys.stderr)
    if resume and tune.Tuner.can_restore(experiment.path):
        tuner = tune.Tuner.restore(experiment.path, trainable, resume_unfinished=True, resume_errored=False)
        if experiment.study_storage:  # the storage --resume checked, not the one tuner.pkl names
            search_alg_of(tuner).searcher.bind(experiment.study_storage)
        return set_console(tuner, experiment, console)
    router = make_router(space, experiment.study_storage, trial_costs(space, experiment.image_shape),
                         study_prefix(experiment.name, experiment.created))
    label_studies(router.searcher, space, join(experiment.path, SPACE_FILE))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=router, scheduler=make_schedulers(space),
                                    num_samples=sum(space.trial_count(v) + space.search(v).repeats for v in runs),
                                    reuse_actors=True, trial_dirname_creator=trial_dirname,
                                    trial_name_creator=trial_dirname),  # the live view names each variant
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=experiment.storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS,
                                                    checkpoint_score_attribute=CHECKPOINT_RANK,
                                                    checkpoint_score_order="max"),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            sync_config=tune.SyncConfig(sync_artifacts=True),  # the trials' TensorBoard files
            callbacks=[JsonResults(), CsvResults(), RestorableCheckpoints(), SnapshotBackup()],
        ),
    )
    return set_console(tuner, experiment, console)


def set_console(tuner: tune.Tuner, experiment: Experiment, console: str) -> tune.Tuner:
    """This driver's console, whatever the run that saved a restored Tuner used. "ray": Ray Tune's own per-trial
    output (its default engine). Otherwise Ray's output is off (verbose 0 of its legacy engine, the one that
    prints nothing at 0: the new one still draws its configuration box and a final table) and LiveStatus draws
    the view ("live") or only the trials' errors ("quiet")."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if console == "ray" else "0"  # read by tune.run in this process
    run_config = run_config_of(tuner)
    run_config.verbose = 1 if console == "ray" else 0
    callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, LiveStatus)]
    if console != "ray":
        callbacks.append(LiveStatus(experiment.space, experiment.name, view=console == "live",
                                    splits=experiment.splits))
    run_config.callbacks = callbacks
    hide_ray_resume_hint()
    if console != "ray":
        logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "Wrote the latest version of all result files"
    return tuner


def trial_slots(trial: dict[str, float]) -> int:
    """How many trials the cluster runs at once: a trial runs on one node, so each node's own share, summed."""
    return max(1, sum(preflight.node_slots(node.get("Resources", {}), trial) for node in preflight.live_nodes()))


def disconnect() -> None:
    ray.shutdown()  # a local Ray stops with it; nothing happens where connect() did not get that far


def run(experiment: Experiment, resume: bool, trainable: Callable | None, console: str = "live") -> Summary:
    """The search on the connected cluster, new or resumed; writes and returns summary.json."""
    space = experiment.space
    check_storage_reachable(experiment.storage)
    # Tune lets a custom searcher keep one trial pending at a time: the cluster would fill one slot at a time
    # and a fast node would take every trial. Allow as many pending trials as the cluster has slots.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(trial_slots(experiment.trial_resources)))
    grid = make_tuner(experiment, trainable or train_trial, resume, console).fit()
    # A trial Tune never got to report for (Ctrl-C right after it started) comes back as a FileNotFoundError
    # ("could not fetch metrics"): unfinished, not failed.
    failed = sum(1 for result in grid if result.error is not None and not isinstance(result.error, FileNotFoundError))
    ended = grid.num_terminated + failed
    unread = any(result.config is None for result in grid) or ended < sum(map(space.trial_count, space.runs()))
    results = None if unread else summarise_all(experiment, grid)
    if preflight.terminated() or results is None or ended < expected_trials(space, results):
        # Ctrl-C: Tune saved its state and returned
        print(f"\ninterrupted; continue with: {experiment.resume_command()}", flush=True)
        raise KeyboardInterrupt
    summary = Summary(experiment.name, space.metric, space.mode, results, experiment.data_root)
    summary.write(experiment.path)
    return summary


def summarise_all(experiment: Experiment, grid: tune.ResultGrid) -> dict[str, VariantResult]:
    space, by_variant = experiment.space, defaultdict(list)
    for result in grid:
        by_variant[result.config[VARIANT_KEY]].append(result)
    root = experiment.path.split("://")[-1]
    return {v.name: summarise(by_variant[v.name], v, space.search(v), space.epochs, root, experiment.splits[v.name])
            for v in space.runs()}


def expected_trials(space: SearchSpace, results: dict[str, VariantResult]) -> int:
    """Trials a finished run has: every variant's search, and the repeats of every variant that picked a trial."""
    return sum(space.trial_count(v) + (space.search(v).repeats if results[v.name].trial_id else 0)
               for v in space.runs())


def print_summary(summary: Summary, experiment: Experiment) -> None:
    print(f"\n== {summary.name}: the pick of each variant (validation split unless said) ==")
    print(f"{'variant':<22} {'trials':>6} {'objective':<28} {'val_bce':>8} {'epoch':>5}  config / checkpoint")
    for name, v in summary.variants.items():
        if v.checkpoint is None:
            print(f"{name:<22} {v.trials:>6} {'-':<28} {'-':>8} {'-':>5}  no finished trial")
        else:
            metrics = v.metric if isinstance(v.metric, list) else [v.metric]
            objective = " ".join(f"{m}={v.metrics[m]:.4g}" for m in metrics)
            print(f"{name:<22} {v.trials:>6} {objective:<28} {v.metrics.get('val_bce', math.nan):>8.4f} "
                  f"{v.metrics.get('epoch', 0):>5}  {_describe(v.config)}")
            if v.front:
                print(f"{'':<22} front of {len(v.front)} trials; picked: {v.pick_rule}")
            if v.repeats:
                print(f"{'':<22} repeated under seeds {', '.join(str(r['seed']) for r in v.repeats)} "
                      f"(python -m aetune.evaluate reports their mean and 95% confidence interval)")
            if v.selected_on == "test":
                print(f"{'':<22} selected on the TEST split (val_size: 0, the course protocol)")
            print(f"{'':<22}  {join(experiment.path, v.checkpoint)}")
        for e in v.errored:
            print(f"{'':<22} ERROR trial {e['trial_id']}: {e['error']}  ({join(experiment.path, e['error_file'])})")
        if v.diverged:
            print(f"{'':<22} diverged (ignored): {', '.join(v.diverged)}")
    print(f"\nsummary:     {join(experiment.path, 'summary.json')}")
    print(f"TensorBoard: tensorboard --logdir {experiment.path} --host 127.0.0.1")
    if experiment.study_storage:
        print(f"Optuna:      optuna-dashboard {experiment.study_storage} --host 127.0.0.1")
    print(f"evaluate:    python -m aetune.evaluate {experiment.path}")


def _describe(config: dict[str, Any]) -> str:
    architecture = [k for k in family(config["model"]).config_keys if k != "l1"]
    shown = [*architecture, "lr", "batch_size"] + [k for k in ("noise_factor", "l1") if config.get(k)]

    def fmt(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")

    return f"{config.get('model')} " + " ".join(f"{k}={fmt(config[k])}" for k in shown if k in config)
