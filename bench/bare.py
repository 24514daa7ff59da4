"""The one bare training loop the benchmarks hold aetune against: a minimal hand-written PyTorch loop doing the
Trainer's work without the Trainer. Per epoch: one gather of the uint8 images by a permutation, then batches sliced
from it, moved to the device, converted to float on the fly (and corrupted, for a denoiser), Adam on
model.objective's loss. Optionally in channels_last memory format (conv models), or reading pinned host memory."""
from __future__ import annotations

import torch

from aetune.models import build_model
from aetune.train.data import add_noise, to_float


class BareLoop:
    def __init__(self, config: dict, images: torch.Tensor, device: str = "cpu", channels_last: bool = False,
                 pin: bool = False):
        """config: trial config keys (model keys, batch_size, lr, noise_factor, seed); images: uint8 (N, C, H, W),
        on the device they are read from (the model's, or the host with pin=True: page-locked, non-blocking
        copies)."""
        torch.manual_seed(config.get("seed", 0))
        self.device = torch.device(device)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(config, tuple(images.shape[1:])).to(self.device, memory_format=self.layout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.get("lr", 1e-3))
        self.images, self.pin = images, pin
        self.batch_size, self.noise = config.get("batch_size", 256), config.get("noise_factor", 0.0)
        self.order = torch.Generator(images.device).manual_seed(config.get("seed", 0))
        self.noise_generator = torch.Generator(self.device).manual_seed(config.get("seed", 0))

    def epoch(self) -> float:
        """One epoch; returns the last batch's loss (which waits for the device)."""
        self.model.train()
        shuffled = self.images[torch.randperm(len(self.images), generator=self.order, device=self.images.device)]
        if self.pin:
            shuffled = shuffled.pin_memory()
        for i in range(0, len(shuffled), self.batch_size):
            batch = shuffled[i:i + self.batch_size].to(self.device, non_blocking=True)
            clean = to_float(batch).contiguous(memory_format=self.layout)
            inputs = add_noise(clean, self.noise, self.noise_generator) if self.noise else clean
            loss = self.model.objective(inputs, clean).loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return loss.item()
