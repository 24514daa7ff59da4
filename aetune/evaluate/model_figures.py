"""The evaluation's figures: what each best model learned, drawn from its pass over the test split."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from aetune.evaluate import plots, study
from aetune.evaluate.baselines import PCA
from aetune.images import grid_png, tile_rows
from aetune.train.data import ImageData, to_float

if TYPE_CHECKING:
    from aetune.evaluate.scoring import EvalImages, Variant

SHOW, TOP, STEPS, GRID, SCATTER = 10, 12, 9, 15, 5000  # strip width, anomalies, interpolation steps, manifold n, points


@dataclass
class Artifact:
    """A rendered figure: PNG bytes for the file, the report and TensorBoard alike."""

    group: str  # the variant it shows, or "" for figures across variants
    name: str
    title: str
    caption: str
    png: bytes
    section: str = "figures"  # where the report shows it: "figures", or "study" (what the study found)
    pixels: bytes | None = None  # a figure of images: those images tiled at their own size and colour

    @property
    def file(self) -> str:
        """Where the evaluation writes it, relative to its output folder."""
        return f"figures/{self.name}.png"

    @property
    def pixels_file(self) -> str | None:
        return f"figures/pixels/{self.name}.png" if self.pixels is not None else None


# --- figures ---------------------------------------------------------------------------------------------------

def render(group: str, name: str, title: str, caption: str, fig, section: str = "figures",
           tiles: Sequence[torch.Tensor] = ()) -> Artifact:
    """The figure as PNG; `tiles`, the rows of images it shows, also as one PNG at the data's own pixels."""
    return Artifact(group, f"{name}_{slug(group)}" if group else name, title, caption, plots.to_png(fig), section,
                    grid_png(tile_rows(tiles)) if tiles else None)


def render_rows(group: str, name: str, title: str, caption: str, rows: Sequence[tuple[str, torch.Tensor]],
                heading: str, columns: Sequence[str] | None = None, section: str = "figures") -> Artifact:
    """A figure of labelled rows of images (plots.image_rows), and the same rows at their own pixels."""
    return render(group, name, title, caption, plots.image_rows(rows, heading, columns), section,
                  tiles=[images for _, images in rows])


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def showcase(test: ImageData) -> torch.Tensor:
    """Index of the first test image of each class (up to SHOW), or of the first SHOW test images without labels:
    the same images in every figure."""
    labels = test.test_y
    if labels is None:
        return torch.arange(min(SHOW, len(test.test_x)))
    return torch.stack([(labels == c).nonzero()[0, 0] for c in labels.unique()[:SHOW]])


def tag(test: ImageData, i: int) -> str:
    """How a figure names test image i: its label, or its index when the dataset has no labels."""
    return str(int(test.test_y[i])) if test.test_y is not None else f"#{i}"


@torch.inference_mode()
def reconstruction_figure(v: Variant, images: EvalImages, shown: torch.Tensor) -> Artifact:
    """Showcase images and their reconstructions; a denoiser's from the study's noisy test inputs."""
    clean = to_float(images.data.test_x[shown].to(v.device))
    rows, m = [("original", clean)], v.metrics
    if v.config.noise_factor:
        noisy = images.noisy[shown].to(v.device)
        rows += [(f"noisy input\n(noise {images.eval_noise:.2g})", noisy), ("reconstruction", v.model(noisy))]
        what = (f"the same images corrupted at the study's eval_noise {images.eval_noise:.2g} "
                f"({images.noisy_input_psnr:.1f} dB) and their reconstructions; on the test split from noisy "
                f"inputs BCE {m['test_denoise_bce']:.4f}, PSNR {m['test_denoise_psnr']:.1f} dB, from clean inputs "
                f"BCE {m['test_bce']:.4f}, PSNR {m['test_psnr']:.1f} dB")
    else:
        rows.append(("reconstruction", v.model(clean)))
        what = f"their reconstructions; on the test split BCE {m['test_bce']:.4f}, PSNR {m['test_psnr']:.1f} dB"
    which = "one per class" if images.data.labelled else "the first ones: the dataset has no labels"
    return render_rows(v.name, "recon", f"Reconstructions: {v.name}", f"Test images ({which}), {what}.", rows,
                       f"{v.name}: reconstructions of test images")


