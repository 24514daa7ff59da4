"""The Ray side of a search: connect, one Tuner per variant (new or restored), results -> summary.json."""
from __future__ import annotations

import math
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from aetune.config import TrialConfig
from aetune.errors import UsageError, first_line
from aetune.experiment import SPACE_FILE, Summary, VariantResult, is_uri, join, write_text
from aetune.models import family
from aetune.searchers import make_scheduler, make_searcher
from aetune.spaces import SearchSpace, Variant, ray_param_space, space_to_yaml
from aetune.trainable import DIVERGED, train_trial

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

    @property
    def path(self) -> str:
        return join(self.storage, self.name)

    def create(self) -> None:
        """Save the space used; never overwrite an existing experiment (that would lose work). The space file is
        the experiment's marker, created exclusively: of two searches started at once with one name, one wins."""
        try:
            write_text(join(self.path, SPACE_FILE), space_to_yaml(self.space), exclusive=True)
        except FileExistsError:
            raise UsageError(f"experiment {self.path} exists; continue it with --resume --name {self.name} "
                             "or start another with --name") from None


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
    path = join(experiment.path, variant.name)
    resources = {"cpu": space.cpus, "gpu": space.gpus}
    threads = max(1, int(space.cpus))
    trainable = tune.with_resources(tune.with_parameters(trainable, data_root=experiment.data_root, threads=threads),
                                    resources)
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    trials_file = None if is_uri(path) else str(Path(path) / "optuna_trials.json")
    searcher = make_searcher(space, variant, trials_file)
    grid_or_random = space.searcher != "optuna"
    return tune.Tuner(
        trainable,
        param_space=ray_param_space(space, variant) if grid_or_random else {},
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=searcher, scheduler=make_scheduler(space),
            num_samples=space.samples, reuse_actors=True, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=variant.name, storage_path=experiment.path, verbose=verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS,
                                                    checkpoint_score_attribute=space.metric,
                                                    checkpoint_score_order=space.mode),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            sync_config=tune.SyncConfig(sync_artifacts=True),  # the trials' TensorBoard files
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],
        ),
    )


def run(experiment: Experiment, address: str | None, resume: bool, trainable: Callable | None, verbose: int,
        worker_env: dict[str, str]) -> Summary:
    connect(address, worker_env)
    try:
        check_storage_reachable(experiment.storage)
        results = {}
        for variant in experiment.space.variants.values():
            print(f"\n== variant {variant.name} ==", flush=True)
            tuner = make_tuner(experiment, variant, trainable or train_trial, resume, verbose)
            grid = tuner.fit()
            finished = grid.num_terminated + grid.num_errors
            if finished < experiment.space.trial_count(variant):  # Ctrl-C: Tune saved its state and returned
                print(f"\ninterrupted; continue with: python -m aetune.search --storage {experiment.storage} "
                      f"--name {experiment.name} --resume", flush=True)
                raise KeyboardInterrupt
            results[variant.name] = summarise(grid, experiment, variant)
    finally:
        ray.shutdown()
    summary = Summary(experiment.name, experiment.space.metric, experiment.space.mode, results, experiment.data_root)
    summary.write(experiment.path)
    return summary


def summarise(grid: tune.ResultGrid, experiment: Experiment, variant: Variant) -> VariantResult:
    """Best checkpoint over the variant's trials, skipping diverged and errored trials."""
    space, root = experiment.space, experiment.path.split("://")[-1]
    sign = 1 if space.mode == "min" else -1
    errored, diverged, best = [], [], None
    for result in grid:
        trial_id = result.metrics.get("trial_id") or Path(result.path).name
        if result.error:
            errored.append({"trial_id": trial_id, "error_file": posixpath.relpath(f"{result.path}/error.txt", root),
                            "error": first_line(result.error, last=True)})
            continue
        if result.metrics.get(DIVERGED):
            diverged.append(trial_id)
            continue
        for checkpoint, metrics in result.best_checkpoints:
            value = metrics.get(space.metric, math.nan)
            if math.isfinite(value) and (best is None or sign * value < sign * best[0]):
                best = (value, trial_id, result, checkpoint, metrics)
    if best is None:
        return VariantResult(None, {}, {}, None, None, len(grid), errored, diverged)
    _, trial_id, result, checkpoint, metrics = best
    return VariantResult(
        trial_id=trial_id, config=TrialConfig.from_dict(result.config).to_dict(), metrics=_metric_values(metrics),
        checkpoint=posixpath.relpath(f"{checkpoint.path}/checkpoint.pt", root),
        trial_dir=posixpath.relpath(result.path, root), trials=len(grid), errored=errored, diverged=diverged,
    )


def _metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    keep = ("epoch", "train_loss", "val_loss", "val_bce", "val_mse", "code_l1", "kl", "samples_per_s")
    return {k: metrics[k] for k in keep if k in metrics}


def print_summary(summary: Summary, experiment: Experiment) -> None:
    print(f"\n== {summary.name}: best trial per variant ({summary.metric}, {summary.mode}) ==")
    header = f"{'variant':<12} {'trials':>6} {summary.metric:>10} {'val_bce':>8} {'epoch':>5}  config / checkpoint"
    print(header)
    for name, v in summary.variants.items():
        if v.checkpoint is None:
            print(f"{name:<12} {v.trials:>6} {'-':>10} {'-':>8} {'-':>5}  no finished trial")
        else:
            m = v.metrics
            print(f"{name:<12} {v.trials:>6} {m[summary.metric]:>10.5g} {m.get('val_bce', math.nan):>8.4f} "
                  f"{m.get('epoch', 0):>5}  {_describe(v.config)}")
            print(f"{'':<38}  {join(experiment.path, v.checkpoint)}")
        for e in v.errored:
            print(f"{'':<12} ERROR trial {e['trial_id']}: {e['error']}  ({join(experiment.path, e['error_file'])})")
        if v.diverged:
            print(f"{'':<12} diverged (ignored): {', '.join(v.diverged)}")
    print(f"\nsummary:     {join(experiment.path, 'summary.json')}")
    print(f"TensorBoard: tensorboard --logdir {experiment.path} --host 127.0.0.1")
    print(f"evaluate:    python -m aetune.evaluate {experiment.path}")


def _describe(config: dict[str, Any]) -> str:
    architecture = [k for k in family(config["model"]).config_keys if k != "l1"]
    shown = [*architecture, "lr", "batch_size"] + [k for k in ("noise_factor", "l1") if config.get(k)]
    def fmt(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")

    return f"{config.get('model')} " + " ".join(f"{k}={fmt(config[k])}" for k in shown if k in config)
