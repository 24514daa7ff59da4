"""What a learned autoencoder has to beat, and the per-image scores every reconstruction is judged by.

- mean image: every input reconstructed as the training mean (all a code of size 0 can say);
- PCA with k components: the best squared error any *linear* k-dimensional code can reach (a linear autoencoder
  trained with MSE spans this subspace). Fitted exactly, in float64, on the images the trials trained on (never
  their validation images), so it is deterministic (torch.pca_lowrank is randomised); the tests check it against
  numpy's SVD of the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aetune.models.base import pixel_bce


@dataclass(frozen=True)
class PCA:
    mean: torch.Tensor  # D
    components: torch.Tensor  # k x D, orthonormal rows, by decreasing variance
    explained: torch.Tensor  # k: fraction of the total variance along each component

    @classmethod
    def fit(cls, x: torch.Tensor, k: int | None = None) -> "PCA":
        """x: N x ... (flattened to N x D); keeps min(k, N, D) components (all of them when k is None)."""
        x = x.flatten(1).double()
        mean = x.mean(0)
        centred = x - mean
        # Eigenvectors of the D x D scatter matrix are the right singular vectors of the data: one GEMM and a
        # 784 x 784 eigh take a third of the time of an SVD of 10k x 784; float64 keeps the squared condition
        # number harmless. With fewer images than pixels (a small or large-image dataset) the N x N Gram matrix
        # is the smaller one: its eigenvectors U give the same components as centred.T @ U / sqrt(variance).
        if len(centred) < centred.shape[1]:
            gram, left = torch.linalg.eigh(centred @ centred.T)
            gram, left = gram.flip(0).clamp(min=0), left.flip(1)
            keep = gram > gram[0] * 1e-12  # the others span nothing (at most N - 1 components exist)
            variance, vectors = gram[keep], (centred.T @ left[:, keep]) / gram[keep].sqrt()
        else:
            variance, vectors = torch.linalg.eigh(centred.T @ centred)
            variance, vectors = variance.flip(0).clamp(min=0), vectors.flip(1)
        total = variance.sum()  # the same in both: the trace of the scatter matrix
        return cls(mean.float(), vectors.T[:k].float().contiguous(), (variance[:k] / total).float())

    def top(self, k: int) -> "PCA":
        """The first k components: one fit serves every code size."""
        return PCA(self.mean, self.components[:k], self.explained[:k])

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components.T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection onto the principal subspace (unclipped), in x's shape."""
        return (self.transform(x) @ self.components + self.mean).view_as(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The projection clipped to the pixel range, so it is an image like any decoder's output."""
        return self.project(x).clamp(0.0, 1.0)


def pca_components(code_numel: int, pixels: int) -> int:
    """PCA rank matched to a code: its own size, so every code with a bottleneck (fewer numbers than the image's
    C x H x W) is compared with a linear code of exactly its size. A code with at least as many numbers as the
    image (a conv feature map can: 32 x 7 x 7 = 1568 > 784) has no bottleneck and is not ranked; its PCA is capped
    at the image's numbers, where it is exact."""
    return max(1, min(code_numel, pixels))


def image_bce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean BCE of probabilities (baselines: no logits), clipped like Keras."""
    return pixel_bce(probs, target, linear_head=True).flatten(1).mean(1)


def image_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (recon - target).pow(2).flatten(1).mean(1)


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for pixels in [0, 1], from the split's mean MSE."""
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def summarise(bce: torch.Tensor, mse: torch.Tensor, prefix: str = "test_") -> dict[str, float]:
    """Means over images of per-image scores, plus the PSNR of the mean MSE; keys say the split (test_bce...)."""
    mean_mse = float(mse.mean())
    return {f"{prefix}bce": float(bce.mean()), f"{prefix}mse": mean_mse, f"{prefix}psnr": psnr(mean_mse)}


def score(reconstruct, images: torch.Tensor, inputs: torch.Tensor | None = None, prefix: str = "test_",
          batch: int = 4096) -> dict[str, float]:
    """Scores of a reconstruction function (float inputs in, images in [0, 1] out) against float images; the
    inputs are the images themselves unless given (e.g. their noisy copies, to score denoising)."""
    bce, mse = [], []
    for clean, given in zip(images.split(batch), (images if inputs is None else inputs).split(batch)):
        recon = reconstruct(given)
        bce.append(image_bce(recon, clean))
        mse.append(image_mse(recon, clean))
    return summarise(torch.cat(bce), torch.cat(mse), prefix)


def mean_image(train: torch.Tensor) -> torch.Tensor:
    """The training mean, C x H x W."""
    return train.mean(0)
