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


KEY_HELP = {  # the keys whose default says too little on its own
    "hidden_layers": "dense layer sizes, e.g. 128 64 (default: none, the shallow autoencoder)",
    "code_size": "numbers in the code of the dense, vae, lstm and conv_vae families (default: 32)",
    "filters": "conv layer widths; the code is the last feature map (default: 16 8 8)",
    "noise_factor": "> 0 trains a denoising autoencoder on inputs corrupted at this noise (default: 0)",
    "l1": "> 0 makes the code sparse (L1 activity penalty) (default: 0)",
    "beta": "weight of the KL term of the VAE families (default: 1)",
    "train_size": "training images in use, the first N of the split (default: all)",
    "val_size": "of those, held out to validate on (default: 10%%; 0 validates on the test split)",
    "test_size": "test images aetune.evaluate reads; training never reads the test split (default: all)",
    "eval_noise": "the noise val_denoise_bce corrupts validation inputs with (default: 0.5)",
    "image_size": "resize every image to SIZE x SIZE, or to height x width given two (default: as stored)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aetune.train",
        description="Train one autoencoder config (no search). Flags override --config; with --resume, the "
                    "checkpoint's config is the start and flags change only what they name.",
        epilog="examples:\n  python -m aetune.train --model conv --filters 16 8 8 --epochs 5 --out runs/conv\n"
               "  python -m aetune.train --out runs/conv --resume --epochs 10   # 5 more epochs, same config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML file of trial config keys")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoint and TensorBoard folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt with its config; --epochs N trains on to epoch N")
    parser.add_argument("--data-root", help="dataset root (default: $AETUNE_DATA or ~/.cache/aetune/data)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    config = parser.add_argument_group("trial config keys (README: configuration reference)")
    for field in dataclasses.fields(TrialConfig):
        flag = "--" + field.name.replace("_", "-")
        about = KEY_HELP.get(field.name, f"default: {field.default}")
        if field.name in ("hidden_layers", "filters"):
            config.add_argument(flag, type=int, nargs="*", default=None, help=about)
        elif field.name == "image_size":  # one size (square) or height and width
            config.add_argument(flag, type=int, nargs="+", metavar="SIZE", default=None, help=about)
        elif field.name == "amp":
            config.add_argument(flag, action="store_true", default=None,
                                help="bf16 autocast (CUDA; CPUs with bf16 units)")
        else:
            kind = {"float": float, "int": int, "int | None": int}.get(str(field.type), str)  # Literal: str
            config.add_argument(flag, type=kind, default=None, help=about)
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
    checkpoint = args.out / CHECKPOINT_FILE
    _check_out(args.out, checkpoint, args.resume)
    bundle = load_checkpoint(checkpoint) if args.resume else None  # before the data: a bad checkpoint fails fast
    config = _config(args, bundle, checkpoint)
    trainer = trainer_for(config, args.data_root, download=not args.no_download, device=pick_device(args.device))
    if bundle:
        trainer.load_state_dict(bundle)
    return _train(trainer, args.out, checkpoint)


# What a run trains and validates on: a resumed run keeps them, whatever the flags say.
DATA_AND_SPLIT = ("dataset", "channels", "image_size", "layout", "train_size", "val_size", "val_split", "test_size",
                  "seed")


def _config(args: argparse.Namespace, bundle: dict[str, Any] | None, checkpoint: Path) -> TrialConfig:
    """The flags over --config; on --resume, both over the checkpoint's own config, so only what they name
    changes (a change the weights cannot take is refused by Trainer.load_state_dict). --epochs extends a run."""
    fields = {f.name for f in dataclasses.fields(TrialConfig)}
    named = _read_yaml(args.config) if args.config else {}
    named |= {k: v for k, v in vars(args).items() if k in fields and v is not None}
    try:
        config = TrialConfig.from_dict({**(bundle["config"] if bundle else {}), **named})
    except ConfigError as err:
        raise ConfigError(f"{args.config or 'flags'}: {err}") from None
    saved = TrialConfig.from_dict(bundle["config"]).to_dict() if bundle else {}  # compared as coerced: 32 is [32, 32]
    changed = sorted(k for k in DATA_AND_SPLIT if bundle and k in named and config.to_dict()[k] != saved[k])
    if changed:  # another split would move validation images into training mid-run (or train on other images)
        key = changed[0]
        raise UsageError(f"--{key.replace('_', '-')}: {checkpoint} was trained with {key}={saved[key]!r}; a resumed "
                         "run keeps its data and split (drop the flag, or train a new run with another --out)")
    trained = int(bundle["epoch"]) if bundle else 0
    if bundle and config.epochs <= trained:
        given = f"--epochs {config.epochs}: " if "epochs" in named else ""
        raise UsageError(f"{given}{checkpoint} has trained {trained} epochs already; pass --epochs with more "
                         f"(e.g. --epochs {trained + 5}) to train on")
    return config


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
