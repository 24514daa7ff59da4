"""Evaluation figures from plain tensors and arrays: no models, no files (aetune.evaluate decides what to show).

Figures are bare matplotlib `Figure`s rendered by Agg (no pyplot: no global figure registry to leak or lock),
WIDTH inches wide at DPI, so every PNG is WIDTH * DPI pixels wide and its height follows its content.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from aetune.images import PADDING, tile

WIDTH, DPI = 10.0, 100
LABEL_WIDTH = 1.8  # inches kept for row labels in image-row figures
Point = tuple[float, float]


def new_figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def grid_image(images: torch.Tensor, nrow: int, padding: int = PADDING) -> np.ndarray:
    """N x C x H x W in [0, 1] -> one H' x W' (grey) or H' x W' x 3 array for imshow, white between tiles."""
    grid = tile(images, nrow, padding)
    return grid[0].numpy() if len(grid) == 1 else grid.permute(1, 2, 0).numpy()


def _show(ax, image: np.ndarray, **kwargs) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", **kwargs)


def image_rows(rows: Sequence[tuple[str, torch.Tensor]], title: str,
               column_labels: Sequence[str] | None = None) -> Figure:
    """One labelled strip of images per row (reconstructions, generation, interpolation). Placed by hand:
    image strips have a fixed aspect, which automatic layouts resolve by clipping the row labels."""
    columns = max(len(images) for _, images in rows)
    _, _, h, w = rows[0][1].shape
    strip_width = WIDTH - LABEL_WIDTH - 0.15
    strip_height = strip_width * (h + 4) / (columns * (w + 2) + 2)
    top, gap = 0.45 + (0.25 if column_labels else 0), 0.1
    height = top + len(rows) * (strip_height + gap)
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
    for i, (label, images) in enumerate(rows):
        bottom = height - top - (i + 1) * strip_height - i * gap
        ax = fig.add_axes((LABEL_WIDTH / WIDTH, bottom / height, strip_width / WIDTH, strip_height / height))
        _show(ax, grid_image(images, nrow=columns), aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        if i == 0 and column_labels:
            ax.xaxis.tick_top()
            ax.set_xticks([2 + (w + 2) * j + w / 2 for j in range(len(column_labels))], column_labels, fontsize=8)
    return fig


def manifold(images: torch.Tensor, x_values: Sequence[float], y_values: Sequence[float], x_label: str,
             y_label: str, title: str) -> Figure:
    """n x n decoded images; images are row-major with the top row at the largest y value."""
    n = len(x_values)
    fig = new_figure(WIDTH)
    fig.suptitle(title)
    ax = fig.subplots()
    _show(ax, grid_image(images, nrow=n, padding=0), extent=(0, n, 0, n))
    step = 1 if n <= 10 else 2
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks + 0.5, [f"{x_values[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks + 0.5, [f"{y_values[i]:.2f}" for i in ticks])
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    return fig


def latent_scatter(points: np.ndarray, labels: np.ndarray | None, x_label: str, y_label: str, title: str) -> Figure:
    """2-D codes coloured by class, one legend entry per class; one colour and no legend without labels."""
    fig = new_figure(7.5)
    ax = fig.subplots()
    colours = [f"C{i}" for i in range(10)]
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=5, alpha=0.6, color="C0", rasterized=True)
    for i, label in enumerate(np.unique(labels) if labels is not None else []):
        mask = labels == label
        ax.scatter(points[mask, 0], points[mask, 1], s=5, alpha=0.6, color=colours[i % 10], label=str(label),
                   rasterized=True)
    if labels is not None:
        ax.legend(title="label", markerscale=3, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel=x_label, ylabel=y_label, title=title)
    ax.grid(alpha=0.3)
    return fig


def anomalies(errors: np.ndarray, threshold: float, top_images: torch.Tensor, top_recons: torch.Tensor,
              top_labels: Sequence[str], title: str) -> Figure:
    """Histogram of per-image MSE with the threshold, and the worst-reconstructed images above their outputs."""
    flagged = int((errors > threshold).sum())
    fig = new_figure(7.0)
    fig.suptitle(title)
    hist_ax, original_ax, recon_ax = fig.subplots(3, 1, height_ratios=[3.5, 1, 1])
    hist_ax.hist(errors, bins=80, color="C0", log=True)
    hist_ax.axvline(threshold, color="C3", linestyle="--", label=f"threshold 2 x mean = {threshold:.4f}")
    hist_ax.set(xlabel="per-image reconstruction MSE", ylabel="test images (log)",
                title=f"{flagged} of {len(errors)} flagged ({100 * flagged / len(errors):.1f}%)")
    hist_ax.legend()
    w = top_images.shape[-1]
    for ax, images, label in ((original_ax, top_images, "worst inputs"), (recon_ax, top_recons, "reconstructions")):
        _show(ax, grid_image(images, nrow=len(images)))
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    original_ax.xaxis.tick_top()
    original_ax.set_xticks([2 + (w + 2) * i + w / 2 for i in range(len(top_labels))], top_labels, fontsize=8)
    return fig


def code_density(activations: dict[str, np.ndarray], unit_means: dict[str, np.ndarray], title: str) -> Figure:
    """Left: density of code activation values; right: each code unit's mean activation, sorted."""
    fig = new_figure(4.5)
    fig.suptitle(title)
    hist_ax, unit_ax = fig.subplots(1, 2)
    top = max(float(a.max()) for a in activations.values()) or 1.0
    bins = np.linspace(0, top, 60)
    for name, values in activations.items():
        zero = 100 * float((values <= 1e-6).mean())
        label = f"{name}: mean {values.mean():.3f}, {zero:.0f}% zero"
        line = hist_ax.hist(values, bins=bins, density=True, histtype="step", log=True, linewidth=1.5, label=label)
        hist_ax.axvline(values.mean(), color=line[2][0].get_edgecolor(), linestyle="--")
        unit_ax.plot(np.sort(unit_means[name])[::-1], marker=".", label=name)
    hist_ax.set(xlabel="activation value (dashed: mean)", ylabel="density (log)")
    hist_ax.legend(fontsize=8)
    unit_ax.set(xlabel="code unit, by mean activation", ylabel="mean activation over test images")
    unit_ax.legend(fontsize=8)
    return fig


