"""One trial: a model, its optimizer and the dataset resident on one device; an epoch loop that returns metrics."""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from aetune.config import TrialConfig
from aetune.errors import UsageError, first_line
from aetune.models import build_model
from aetune.models.base import Autoencoder
from aetune.train.checkpoint import CheckpointError, save_checkpoint
from aetune.train.data import ImageData, add_noise, to_float, trial_data

EVAL_BATCH = 2048
EVAL_NOISE_SEED = 0  # val_denoise_bce's corruption: one draw, the same inputs for every trial and epoch
EVAL_LATENT_SEED = 1  # a sampling family's val_loss: one code draw per image, the same for every trial and epoch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(name: str | None) -> torch.device:
    """--device as a torch.device that exists here; a bad name is a UsageError, not torch's traceback."""
    try:
        device = torch.device(name) if name else default_device()
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is visible; use --device cpu")
    return device


def is_finite(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())


class Trainer:
    """Trains one config; seedable, deterministic on CPU, and resumable from its own state_dict."""

    def __init__(self, config: TrialConfig, data: ImageData, device: torch.device | str | None = None,
                 channels_last: bool = True):
        self.config = config
        self.device = torch.device(device) if device else default_device()
        # Images and conv weights in NHWC: oneDNN's fast conv path on CPUs, tensor cores on GPUs (with the conv
        # layers' own changes, conv epochs take about half the NCHW trainer's time here: BENCHMARKS.md; the same
        # numbers to float rounding; a dense model does not notice).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(config.seed)  # model init and VAE sampling
        self.model = build_model(config, data.shape).to(self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.data = data.to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)  # batch order and noise
        # Drawn on the CPU so every trial scores the same corrupted inputs, whatever its device or seed.
        clean_val = to_float(data.val_x)
        self.val_noisy = add_noise(clean_val, config.eval_noise, torch.Generator().manual_seed(EVAL_NOISE_SEED)
                                   ).to(self.device, memory_format=self.memory_format)
        self.val_latent = latent_draw(self.model, len(data.val_x), self.device)
        self.params = self.model.trainable_params
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self._sanity_check()

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on any device when amp is set: on CPUs with bf16 units (AVX512-BF16, AMX) it is faster
        too (conv [16, 8, 8]: 1.65x on an AMD EPYC, same val_bce); without them it may be slower."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp)

    def _sanity_check(self) -> None:
        """One forward pass before any training, so a bad architecture fails here with its likely causes."""
        batch = to_float(self.data.val_x[:2])
        latent = None if self.val_latent is None else self.val_latent[:2]  # a fresh draw would move the RNG
        try:
            with torch.no_grad():
                self.model.eval()
                out = self.model.objective(batch, batch, latent)
        except RuntimeError as err:
            raise UsageError(f"{self.config.model} model cannot run on {self.config.dataset} images of shape "
                             f"{tuple(batch.shape[1:])}: {first_line(err)}; check filters/hidden_layers/"
                             "code_size against the input size") from None
        if out.logits.shape != batch.shape:
            raise UsageError(f"{self.config.model} model reconstructs {tuple(out.logits.shape[1:])} from "
                             f"{tuple(batch.shape[1:])}; check filters against the input size")

    def train_epoch(self) -> dict[str, float]:
        cfg, model, optimizer = self.config, self.model, self.optimizer
        model.train()
        start = time.perf_counter()
        n = len(self.data.train_x)
        # One gather per epoch; each batch is then a view of the shuffled copy.
        shuffled = self.data.train_x[torch.randperm(n, device=self.device, generator=self.generator)].contiguous(
            memory_format=self.memory_format)
        total = torch.zeros((), device=self.device)
        for i in range(0, n, cfg.batch_size):
            clean = to_float(shuffled[i:i + cfg.batch_size])
            inputs = add_noise(clean, cfg.noise_factor, self.generator) if cfg.noise_factor else clean
            with self._autocast():
                loss = model.objective(inputs, clean).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(clean)  # stays on the device: no sync per step
        train_loss = total.item() / n
        return {"train_loss": train_loss, "samples_per_s": n / (time.perf_counter() - start)}

    @torch.inference_mode()
    def evaluate(self) -> dict[str, float]:
        """Metrics on the validation split (never the test split, unless val_size 0 made them one):
        val_loss   the variant's own objective (a denoiser's inputs corrupted at its own noise_factor; a VAE's
                   codes sampled with one fixed draw per image: its negative ELBO, nats per image),
        val_bce, val_mse   clean reconstruction, comparable across variants,
        val_denoise_bce    clean images recovered from inputs corrupted at eval_noise, the same for every trial,
        code_l1, code_size, params, and the family's extra metrics (the VAE's kl)."""
        cfg, model = self.config, self.model
        model.eval()
        noise = torch.Generator(self.device).manual_seed(cfg.seed + 1)  # own-noise inputs: the same every epoch
        sums = dict.fromkeys(["val_loss", "val_bce", "val_mse", "val_denoise_bce", "code_l1", *model.extra_metrics],
                             0.0)
        n, pixels, code_numel = len(self.data.val_x), 0, 0
        for clean, out, own, denoised in scored_batches(
                model, self.data.val_x, self.val_noisy, self.val_latent, cfg.noise_factor, noise,
                lambda chunk: to_float(chunk.contiguous(memory_format=self.memory_format)), self._autocast):
            sums["val_loss"] += own.loss.float() * len(clean)
            sums["val_bce"] += out.pixel_bce(clean).float().sum()
            sums["val_mse"] += out.pixel_mse(clean).float().sum()
            sums["val_denoise_bce"] += denoised.pixel_bce(clean).float().sum()
            sums["code_l1"] += out.code.float().abs().sum()
            for key in model.extra_metrics:
                sums[key] += out.extras[key].float() * len(clean)
            pixels += clean.numel()
            code_numel += out.code.numel()
        per = {"val_loss": n, "val_bce": pixels, "val_mse": pixels, "val_denoise_bce": pixels, "code_l1": code_numel}
        per |= dict.fromkeys(model.extra_metrics, n)
        return {**{key: float(sums[key]) / per[key] for key in sums}, "code_size": code_numel // n,
                "params": self.params}

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, evaluate, and append the metrics to the history."""
        train = self.train_epoch()
        metrics = {"epoch": self.epoch + 1, **train, **self.evaluate()}
        self.epoch += 1
        self.history.append(metrics)
        return metrics

    @property
    def best_val_loss(self) -> float:
        finite = [h["val_loss"] for h in self.history if math.isfinite(h["val_loss"])]
        return min(finite, default=math.inf)

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "input_shape": list(self.data.shape),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "history": self.history,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "generator": self.generator.get_state(),
            },
        }

    def load_state_dict(self, bundle: dict[str, Any]) -> None:
        """Restore a bundle written by state_dict() for the same config (`epochs` may differ: train on)."""
        ours, theirs = self.config.to_dict(), {**bundle["config"], "epochs": self.config.epochs}
        changed = sorted(k for k in ours if ours[k] != theirs.get(k))
        if changed:
            key = changed[0]
            raise CheckpointError(f"checkpoint was trained with {key}={theirs.get(key)!r}, not {ours[key]!r}; "
                                  "resume with the same config or start a new run")
        self.model.load_state_dict(bundle["model"])
        self.optimizer.load_state_dict(bundle["optimizer"])
        self.epoch = int(bundle["epoch"])
        self.history = list(bundle["history"])
        rng = bundle["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(rng["generator"])

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(self.state_dict(), path)


def latent_draw(model: Autoencoder, n: int, device: torch.device) -> torch.Tensor | None:
    """The model's latent noise for n evaluation images, drawn on the CPU from EVAL_LATENT_SEED: the same codes'
    noise whatever the trial's device, seed or epoch (None for a deterministic code)."""
    noise = model.latent_noise(n, torch.Generator().manual_seed(EVAL_LATENT_SEED))
    return None if noise is None else noise.to(device)