@torch.inference_mode()
def manifold_figure(v: Variant) -> Artifact:
    """Decoded n x n grid over N(0, 1) quantiles of two latent dimensions (the prior's own scale)."""
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, GRID))
    if v.code_shape == (2,):
        dims, base, how = (0, 1), torch.zeros(2), "the 2-D latent space"
    else:
        dims = tuple(int(d) for d in v.codes.var(0).topk(2).indices)
        base = v.codes.mean(0)
        how = (f"latent dims {dims[0]} and {dims[1]} (highest variance of the test codes); the other "
               f"{v.code_shape[0] - 2} dims held at their test mean")
    z = base.repeat(GRID * GRID, 1)
    z[:, dims[0]] = quantiles.repeat(GRID)  # columns: x rises left to right
    z[:, dims[1]] = quantiles.flip(0).repeat_interleave(GRID)  # rows: the top row has the largest y
    images = v.model.decode(z.to(v.device))
    fig = plots.manifold(images, quantiles.tolist(), quantiles.tolist(), f"z[{dims[0]}]", f"z[{dims[1]}]",
                         f"{v.name}: decoded latent manifold")
    return render(v.name, "manifold", f"Latent manifold: {v.name}",
                  f"Decoder outputs on a {GRID}x{GRID} grid at the 5%..95% quantiles of N(0,1) over {how}.", fig,
                  tiles=list(images.split(GRID)))


def scatter_figure(v: Variant, labels: torch.Tensor | None) -> Artifact:
    """Codes in 2-D, coloured by class; in one colour when the dataset has no labels (and the caption says so)."""
    codes = v.codes[:SCATTER]
    labels = None if labels is None else labels[:SCATTER].numpy()
    if codes.shape[1] == 2:
        points, axes, how = codes, ("z[0]", "z[1]"), "the 2-D codes themselves"
    else:
        pca = PCA.fit(codes, 2)
        points = pca.transform(codes)
        axes = tuple(f"PC{i + 1} ({100 * float(pca.explained[i]):.0f}% of code variance)" for i in range(2))
        how = f"the first two principal components of the {codes.shape[1]}-element codes"
    by = "by label" if labels is not None else "(no labels)"
    fig = plots.latent_scatter(points.numpy(), labels, *axes, f"{v.name}: test codes {by}")
    coloured = "coloured by label" if labels is not None else "in one colour: the dataset has no labels"
    return render(v.name, "scatter", f"Latent scatter: {v.name}", f"{len(codes)} test codes, {how}, {coloured}.",
                  fig)


@torch.inference_mode()
def generation_figure(variants: list[Variant]) -> Artifact:
    """VAE prior samples beside plain autoencoders decoding random codes from their test codes' range."""
    rows, gen = [], torch.Generator().manual_seed(0)
    for v in variants:
        if v.model.generative:
            z, label = torch.randn(SHOW, *v.code_shape, generator=gen), f"{v.name}\nz ~ N(0, I)"
        else:
            low, high = v.codes.min(0).values, v.codes.max(0).values
            z = (low + (high - low) * torch.rand(SHOW, len(low), generator=gen)).view(SHOW, *v.code_shape)
            label = f"{v.name}\nuniform in code box"
        rows.append((label, v.model.decode(z.to(v.device))))
    generative = [v.name for v in variants if v.model.generative]
    heading = "Decoding random codes: " + (f"only {', '.join(generative)} sample a prior" if generative
                                           else "a plain autoencoder is not a generative model")
    return render_rows("", "generation", "Generation",
                       "VAE rows decode samples of its N(0, I) prior, which training pulled the codes towards (the "
                       "KL term), so most samples look like the data. Plain autoencoders decode codes drawn uniformly "
                       "from the box spanned by their test codes: nothing made their codes fill that box, most of it "
                       "lies off the thin set real images occupy, so they decode to blurs - they compress, they don't "
                       "generate.", rows, heading)


def interpolation_pairs(test: ImageData) -> list[tuple[int, int]]:
    shown = showcase(test).tolist()
    half = len(shown) // 2
    return [(shown[i], shown[i + half]) for i in range(min(4, half))]  # MNIST: 0-5, 1-6, 2-7, 3-8


