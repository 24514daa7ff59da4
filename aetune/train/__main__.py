"""python -m aetune.train: train one autoencoder config, no search.

python -m aetune.train --model dense --hidden-layers 128 64 --code-size 32 --epochs 5 --out runs/one
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

from aetune.config import ConfigError, TrialConfig
from aetune import yamlfile
from aetune.errors import UsageError, cli, first_line
from aetune.train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from aetune.train.trainer import Trainer, is_finite, pick_device, trainer_for


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aetune.train",
        description="Train one autoencoder config (no search). Flags override --config.",
        epilog="example: python -m aetune.train --model conv --filters 16 8 8 --epochs 5 --out runs/conv",
    )
    parser.add_argument("--config", type=Path, help="YAML file of trial config keys")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoint and TensorBoard folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--data-root", help="dataset root (default: $AETUNE_DATA or ~/.cache/aetune/data)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    for field in dataclasses.fields(TrialConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name in ("hidden_layers", "filters"):
            parser.add_argument(flag, type=int, nargs="*", default=None)
        elif field.name == "amp":
            parser.add_argument(flag, action="store_true", default=None,
                                help="bf16 autocast (CUDA; CPUs with bf16 units)")
        else:
            kind = {"float": float, "int": int, "int | None": int}.get(str(field.type), str)  # Literal: str
            parser.add_argument(flag, type=kind, default=None)
    return parser


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yamlfile.load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        raise UsageError(f"cannot read config {path}: {reason}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config {path} must be a mapping of trial config keys")
    return values


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    values = _read_yaml(args.config) if args.config else {}
    values |= {k: v for k, v in vars(args).items() if k in fields and v is not None}
    try:
        config = TrialConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{args.config or 'flags'}: {err}") from None
    checkpoint = args.out / CHECKPOINT_FILE
    _check_out(args.out, checkpoint, args.resume)
    bundle = load_checkpoint(checkpoint) if args.resume else None  # before the data: a bad checkpoint fails fast
    trainer = trainer_for(config, args.data_root, download=not args.no_download, device=pick_device(args.device))
    if bundle:
        trainer.load_state_dict(bundle)
    return _train(trainer, args.out, checkpoint)


def _check_out(out: Path, checkpoint: Path, resume: bool) -> None:
    """Never train over another run's checkpoint; --resume needs one."""
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--out {out}: {blocked} is a file; pass a folder for the checkpoint and TensorBoard files")
    if resume and not checkpoint.exists():
        raise CheckpointError(f"--resume: {checkpoint} does not exist; train without --resume first "
                              "(or pass the --out folder of the run to continue)")
    if not resume and checkpoint.exists():
        raise UsageError(f"{out} already holds a run ({checkpoint}); continue it with --resume, "
                         "or pass another --out (nothing is overwritten)")


def _train(trainer: Trainer, out: Path, checkpoint: Path) -> int:
    from aetune.train.logger import TrialLogger  # tensorboard only when logging

    config = trainer.config
    with TrialLogger(out, config, trainer.data.val_x[:8], start_epoch=trainer.epoch) as logger:
        while trainer.epoch < config.epochs:
            metrics = trainer.run_epoch()
            logger.log_epoch(metrics, trainer.model)
            print("  ".join(f"{k}={v:.5g}" for k, v in metrics.items()), flush=True)
            if not is_finite(metrics):
                logger.close("failure")
                print("aetune: training diverged (non-finite loss); lower lr", file=sys.stderr)
                return 1
            trainer.save(checkpoint)
    print(f"checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