def scored_batches(model: Autoencoder, images: torch.Tensor, noisy: torch.Tensor, latent: torch.Tensor | None,
                   noise_factor: float, noise: torch.Generator, prepare: Callable[[torch.Tensor], torch.Tensor],
                   autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                   ) -> Iterator[tuple]:
    """The passes every validation and test score is read from, EVAL_BATCH images at a time: (clean images, their
    reconstruction, the model's own objective (inputs noised at noise_factor by `noise`), the reconstruction of the
    fixed noisy inputs), each with the batch's fixed latent draw. `prepare`: uint8 images to the model's floats."""
    for chunk, noisy_chunk, draw in zip(images.split(EVAL_BATCH), noisy.split(EVAL_BATCH), chunks(latent, EVAL_BATCH)):
        clean = prepare(chunk)
        with autocast():
            out = model.objective(clean, clean, draw)
            own = model.objective(add_noise(clean, noise_factor, noise), clean, draw) if noise_factor else out
            denoised = model.objective(noisy_chunk.to(clean.device), clean, draw)
        yield clean, out, own, denoised


def chunks(tensor: torch.Tensor | None, size: int) -> Iterable[torch.Tensor | None]:
    """tensor.split(size), or endless Nones for no tensor (zip stops at the images' last chunk)."""
    return tensor.split(size) if tensor is not None else itertools.repeat(None)


def trainer_for(config: TrialConfig, data_root: str | None = None, download: bool = True,
                device: torch.device | str | None = None) -> Trainer:
    """Load (or reuse) the config's dataset and build its Trainer."""
    return Trainer(config, trial_data(config, data_root, download), device)
