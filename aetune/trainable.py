"""The Ray Tune function trainable: one trial = one Trainer, reported and checkpointed every epoch."""
from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from aetune.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from aetune.config import TrialConfig
from aetune.experiment import CHECKPOINT_RANK, DIVERGED, VARIANT_KEY
from aetune.tb import TrialLogger
from aetune.train import is_finite, trainer_for


def checkpoint_rank(metrics: dict[str, float], rank_by: tuple[str, str]) -> float:
    """The variant's objective as one higher-is-better number (a front keeps its latest epochs: rank_by epoch)."""
    metric, mode = rank_by
    return metrics[metric] if mode == "max" else -metrics[metric]


def resume_bundle(trial_dir: Path | None) -> dict[str, Any] | None:
    """Where this trial goes on from: the checkpoint of the last epoch the driver logged (result.json). A driver
    killed between a trial's report and Tune's next experiment snapshot leaves Tune one checkpoint behind what
    result.json shows (resuming there would log an epoch twice), or a checkpoint ahead of it whose result was never
    logged (resuming there would leave a gap). Local storage only: elsewhere Tune's own choice stands."""
    bundles = []
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            bundles.append(load_checkpoint(Path(folder) / CHECKPOINT_FILE))
    floor = bundles[0]["epoch"] if bundles else 0  # never behind Tune's own restore point
    if trial_dir is None or not (trial_dir / "result.json").is_file():
        return bundles[0] if bundles else None
    logged = [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()
              if line.strip().endswith("}")]  # a line cut by the kill is not logged
    for path in sorted(trial_dir.glob(f"checkpoint_*/{CHECKPOINT_FILE}")):
        try:
            bundles.append(load_checkpoint(path))
        except CheckpointError:  # an incomplete or foreign file is not a place to resume from
            continue
    last = max(max(logged, default=0), floor)
    return max((b for b in bundles if floor <= b["epoch"] <= last), key=lambda b: b["epoch"], default=None)


def train_trial(config: dict[str, Any], *, data_root: str, threads: int, rank_by: dict[str, tuple[str, str]],
                experiment: str | None = None, image_every: int = 5) -> None:
    """Train until `epochs`, resuming from Tune's checkpoint after a crash or `--resume`. `config` is the trial
    config plus the variant's name (searchers.VARIANT_KEY); `rank_by` maps each variant to how its checkpoints rank.

    A non-finite loss ends the trial with `diverged: True` in its last result (no checkpoint), so the search
    goes on and best-trial selection can skip it.
    """
    torch.set_num_threads(threads)
    node = {"node_id": ray.get_runtime_context().get_node_id()}  # which node ran each epoch (multi-node runs)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one INFO line per epoch
    config = dict(config)
    variant = config.pop(VARIANT_KEY)
    trainer = trainer_for(TrialConfig.from_dict(config), data_root, download=False)
    trial_dir = Path(experiment) / f"{variant}-{tune.get_context().get_trial_id()}" if experiment else None
    bundle = resume_bundle(trial_dir)
    if bundle:
        trainer.load_state_dict(bundle)
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
                rank = checkpoint_rank(metrics, rank_by[variant])
                tune.report({**metrics, **node, DIVERGED: False, CHECKPOINT_RANK: rank},
                            checkpoint=tune.Checkpoint.from_directory(folder))


def _finite_or_inf(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v if math.isfinite(v) else math.inf for k, v in metrics.items()}