def training_curves(histories: dict[str, list[dict[str, float]]], splits: dict[str, str] | None = None) -> Figure:
    """Train and validation loss per epoch, one panel per variant (objectives differ in scale); `splits`: the
    split each variant validated on, when not "validation" (val_size 0: the test split)."""
    columns = min(3, len(histories))
    rows = -(-len(histories) // columns)
    fig = new_figure(3.2 * rows)
    fig.suptitle("Training curves of each variant's best trial (own objective)")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, history) in zip(axes, histories.items()):
        epochs = [h["epoch"] for h in history]
        for key, label in (("train_loss", "train"), ("val_loss", (splits or {}).get(name, "validation"))):
            ax.plot(epochs, [h[key] for h in history], marker="o", label=label)
        ax.set(title=name, xlabel="epoch", ylabel="loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(histories):]:
        ax.set_visible(False)
    return fig


def code_size_tradeoff(series: Sequence[dict], pca: Sequence[Point], title: str,
                       split: str = "validation") -> Figure:
    """Reconstruction against code size. Each series (a variant, its sweep members together) has `label`,
    `trials` and `stopped` (every trial's point; stopped early: hollow), `envelope` (its best at each size, a line)
    and `picks` (its picked models' test scores: diamonds); `pca` is one dashed black line, scored on the same
    `split` as the trials."""
    fig = new_figure(5.5)
    ax = fig.subplots()
    for i, s in enumerate(series):
        colour = f"C{i % 10}"
        if s["trials"]:
            ax.scatter(*zip(*s["trials"]), s=18, color=colour, alpha=0.45, linewidths=0)
        if s["stopped"]:
            ax.scatter(*zip(*s["stopped"]), s=18, facecolors="none", edgecolors=colour, alpha=0.6)
        if s["envelope"]:
            ax.plot(*zip(*s["envelope"]), color=colour, marker=".",
                    label=f"{s['label']}: best trial per size ({split})")
        if s["picks"]:
            ax.scatter(*zip(*s["picks"]), s=70, marker="D", color=colour, edgecolors="black", zorder=3)
    if pca:
        ax.plot(*zip(*pca), color="black", linestyle="--", marker="x", label=f"PCA, same size ({split})")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="grey", marker="o", linestyle="", alpha=0.5),
                Line2D([], [], color="grey", marker="o", linestyle="", markerfacecolor="none"),
                Line2D([], [], color="grey", marker="D", linestyle="", markeredgecolor="black")]
    labels += [f"a trial ({split})", f"a trial stopped early ({split})", "picked model (test)"]
    ax.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xscale("log", base=2)
    sizes = sorted({x for s in series for x, _ in s["trials"] + s["stopped"]})
    ax.set_xticks(sizes, [str(int(x)) for x in sizes])
    ax.minorticks_off()
    ax.set(xlabel="code size (numbers per image, log scale)", ylabel="reconstruction BCE per pixel", title=title)
    ax.grid(alpha=0.3)
    return fig


def pareto_front(trials: Sequence[Point], front: Sequence[Point], labels: Sequence[str], pick: Point | None,
                 front_test: Sequence[Point], x_label: str, y_label: str, title: str,
                 split: str = "validation") -> Figure:
    """Every trial in grey, the front highlighted and connected in the given order, each member labelled, the pick
    starred, all scored on `split` (what the search read); `front_test`: the same members re-scored on the test split
    (hollow, dashed), where measurable."""
    fig = new_figure(5.5)
    ax = fig.subplots()
    if trials:
        ax.scatter(*zip(*trials), s=20, color="0.7", label=f"every trial ({split})")
    ax.plot(*zip(*front), color="C3", marker="o", label=f"Pareto front ({split})")
    for (x, y), label in zip(front, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if front_test:
        ax.plot(*zip(*front_test), color="C0", marker="o", markerfacecolor="none", linestyle="--",
                label="front members, test split")
    if pick is not None:
        ax.scatter(*pick, s=250, marker="*", color="gold", edgecolors="black", zorder=3, label=f"picked ({split})")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel=x_label, ylabel=y_label, title=title)
    ax.grid(alpha=0.3)
    return fig
