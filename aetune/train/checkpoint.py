"""Checkpoint bundles: weights, optimizer, config, epoch, history and RNG state — written atomically,
read with weights_only=True so a checkpoint file can never run code."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from aetune.config import TrialConfig
from aetune.errors import UsageError, first_line
from aetune.models import build_model
from aetune.models.base import Autoencoder
from aetune.storage import write_bytes

FORMAT_VERSION = 2  # 2: three splits (val_* on held-out training images), new config keys
CHECKPOINT_FILE = "checkpoint.pt"
REQUIRED_KEYS = ("format_version", "config", "input_shape", "model", "epoch")


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated, unsafe or does not fit its config; the message names the file."""


def save_checkpoint(bundle: dict[str, Any], path: str | os.PathLike) -> Path:
    """Serialise in memory, then write atomically (experiment.write_bytes): a crash never leaves half a
    checkpoint, and a full disk is an OSError naming the file, not torch's opaque writer error."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **bundle}, buffer)
    write_bytes(str(path), buffer.getbuffer())
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (runs/<name>/summary.json lists them)")
    try:
        bundle = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"checkpoint {path} was refused: it holds pickled objects beyond tensors and plain "
                              f"values, which could run code ({_refusal(err)}); "
                              "only load checkpoints written by aetune") from None
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}); "
                              "rerun the trial or pick another checkpoint") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(bundle, dict) or k not in bundle]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not an aetune checkpoint (missing {', '.join(missing)})")
    if bundle["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {bundle['format_version']!r}; this aetune reads "
                              f"version {FORMAT_VERSION}; use the aetune release that wrote it, or rerun the trial")
    return bundle


def model_from_checkpoint(bundle: dict[str, Any], path: str | os.PathLike = "checkpoint") -> Autoencoder:
    """Rebuild the model from the config stored beside its weights; a mismatch is a clear error."""
    try:
        model = build_model(TrialConfig.from_dict(bundle["config"]), tuple(bundle["input_shape"]))
        model.load_state_dict(bundle["model"])
    except (UsageError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: its config does not match its weights "
                              f"({first_line(err, limit=160)})") from None
    return model.eval()


def _refusal(err: Exception) -> str:
    """What torch's weights_only unpickler refused ("Unsupported global: GLOBAL os.system ..."), without its
    multi-line advice to load the file unsafely."""
    for line in str(err).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". ")[0].strip()[:160]
    return first_line(err, limit=120)