@torch.inference_mode()
def interpolation_figure(v: Variant, test: ImageData, pairs: list[tuple[int, int]]) -> Artifact:
    t = torch.linspace(0, 1, STEPS, device=v.device)
    rows = []
    for a, b in pairs:
        ends = to_float(test.test_x[[a, b]].to(v.device))
        codes = v.model.encode(ends)
        path = torch.lerp(codes[:1], codes[1:], t.view(-1, *[1] * (codes.dim() - 1)))
        rows.append((f"{tag(test, a)} to {tag(test, b)}",
                     torch.cat([ends[:1], v.model.decode(path), ends[1:]])))
    columns = ["input A", *(f"t={x:.2f}" for x in t.tolist()), "input B"]
    return render_rows(v.name, "interpolation", f"Interpolation: {v.name}",
                       f"Decoded codes on the line between the codes of two test images (ends shown beside), "
                       f"{STEPS} steps.", rows, f"{v.name}: straight lines in code space", columns)


@torch.inference_mode()
def anomaly_figure(v: Variant, test: ImageData) -> Artifact:
    threshold = 2 * float(v.errors.mean())
    worst = v.errors.topk(TOP).indices
    images = to_float(test.test_x[worst].to(v.device))
    tops = [f"{tag(test, i)}: {float(v.errors[i]):.3f}" for i in worst]
    recons = v.model(images)
    fig = plots.anomalies(v.errors.numpy(), threshold, images, recons, tops,
                          f"{v.name}: reconstruction error as an anomaly score")
    flagged = v.metrics["test_flagged"]
    return render(v.name, "anomalies", f"Anomaly detection: {v.name}",
                  f"Per-image MSE of the test set; images above 2 x the mean ({threshold:.4f}) are flagged: "
                  f"{flagged} of {len(v.errors)}. Below: the {TOP} worst, labelled "
                  f"'{'class' if test.test_y is not None else '#index'}: MSE'.", fig, tiles=[images, recons])


def sparsity_figure(variants: list[Variant]) -> Artifact | None:
    """Sparse codes (l1 > 0) against one unregularised dense code, preferring a clean one of the same size."""
    sparse = [v for v in variants if v.config.l1 > 0]
    dense = [v for v in variants if "l1" in v.model.config_keys and v.config.l1 == 0 and len(v.code_shape) == 1]
    if not sparse or not dense:
        return None
    size = sparse[0].config.code_size
    reference = min(dense, key=lambda v: (v.config.noise_factor > 0, v.config.code_size != size))
    shown = [*sparse, reference]
    fig = plots.code_density({v.name: v.codes.numpy().ravel() for v in shown},
                             {v.name: v.codes.mean(0).numpy() for v in shown},
                             "Code activations: L1-regularised against unregularised")
    means = ", ".join(f"{v.name} {v.metrics['test_code_l1']:.3f}" for v in shown)
    return render("", "sparsity", "Code sparsity", f"Density of code activations over the test set and each unit's "
                  f"mean activation; mean |code|: {means}.", fig)


def curves_figure(variants: list[Variant]) -> Artifact | None:
    histories = {v.name: v.bundle.get("history") or [] for v in variants}
    histories = {name: h for name, h in histories.items() if h}
    if not histories:
        return None
    splits = {v.name: study.selection_split([v.record]) for v in variants}
    on_test = [name for name in histories if splits[name] == "test"]
    return render("", "training_curves", "Training curves", "Train and validation loss (each variant's own objective) "
                  "per epoch of the best trial, up to the evaluated checkpoint"
                  + (f"; {', '.join(on_test)} validated on the test split (val_size: 0)" if on_test else "") + ".",
                  plots.training_curves(histories, splits))


def figures(variants: list[Variant], images: dict[str, EvalImages]) -> Iterator[Artifact]:
    """Which figures exist follows from the picks: a manifold per generative model, sparsity beside a dense AE..."""
    for v in variants:
        test = images[v.config.dataset].data
        yield reconstruction_figure(v, images[v.config.dataset], showcase(test))
        if v.model.generative and len(v.code_shape) == 1:
            yield manifold_figure(v)
        yield scatter_figure(v, test.test_y)
        yield interpolation_figure(v, test, interpolation_pairs(test))
        yield anomaly_figure(v, test)
    if variants:
        yield generation_figure(variants)
    for optional in (sparsity_figure(variants), curves_figure(variants)):
        if optional is not None:
            yield optional
