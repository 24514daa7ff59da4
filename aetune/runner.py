"""The Ray side of a search: connect, one Tuner per variant (new or restored), results -> summary.json."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from aetune.config import TrialConfig
from aetune.errors import UsageError, first_line
from aetune.experiment import SPACE_FILE, Summary, is_uri, join, read_text, write_text
from aetune.models import family
from aetune.results import summarise
from aetune.searchers import make_scheduler, make_searcher
from aetune.spaces import Search, SearchSpace, Variant, ray_param_space, space_to_yaml
from aetune.trainable import train_trial

KEEP_CHECKPOINTS = 2  # the best two by the metric; Ray always keeps the latest as well, for resuming
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

    @property
    def path(self) -> str:
        return join(self.storage, self.name)

    def create(self) -> None:
        """Save the space used; never overwrite an existing experiment (that would lose work)."""
        if read_text(join(self.path, SPACE_FILE)) is not None:
            raise UsageError(f"experiment {self.path} exists; continue it with --resume --name {self.name} "
                             "or start another with --name")
        write_text(join(self.path, SPACE_FILE), space_to_yaml(self.space))


def connect(address: str | None, worker_env: dict[str, str]) -> None:
    """Join a cluster, or start a local Ray whose dashboard listens on 127.0.0.1 only."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no second set of TensorBoard files
    # Snapshots are forced after every num_to_keep checkpoints, on purpose: that is what makes --resume exact.
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
    nodes = [n for n in ray.nodes() if n["Alive"]]
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


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def make_tuner(experiment: Experiment, variant: Variant, trainable: Callable, resume: bool,
               verbose: int = 1) -> tune.Tuner:
    space = experiment.space
    search = space.search(variant)
    path = join(experiment.path, variant.name)
    resources = {"cpu": space.cpus, "gpu": space.gpus}
    threads = max(1, int(space.cpus))
    trainable = tune.with_resources(tune.with_parameters(trainable, data_root=experiment.data_root, threads=threads),
                                    resources)
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    searcher = make_searcher(space, variant, experiment.study_storage)
    single = None if search.multi_objective else search.metric[0]  # checkpoints ranked by it; else the latest
    return tune.Tuner(
        trainable,
        param_space=ray_param_space(space, variant) if space.searcher != "optuna" else {},
        # The searcher and scheduler carry their own metric (a list for a front; ASHA's one metric).
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(search, space.epochs),
                                    num_samples=search.samples, reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=variant.name, storage_path=experiment.path, verbose=verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS, checkpoint_score_attribute=single,
                                                    checkpoint_score_order=search.mode[0]),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            sync_config=tune.SyncConfig(sync_artifacts=True),  # the trials' TensorBoard files
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],
            progress_reporter=progress_reporter(search) if verbose else None,
        ),
    )


def progress_reporter(search: Search) -> tune.CLIReporter:
    """The live table: the variant's objective(s), then the scores every variant shares."""
    shared = ("val_bce", "val_denoise_bce", "code_l1", "epoch")
    columns = list(dict.fromkeys([*search.metric, *shared]))
    return tune.CLIReporter(metric_columns=columns, max_report_frequency=10)


def data_split(config: dict[str, Any], data_root: str) -> dict[str, Any]:
    """The split every trial of a variant trained and validated on (the same function the trials call)."""
    from aetune.data import load_data

    cfg = TrialConfig.from_dict(config)
    return load_data(cfg.dataset, data_root, cfg.train_size, cfg.test_size, False, cfg.val_size, cfg.val_split,
                     test=False).split


def run(experiment: Experiment, address: str | None, resume: bool, trainable: Callable | None, verbose: int,
        worker_env: dict[str, str]) -> Summary:
    connect(address, worker_env)
    space = experiment.space
    try:
        check_storage_reachable(experiment.storage)
        results = {}
        for variant in space.runs():
            print(f"\n== variant {variant.name} ==", flush=True)
            tuner = make_tuner(experiment, variant, trainable or train_trial, resume, verbose)
            grid = tuner.fit()
            finished = grid.num_terminated + grid.num_errors
            if finished < space.trial_count(variant):  # Ctrl-C: Tune saved its state and returned
                print(f"\ninterrupted; continue with: python -m aetune.search --storage {experiment.storage} "
                      f"--name {experiment.name} --resume", flush=True)
                raise KeyboardInterrupt
            split = data_split(space.base_config(variant), experiment.data_root)
            results[variant.name] = summarise(grid, variant, space.search(variant), space.epochs,
                                              experiment.path.split("://")[-1], split)
    finally:
        ray.shutdown()
    summary = Summary(experiment.name, space.metric, space.mode, results, experiment.data_root)
    summary.write(experiment.path)
    return summary


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
                print(f"{'':<22} front of {len(v.front)} trials; picked its knee")
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
