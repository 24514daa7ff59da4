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

from aetune.checkpoint import CHECKPOINT_FILE, load_checkpoint
from aetune.config import TrialConfig
from aetune.experiment import VARIANT_KEY
from aetune.tb import TrialLogger
from aetune.train import is_finite, trainer_for

DIVERGED = "diverged"
CHECKPOINT_RANK = "checkpoint_rank"  # higher is better: what Ray keeps the best checkpoints by, for every variant


def checkpoint_rank(metrics: dict[str, float], rank_by: tuple[str, str]) -> float:
    """The variant's objective as one higher-is-better number (a front keeps its latest epochs: rank_by epoch)."""
    metric, mode = rank_by
    return metrics[metric] if mode == "max" else -metrics[metric]


def train_trial(config: dict[str, Any], *, data_root: str, threads: int, rank_by: dict[str, tuple[str, str]],
                image_every: int = 5) -> None:
    """Train until `epochs`, resuming from Tune's checkpoint after a crash or `--resume`. `config` is the trial
    config plus the variant's name (searchers.VARIANT_KEY); `rank_by` maps each variant to how its checkpoints rank.

    A non-finite loss ends the trial with `diverged: True` in its last result (no checkpoint), so the search
    goes on and best-trial selection can skip it.
    """
    torch.set_num_threads(threads)
    node = {"node_id": ray.get_runtime_context().get_node_id()}  # which node ran each epoch (multi-node runs)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one INFO line per epoch
    config = dict(config)
    rank = rank_by[config.pop(VARIANT_KEY)]
    trainer = trainer_for(TrialConfig.from_dict(config), data_root, download=False)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / CHECKPOINT_FILE))
    # The trial's working directory is synced to the experiment folder with its checkpoints (sync_artifacts).
    logger = TrialLogger(Path.cwd(), trainer.config, trainer.data.val_x[:8], start_epoch=trainer.epoch,
                         image_every=image_every)
    with logger:
        while trainer.epoch < trainer.config.epochs:
            metrics = trainer.run_epoch()
            if not is_finite(metrics):
                logger.log_epoch(_finite_or_inf(metrics), trainer.model)
                logger.close("failure")
                tune.report({**metrics, **node, DIVERGED: True})
                return
            logger.log_epoch(metrics, trainer.model)
            with tempfile.TemporaryDirectory() as folder:
                trainer.save(Path(folder) / CHECKPOINT_FILE)
                tune.report({**metrics, **node, DIVERGED: False, CHECKPOINT_RANK: checkpoint_rank(metrics, rank)},
                            checkpoint=tune.Checkpoint.from_directory(folder))


def _finite_or_inf(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v if math.isfinite(v) else math.inf for k, v in metrics.items()}
