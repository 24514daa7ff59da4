"""TensorBoard for one trial: metric scalars under readable tags, reconstruction grids, and the HParams entry."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.api_pb2 import STATUS_FAILURE, STATUS_SUCCESS
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from aetune.config import TrialConfig
from aetune.images import tile_rows, to_uint8
from aetune.train.data import add_noise, to_float

# Every metric once, under one tag; the HParams dashboard reads the same tags (no duplicate "hparams/" copies).
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "val_bce": "reconstruction/val_bce",
    "val_mse": "reconstruction/val_mse",
    "val_denoise_bce": "reconstruction/val_denoise_bce",
    "code_l1": "code/mean_abs",
    "samples_per_s": "speed/samples_per_s",
}
# A family whose loss sums over each image's pixels (the VAE's negative ELBO, in nats per image) charts it under
# its own tags: TensorBoard draws one tag of every run in one chart, and nats beside a per-pixel BCE squash both.
PER_IMAGE_LOSS_TAGS = {"train_loss": "loss_per_image/train", "val_loss": "loss_per_image/val"}
CODE_NUMBERS = "code_numbers"  # an HParams column: the numbers in one image's code, whatever the family


def scalar_tags(per_image_loss: bool) -> dict[str, str]:
    return {**SCALAR_TAGS, **PER_IMAGE_LOSS_TAGS} if per_image_loss else SCALAR_TAGS


def extra_tag(metric: str) -> str:
    """Where a family's own metric (Autoencoder.extra_metrics, e.g. the VAE's kl) goes."""
    return f"extra/{metric}"


HPARAM_METRICS = ("val_loss", "val_bce", "val_denoise_bce")
IMAGE_TAG = "reconstructions"
SESSION_STATUS = {"success": STATUS_SUCCESS, "failure": STATUS_FAILURE}


def family_keys(config: TrialConfig) -> dict[str, object]:
    """The trial's config keys but the architecture keys its family does not read (the registry's config_keys):
    a conv trial has no code_size or beta of its own, only their defaults."""
    from aetune.models import families

    unused = {key for cls in families().values() for key in cls.config_keys} - set(family_of(config).config_keys)
    return {key: value for key, value in config.to_dict().items() if key not in unused}


def family_of(config: TrialConfig):
    from aetune.models import family

    return family(config.model)


def hparam_values(config: TrialConfig, code_numbers: int | None = None) -> dict[str, int | float | str | bool]:
    """The family's config keys as HParams values (lists become '128-64' strings, None becomes 'all'), and the
    code's real size (numbers per image) as its own column."""
    out: dict[str, int | float | str | bool] = {} if code_numbers is None else {CODE_NUMBERS: code_numbers}
    for key, value in family_keys(config).items():
        if isinstance(value, list):
            value = "-".join(map(str, value)) or "none"
        out[key] = ("native" if key in ("channels", "image_size") else "all") if value is None else value
    return out


class TrialLogger:
    """Writes one TensorBoard run (the trial's folder). Images of 8 fixed validation images every `image_every` epochs.

    `start_epoch` is the last epoch the trial's restore point has (0: a fresh start). Epochs after it may have
    been logged before a crash; the writer's purge step hides them from TensorBoard, so the epochs logged again
    appear once, not twice.
    """

    def __init__(self, logdir: str | Path, config: TrialConfig, digits: torch.Tensor, start_epoch: int = 0,
                 image_every: int = 5):
        self.config = config
        self.image_every = image_every
        self.writer = SummaryWriter(str(logdir), purge_step=start_epoch + 1)
        self.digits = to_float(digits.cpu())
        # Fixed noise, so the noisy row is the same picture at every epoch.
        noise = torch.Generator().manual_seed(config.seed)
        self.noisy = add_noise(self.digits, config.noise_factor, noise) if config.noise_factor else None
        self.tags = scalar_tags(family_of(config).loss_per_image)
        if not start_epoch:  # a restored trial wrote its HParams entry before (one without a restore point may
            # write it again: the same values, harmless)
            metrics = {self.tags[m]: 0.0 for m in HPARAM_METRICS}
            values = hparam_values(config, code_numbers(config, tuple(digits.shape[1:])))
            experiment, start, _ = hparams(values, metrics)
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(start)

    def log_epoch(self, metrics: dict[str, float], model: torch.nn.Module, images: bool = True) -> None:
        """`images=False`: the scalars of an epoch whose model is gone (told again from a checkpoint's history)."""
        epoch = int(metrics["epoch"])
        tags = {**self.tags, **{key: extra_tag(key) for key in getattr(model, "extra_metrics", ())}}
        for key, tag in tags.items():
            if key in metrics:
                self.writer.add_scalar(tag, metrics[key], epoch)
        if images and (epoch == 1 or epoch % self.image_every == 0 or epoch == self.config.epochs):
            self.writer.add_image(IMAGE_TAG, self.reconstruction_grid(model), epoch)
        self.writer.flush()

    @torch.inference_mode()
    def reconstruction_grid(self, model: torch.nn.Module) -> torch.Tensor:
        """Rows: input, noisy input (denoising only), reconstruction."""
        model.eval()
        device = next(model.parameters()).device
        inputs = self.noisy if self.noisy is not None else self.digits
        output = model(inputs.to(device)).float().cpu()
        rows = [self.digits] + ([self.noisy] if self.noisy is not None else []) + [output]
        return to_uint8(tile_rows(rows))

    def close(self, status: str | None = "success") -> None:
        """End the HParams session as "success" or "failure"; None leaves it open (the run may be resumed)."""
        if status is not None:
            self.writer.file_writer.add_summary(session_end(SESSION_STATUS[status]))
        self.writer.close()

    def __enter__(self) -> "TrialLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A crash or Ctrl-C is retried or resumed: leave the session open rather than end it as a failure that the
        # finished retry could not overwrite (readers keep the first end status they see).
        if self.writer.file_writer is not None:
            self.close("success" if exc_type is None else None)


def code_numbers(config: TrialConfig, input_shape: tuple[int, ...]) -> int:
    """How many numbers one image's code has (a conv code is its last feature map: [16, 16] on 28 x 28 is 784)."""
    from aetune.models import build_model

    return math.prod(build_model(config, input_shape).code_shape)


def session_end(status: int) -> Summary:
    """The HParams session-end summary (tensorboard's own session_end_pb needs TensorFlow)."""
    data = HParamsPluginData(session_end_info=SessionEndInfo(status=status))
    return Summary(value=[Summary.Value(tag=hparams_metadata.SESSION_END_INFO_TAG,
                                        metadata=hparams_metadata.create_summary_metadata(data))])
