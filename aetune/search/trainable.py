"""The Ray Tune function trainable: one trial = one Trainer, reported and checkpointed every epoch."""
from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from aetune.config import TrialConfig
from aetune.experiment import CHECKPOINT_RANK, DIVERGED, NOT_CONFIG_KEYS, REPLAYED, VARIANT_KEY
from aetune.train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from aetune.train.logger import TrialLogger
from aetune.train.trainer import is_finite, trainer_for


def checkpoint_rank(metrics: dict[str, float], rank_by: tuple[str, str]) -> float:
    """The variant's objective as one higher-is-better number (a front keeps its latest epochs: rank_by epoch)."""
    metric, mode = rank_by
    return metrics[metric] if mode == "max" else -metrics[metric]


def restore_point(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The bundle of the checkpoint Tune restores this trial from (its last experiment snapshot's), or None: a
    fresh start, or a checkpoint that Tune deleted (no longer among the best) after that snapshot."""
    if not checkpoint:
        return None
    with checkpoint.as_directory() as folder:
        path = Path(folder) / CHECKPOINT_FILE
        return load_checkpoint(path) if path.exists() else None


def newest_bundle(trial_dir: Path | None, restored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where this trial goes on from: the newest complete checkpoint in its folder, never one behind Tune's restore
    point. A driver killed between a trial's report and Tune's next experiment snapshot leaves the snapshot behind
    the folder, and the restored trial writes its next checkpoints into folders numbered from the snapshot's count,
    over ones that result.json may have logged: the newest whole one on disk is the furthest any run got. Local
    storage only (`trial_dir`): elsewhere Tune's restore point stands."""
    newest = restored
    for path in sorted(trial_dir.glob(f"checkpoint_*/{CHECKPOINT_FILE}")) if trial_dir else ():
        try:
            bundle = load_checkpoint(path)
        except CheckpointError:  # an incomplete or foreign file is not a place to resume from
            continue
        if newest is None or bundle["epoch"] > newest["epoch"]:
            newest = bundle
    return newest


def train_trial(config: dict[str, Any], *, data_root: str, threads: int, rank_by: dict[str, tuple[str, str]],
                experiment: str | None = None, image_every: int = 5) -> None:
    """Train until `epochs`, going on from the newest checkpoint after a crash or `--resume`. `config` is the trial
    config plus the variant's name (searchers.VARIANT_KEY); `rank_by` maps each variant to how its checkpoints rank.

    A non-finite loss ends the trial with `diverged: True` in its last result (no checkpoint), so the search
    goes on and best-trial selection can skip it.
    """
    torch.set_num_threads(threads)
    node = {"node_id": ray.get_runtime_context().get_node_id()}  # which node ran each epoch (multi-node runs)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one INFO line per epoch
    variant = config[VARIANT_KEY]
    config = {k: v for k, v in config.items() if k not in NOT_CONFIG_KEYS}  # a repeat's number is not a config key
    trainer = trainer_for(TrialConfig.from_dict(config), data_root, download=False)
    trial_dir = Path(experiment) / f"{variant}-{tune.get_context().get_trial_id()}" if experiment else None
    restored = restore_point(tune.get_checkpoint())
    bundle = newest_bundle(trial_dir, restored)
    if bundle:
        trainer.load_state_dict(bundle)
    restore_epoch = restored["epoch"] if restored else 0  # Tune may not know what came after it

    def report(metrics: dict[str, float], checkpoint: bool = True, replayed: bool = False) -> None:
        """Every result has the same keys of ours (Tune's own differ: tune_callbacks.CsvResults copes)."""
        result = {**metrics, **node, DIVERGED: not is_finite(metrics), REPLAYED: replayed,
                  CHECKPOINT_RANK: checkpoint_rank(metrics, rank_by[variant])}
        if not checkpoint:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    # The trial's working directory is synced to the experiment folder with its checkpoints (sync_artifacts).
    # The writer's purge step drops what an earlier run logged after Tune's restore point, logged again here.
    logger = TrialLogger(Path.cwd(), trainer.config, trainer.data.val_x[:8], start_epoch=restore_epoch,
                         image_every=image_every)
    with logger:
        # Epochs on disk after Tune's restore point: Tune, its scheduler and searcher hear of them again from the
        # checkpoint's history (the result files keep each epoch once: tune_callbacks.py), not trained twice.
        # (A retry whose driver had logged the newest epoch but not yet filed its checkpoint tells it twice: ASHA
        # records a trial once per rung, Optuna keeps a step's first value, the result files skip it.)
        for metrics in trainer.history[restore_epoch:]:
            latest = metrics is trainer.history[-1]
            logger.log_epoch(metrics, trainer.model, images=latest)  # an earlier epoch's model is gone
            report(metrics, checkpoint=latest, replayed=not latest)
        while trainer.epoch < trainer.config.epochs:
            metrics = trainer.run_epoch()
            if not is_finite(metrics):
                logger.log_epoch(_finite_or_inf(metrics), trainer.model)
                logger.close("failure")
                report(metrics, checkpoint=False)
                return
            logger.log_epoch(metrics, trainer.model)
            report(metrics)


def _finite_or_inf(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v if math.isfinite(v) else math.inf for k, v in metrics.items()}
