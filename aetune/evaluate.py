"""python -m aetune.evaluate runs/<name>: each variant's best checkpoint -> metrics, figures and one report.

Reads runs/<name>/summary.json, loads every best checkpoint with weights_only=True (a checkpoint never runs code),
scores it on the test split beside PCA and mean-image baselines, draws what each model learned (aetune.plots) and
writes runs/<name>/eval/: leaderboard.csv, metrics.json, figures/*.png, report.html (self-contained) and
tensorboard/ (the same figures, shown by `tensorboard --logdir runs/<name>`). A variant whose checkpoint is missing,
truncated, unsafe or does not fit its config is skipped and the report says why; with none left it exits 2.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import re
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from aetune import plots
from aetune.baselines import PCA, PCA_FIT_IMAGES, image_bce_logits, image_mse, mean_image, pca_components, psnr, \
    score, summarise
from aetune.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from aetune.config import TrialConfig
from aetune.data import ImageData, add_noise, load_data, to_float
from aetune.errors import UsageError, cli
from aetune.experiment import EVAL_DIR, Summary, VariantResult, is_uri
from aetune.models import Autoencoder
from aetune.train import EVAL_BATCH, default_device

SHOW, TOP, STEPS, GRID, SCATTER = 10, 12, 9, 15, 5000  # strip width, anomalies, interpolation steps, manifold n, points
LEADERBOARD = ["rank", "name", "kind", "dataset", "model", "code", "epoch", "objective", "bce", "mse", "psnr",
               "bce_noisy", "mse_noisy", "psnr_noisy", "psnr_noisy_input", "code_l1", "flagged", "search_val_bce"]


@dataclass
class Variant:
    """One usable best checkpoint, and what its pass over the test split found."""

    name: str
    result: VariantResult
    config: TrialConfig
    model: Autoencoder
    bundle: dict[str, Any]
    device: torch.device = torch.device("cpu")
    metrics: dict[str, float] = field(default_factory=dict)
    codes: torch.Tensor | None = None  # N x code elements: deterministic codes of the clean test images
    code_shape: tuple[int, ...] = ()
    errors: torch.Tensor | None = None  # N: per-image MSE of the clean reconstruction


@dataclass
class Artifact:
    """A rendered figure: PNG bytes for the file, the report and TensorBoard alike."""

    group: str  # the variant it shows, or "" for figures across variants
    name: str
    title: str
    caption: str
    png: bytes


# --- loading ---------------------------------------------------------------------------------------------------

def select(summary: Summary, wanted: list[str] | None) -> list[str]:
    unknown = [n for n in wanted or [] if n not in summary.variants]
    if unknown:
        raise UsageError(f"unknown variant {unknown[0]!r}; {summary.name} has: {', '.join(summary.variants)}")
    return list(wanted or summary.variants)


def no_trial_reason(result: VariantResult) -> str:
    errors = "; ".join(e.get("error_file", e.get("trial_id", "?")) for e in result.errored[:3])
    return (f"no finished trial ({result.trials} run, {len(result.errored)} errored, {len(result.diverged)} "
            f"diverged)" + (f"; errors in {errors}" if errors else ""))


def load_variants(experiment: Path, summary: Summary, names: list[str]) -> tuple[list[Variant], dict[str, str]]:
    """Every loadable best checkpoint; the others with the reason (CheckpointError names file and fix)."""
    variants, skipped = [], {}
    for name in names:
        result = summary.variants[name]
        if result.checkpoint is None:
            skipped[name] = no_trial_reason(result)
            continue
        path = experiment / result.checkpoint
        try:
            bundle = load_checkpoint(path)
            model = model_from_checkpoint(bundle, path)
        except CheckpointError as err:
            skipped[name] = str(err)
            continue
        variants.append(Variant(name, result, TrialConfig.from_dict(bundle["config"]), model, bundle))
    return variants, skipped


# --- scoring ---------------------------------------------------------------------------------------------------

@torch.inference_mode()
def test_pass(variant: Variant, test_x: torch.Tensor, device: torch.device) -> None:
    """Own objective, clean (and noisy) reconstruction scores, codes and per-image errors, in big batches."""
    variant.device = device
    cfg, model = variant.config, variant.model.to(device)
    noise = torch.Generator(device).manual_seed(cfg.seed + 1)  # the trainer's validation noise: same numbers
    parts, objective = defaultdict(list), 0.0
    for chunk in test_x.split(EVAL_BATCH):
        clean = to_float(chunk.to(device))
        out = own = model.objective(clean, clean)
        if cfg.noise_factor:
            noisy = add_noise(clean, cfg.noise_factor, noise)
            own = model.objective(noisy, clean)
            parts["bce_noisy"].append(image_bce_logits(own.logits, clean))
            parts["mse_noisy"].append(image_mse(own.recon, clean))
            parts["input_mse"].append(image_mse(noisy, clean))
        objective += float(own.loss) * len(clean)
        parts["bce"].append(image_bce_logits(out.logits, clean))
        parts["mse"].append(image_mse(out.recon, clean))
        parts["codes"].append(out.code.flatten(1))
    cat = {key: torch.cat(values).float().cpu() for key, values in parts.items()}
    variant.codes, variant.errors, variant.code_shape = cat["codes"], cat["mse"], tuple(out.code.shape[1:])
    metrics = {"objective": objective / len(test_x), **summarise(cat["bce"], cat["mse"])}
    if cfg.noise_factor:
        metrics |= summarise(cat["bce_noisy"], cat["mse_noisy"], "_noisy")
        metrics["psnr_noisy_input"] = psnr(float(cat["input_mse"].mean()))
    metrics["code_l1"] = float(variant.codes.abs().mean())
    metrics["flagged"] = int((variant.errors > 2 * variant.errors.mean()).sum())
    variant.metrics = metrics


def variant_row(v: Variant) -> dict[str, Any]:
    return {"name": v.name, "kind": "model", "dataset": v.config.dataset, "model": v.config.model,
            "code": v.codes.shape[1], "epoch": v.bundle["epoch"], **v.metrics,
            "search_val_bce": v.result.metrics.get("val_bce")}


def baseline_rows(variants: list[Variant], data: dict[str, ImageData]) -> list[dict[str, Any]]:
    """Mean image and one PCA per distinct rank, per dataset; one fit per dataset serves every rank."""
    rows = []
    for name, images in data.items():
        train, test = to_float(images.train_x), to_float(images.test_x)
        pixels = train[0].numel()
        mean, pca = mean_image(train), PCA.fit(train)
        rows.append({"name": "mean-image", "kind": "baseline", "dataset": name, "model": "mean", "code": 0,
                     **score(lambda x: mean.expand_as(x), test)})
        for k in sorted({pca_components(v.codes.shape[1], pixels) for v in variants if v.config.dataset == name}):
            rows.append({"name": f"pca-{k}", "kind": "baseline", "dataset": name, "model": "pca", "code": k,
                         **score(pca.top(k).reconstruct, test)})
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first by per-pixel BCE of clean inputs: the one score every variant and baseline shares."""
    rows = sorted(rows, key=lambda r: r["bce"])
    return [{"rank": i, **row} for i, row in enumerate(rows, 1)]


# --- figures ---------------------------------------------------------------------------------------------------

def render(group: str, name: str, title: str, caption: str, fig) -> Artifact:
    return Artifact(group, f"{name}_{slug(group)}" if group else name, title, caption, plots.to_png(fig))


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def showcase(labels: torch.Tensor) -> torch.Tensor:
    """Index of the first test image of each class (up to SHOW): the same digits in every figure."""
    return torch.stack([(labels == c).nonzero()[0, 0] for c in labels.unique()[:SHOW]])


@torch.inference_mode()
def reconstruction_figure(v: Variant, clean: torch.Tensor) -> Artifact:
    rows, inputs = [("original", clean)], clean
    if v.config.noise_factor:
        inputs = add_noise(clean, v.config.noise_factor, torch.Generator(clean.device).manual_seed(v.config.seed))
        rows.append((f"noisy input\n(noise {v.config.noise_factor:g})", inputs))
    rows.append(("reconstruction", v.model(inputs)))
    fig = plots.image_rows(rows, f"{v.name}: reconstructions of test digits")
    what = "noisy inputs and the reconstructions of the noisy inputs" if v.config.noise_factor else "reconstructions"
    return render(v.name, "recon", f"Reconstructions: {v.name}",
                  f"Test digits (one per class), {what}; test BCE {v.metrics['bce']:.4f}, "
                  f"PSNR {v.metrics['psnr']:.1f} dB.", fig)


@torch.inference_mode()
def manifold_figure(v: Variant) -> Artifact:
    """Decoded n x n grid over N(0, 1) quantiles of two latent dimensions (the prior's own scale)."""
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, GRID))
    if v.config.code_size == 2:
        dims, base, how = (0, 1), torch.zeros(2), "the 2-D latent space"
    else:
        dims = tuple(int(d) for d in v.codes.var(0).topk(2).indices)
        base = v.codes.mean(0)
        how = (f"latent dims {dims[0]} and {dims[1]} (highest variance of the test codes); the other "
               f"{v.config.code_size - 2} dims held at their test mean")
    z = base.repeat(GRID * GRID, 1)
    z[:, dims[0]] = quantiles.repeat(GRID)  # columns: x rises left to right
    z[:, dims[1]] = quantiles.flip(0).repeat_interleave(GRID)  # rows: the top row has the largest y
    images = v.model.decode(z.to(v.device))
    fig = plots.manifold(images, quantiles.tolist(), quantiles.tolist(), f"z[{dims[0]}]", f"z[{dims[1]}]",
                         f"{v.name}: decoded latent manifold")
    return render(v.name, "manifold", f"Latent manifold: {v.name}",
                  f"Decoder outputs on a {GRID}x{GRID} grid at the 5%..95% quantiles of N(0,1) over {how}.", fig)


def scatter_figure(v: Variant, labels: torch.Tensor) -> Artifact:
    codes, labels = v.codes[:SCATTER], labels[:SCATTER].numpy()
    if codes.shape[1] == 2:
        points, axes, how = codes, ("z[0]", "z[1]"), "the 2-D codes themselves"
    else:
        pca = PCA.fit(codes, 2)
        points = pca.transform(codes)
        axes = tuple(f"PC{i + 1} ({100 * float(pca.explained[i]):.0f}% of code variance)" for i in range(2))
        how = f"the first two principal components of the {codes.shape[1]}-element codes"
    fig = plots.latent_scatter(points.numpy(), labels, *axes, f"{v.name}: test codes by label")
    return render(v.name, "scatter", f"Latent scatter: {v.name}",
                  f"{len(codes)} test codes, {how}, coloured by label.", fig)


@torch.inference_mode()
def generation_figure(variants: list[Variant]) -> Artifact:
    """VAE prior samples beside plain autoencoders decoding random codes from their test codes' range."""
    rows, gen = [], torch.Generator().manual_seed(0)
    for v in variants:
        if v.config.model == "vae":
            z, label = torch.randn(SHOW, v.config.code_size, generator=gen), f"{v.name}\nz ~ N(0, I)"
        else:
            low, high = v.codes.min(0).values, v.codes.max(0).values
            z = (low + (high - low) * torch.rand(SHOW, len(low), generator=gen)).view(SHOW, *v.code_shape)
            label = f"{v.name}\nuniform in code box"
        rows.append((label, v.model.decode(z.to(v.device))))
    has_vae = any(v.config.model == "vae" for v in variants)
    fig = plots.image_rows(rows, "Decoding random codes: " + ("only the VAE is a generative model" if has_vae
                                                              else "a plain autoencoder is not a generative model"))
    return render("", "generation", "Generation",
                  "VAE rows decode samples of its N(0, I) prior, which training pulled the codes towards (the KL "
                  "term), so most samples look like digits. Plain autoencoders decode codes drawn uniformly from "
                  "the box spanned by their test codes: nothing made their codes fill that box, most of it lies "
                  "off the thin set real digits occupy, so they decode to blurs - they compress, they don't generate.",
                  fig)


def interpolation_pairs(labels: torch.Tensor) -> list[tuple[int, int]]:
    shown = showcase(labels).tolist()
    half = len(shown) // 2
    return [(shown[i], shown[i + half]) for i in range(min(4, half))]  # MNIST: 0-5, 1-6, 2-7, 3-8


@torch.inference_mode()
def interpolation_figure(v: Variant, test: ImageData, pairs: list[tuple[int, int]]) -> Artifact:
    t = torch.linspace(0, 1, STEPS, device=v.device)
    rows = []
    for a, b in pairs:
        ends = to_float(test.test_x[[a, b]].to(v.device))
        codes = v.model.embed(ends)
        path = torch.lerp(codes[:1], codes[1:], t.view(-1, *[1] * (codes.dim() - 1)))
        rows.append((f"{int(test.test_y[a])} to {int(test.test_y[b])}",
                     torch.cat([ends[:1], v.model.decode(path), ends[1:]])))
    columns = ["input A", *(f"t={x:.2f}" for x in t.tolist()), "input B"]
    fig = plots.image_rows(rows, f"{v.name}: straight lines in code space", columns)
    return render(v.name, "interpolation", f"Interpolation: {v.name}",
                  f"Decoded codes on the line between the codes of two test digits (ends shown beside), "
                  f"{STEPS} steps.", fig)


@torch.inference_mode()
def anomaly_figure(v: Variant, test: ImageData) -> Artifact:
    threshold = 2 * float(v.errors.mean())
    worst = v.errors.topk(TOP).indices
    images = to_float(test.test_x[worst].to(v.device))
    tops = [f"{int(test.test_y[i])}: {float(v.errors[i]):.3f}" for i in worst]
    fig = plots.anomalies(v.errors.numpy(), threshold, images, v.model(images), tops,
                          f"{v.name}: reconstruction error as an anomaly score")
    flagged = v.metrics["flagged"]
    return render(v.name, "anomalies", f"Anomaly detection: {v.name}",
                  f"Per-image MSE of the test set; images above 2 x the mean ({threshold:.4f}) are flagged: "
                  f"{flagged} of {len(v.errors)}. Below: the {TOP} worst, labelled 'class: MSE'.", fig)


def sparsity_figure(variants: list[Variant]) -> Artifact | None:
    """Sparse codes (l1 > 0) against one unregularised dense code, preferring a clean one of the same size."""
    sparse = [v for v in variants if v.config.l1 > 0]
    dense = [v for v in variants if v.config.model == "dense" and v.config.l1 == 0]
    if not sparse or not dense:
        return None
    size = sparse[0].config.code_size
    reference = min(dense, key=lambda v: (v.config.noise_factor > 0, v.config.code_size != size))
    shown = [*sparse, reference]
    fig = plots.code_density({v.name: v.codes.numpy().ravel() for v in shown},
                             {v.name: v.codes.mean(0).numpy() for v in shown},
                             "Code activations: L1-regularised against unregularised")
    means = ", ".join(f"{v.name} {v.metrics['code_l1']:.3f}" for v in shown)
    return render("", "sparsity", "Code sparsity", f"Density of code activations over the test set and each unit's "
                  f"mean activation; mean |code|: {means}.", fig)


def curves_figure(variants: list[Variant]) -> Artifact | None:
    histories = {v.name: v.bundle.get("history") or [] for v in variants}
    histories = {name: h for name, h in histories.items() if h}
    if not histories:
        return None
    return render("", "training_curves", "Training curves", "Train and validation loss (each variant's own objective) "
                  "per epoch of the best trial, up to the evaluated checkpoint.", plots.training_curves(histories))


def figures(variants: list[Variant], data: dict[str, ImageData]) -> Iterator[Artifact]:
    """Which figures exist follows from the variants: a manifold per VAE, sparsity only beside a dense AE..."""
    for v in variants:
        test = data[v.config.dataset]
        yield reconstruction_figure(v, to_float(test.test_x[showcase(test.test_y)].to(v.device)))
        if v.config.model == "vae":
            yield manifold_figure(v)
        yield scatter_figure(v, test.test_y)
        yield interpolation_figure(v, test, interpolation_pairs(test.test_y))
        yield anomaly_figure(v, test)
    yield generation_figure(variants)
    for optional in (sparsity_figure(variants), curves_figure(variants)):
        if optional is not None:
            yield optional


# --- outputs ---------------------------------------------------------------------------------------------------

def write_tables(out: Path, rows: list[dict[str, Any]], document: dict[str, Any]) -> None:
    with open(out / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, LEADERBOARD, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "metrics.json").write_text(json.dumps(document, indent=2))


def write_figures(out: Path, artifacts: list[Artifact]) -> None:
    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.png"):  # figures of variants no longer evaluated
        stale.unlink()
    for artifact in artifacts:
        (folder / f"{artifact.name}.png").write_bytes(artifact.png)


def write_tensorboard(logdir: Path, artifacts: list[Artifact]) -> None:
    """The PNGs themselves (not a re-render), as one `eval` run; a rerun replaces it instead of adding a copy."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(logdir, ignore_errors=True)
    with SummaryWriter(str(logdir)) as writer:
        for artifact in artifacts:
            image = np.asarray(Image.open(io.BytesIO(artifact.png)).convert("RGB"))
            writer.add_image(f"eval/{artifact.name}", image, 0, dataformats="HWC")
            writer.add_text(f"eval/{artifact.name}", artifact.caption, 0)


def metrics_document(summary: Summary, experiment: Path, rows, variants: list[Variant], skipped: dict[str, str],
                     artifacts: list[Artifact]) -> dict[str, Any]:
    return {
        "experiment": summary.name, "experiment_dir": str(experiment), "ranked_by": "bce",
        "test_images": {v.name: len(v.errors) for v in variants},
        "leaderboard": rows,
        "variants": {v.name: {"config": v.config.to_dict(), "checkpoint": v.result.checkpoint,
                              "epoch": v.bundle["epoch"], "metrics": v.metrics} for v in variants},
        "skipped": skipped,
        "figures": [{"file": f"figures/{a.name}.png", "title": a.title, "caption": a.caption} for a in artifacts],
    }


# --- report.html -----------------------------------------------------------------------------------------------

CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;font-size:90%;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
       "td{text-align:right}td:first-child,th:first-child{text-align:left}tr.baseline{color:#777;font-style:italic}"
       "figure{margin:2.5em 0}img{max-width:100%}figcaption{color:#444}")
COLUMNS = {"rank": "#", "name": "variant", "model": "model", "code": "code size", "epoch": "epoch",
           "objective": "own objective", "bce": "BCE", "mse": "MSE", "psnr": "PSNR (dB)", "bce_noisy": "BCE noisy",
           "mse_noisy": "MSE noisy", "psnr_noisy": "PSNR noisy", "psnr_noisy_input": "PSNR of noisy input",
           "flagged": "anomalies"}
NOTES = ("Scores on the test split. BCE and MSE: per-pixel means over each image, then over images, of the "
         "reconstruction of <em>clean</em> inputs (comparable across variants; the ranking uses BCE). PSNR: "
         "10 log10(1 / MSE) of the mean MSE. 'noisy': denoising variants fed noisy inputs, scored against the clean "
         "images. Own objective: each variant's training loss (the VAE's is per-image summed BCE + KL, so not "
         "comparable). Baselines: the training mean image, and PCA fitted on the first {fit} training images with as "
         "many components as the code has numbers (conv feature-map codes capped at a quarter of the pixels, where a "
         "PCA of the code's size would be near exact). Anomalies: test images with MSE above 2 x the mean.")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f'<tr class="{c}">' + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row, c in zip(rows, classes or [""] * len(rows)))
    return f"<table><tr>{head}</tr>{body}</table>"


def leaderboard_html(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in COLUMNS if any(r.get(k) is not None for r in rows)]
    return table([COLUMNS[k] for k in keys], [[r.get(k) for k in keys] for r in rows], [r["kind"] for r in rows])


UNUSED = {"dense": {"filters"}, "vae": {"filters", "l1"}, "conv": {"hidden_layers", "code_size"}}


def configs_html(variants: list[Variant]) -> str:
    """Config keys down, variants across; keys a model ignores show as a dash, not as a misleading default."""
    configs = [(v.config.to_dict(), UNUSED[v.config.model]) for v in variants]
    rows = [[key, *("-" if key in unused else c[key] for c, unused in configs)] for key in configs[0][0]]
    rows += [["trials run", *(v.result.trials for v in variants)],
             ["trials errored", *(len(v.result.errored) for v in variants)],
             ["trials diverged", *(len(v.result.diverged) for v in variants)],
             ["checkpoint", *(v.result.checkpoint for v in variants)]]
    return table(["key", *(v.name for v in variants)], rows)


def figure_html(artifact: Artifact) -> str:
    data = base64.b64encode(artifact.png).decode("ascii")
    return (f'<figure><img alt="{html.escape(artifact.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{html.escape(artifact.title)}.</b> {html.escape(artifact.caption)}</figcaption></figure>")


def figures_html(artifacts: list[Artifact]) -> str:
    parts, group = [], None
    for artifact in artifacts:
        if artifact.group != group:
            group = artifact.group
            parts.append(f"<h3>{html.escape(group or 'Across variants')}</h3>")
        parts.append(figure_html(artifact))
    return "".join(parts)


def write_report(path: Path, summary: Summary, rows: list[dict[str, Any]], variants: list[Variant],
                 skipped: dict[str, str], artifacts: list[Artifact]) -> None:
    """One self-contained page: the figures are embedded, so it can be mailed or archived alone."""
    skips = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>" for n, why in skipped.items())
    title = f"aetune evaluation: {html.escape(summary.name)}"
    path.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head><body>'
        f"<h1>{title}</h1><p>{len(variants)} variants evaluated on {len(variants[0].errors)} test images of "
        f"{html.escape(variants[0].config.dataset)}; best first.</p>"
        f"<h2>Leaderboard</h2>{leaderboard_html(rows)}<p>{NOTES.format(fit=PCA_FIT_IMAGES)}</p>"
        f"<h2>Best config per variant</h2>{configs_html(variants)}"
        f"<h2>Figures</h2>{figures_html(artifacts)}"
        f"<h2>Skipped variants</h2>{f'<ul>{skips}</ul>' if skips else '<p>None: every variant was evaluated.</p>'}"
        "</body></html>")


# --- command line ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aetune.evaluate", description=__doc__.splitlines()[0],
                                     epilog="example: python -m aetune.evaluate runs/quick --variants dense vae")
    parser.add_argument("experiment", help="the runs/<name> folder that `python -m aetune.search` wrote")
    parser.add_argument("--out", type=Path, help="output folder (default: <experiment>/eval); its figures/ and "
                        "tensorboard/ are replaced")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="evaluate only these variants")
    parser.add_argument("--data-root", help="dataset root (default: $AETUNE_DATA or ~/.cache/aetune/data)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    parser.add_argument("--test-size", type=int, help="evaluate on the first N test images (default: all)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    return parser


def load_test_data(variants: list[Variant], args, skipped: dict[str, str]) -> tuple[list[Variant], dict]:
    """Each dataset once (the PCA's training slice and the test split); a checkpoint for other images is skipped."""
    data = {name: load_data(name, args.data_root, PCA_FIT_IMAGES, args.test_size, not args.no_download)
            for name in sorted({v.config.dataset for v in variants})}
    usable = []
    for v in variants:
        shape, expected = tuple(v.bundle["input_shape"]), data[v.config.dataset].shape
        if shape != expected:
            skipped[v.name] = f"trained on images of shape {shape}, but {v.config.dataset} has {expected}"
        else:
            usable.append(v)
    return usable, data


def pick_device(name: str | None) -> torch.device:
    try:
        device = torch.device(name) if name else default_device()
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is visible; use --device cpu")
    return device


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.test_size is not None and args.test_size <= 0:
        raise UsageError(f"--test-size must be > 0, got {args.test_size}")
    if is_uri(args.experiment):
        raise UsageError(f"{args.experiment}: evaluate reads checkpoints from a local folder; copy the experiment "
                         "first (e.g. `aws s3 sync` / `gsutil -m rsync -r`) and pass that folder")
    args.experiment = Path(args.experiment)
    summary = Summary.read(args.experiment)
    variants, skipped = load_variants(args.experiment, summary, select(summary, args.variants))
    if variants:
        variants, data = load_test_data(variants, args, skipped)
    if not variants:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items()) or "summary.json lists no variants"
        raise UsageError(f"nothing to evaluate in {args.experiment}: {reasons}")
    device = pick_device(args.device)
    for v in variants:
        test_pass(v, data[v.config.dataset].test_x, device)
    rows = rank([variant_row(v) for v in variants] + baseline_rows(variants, data))
    artifacts = list(figures(variants, data))
    out = args.out or args.experiment / EVAL_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out, rows, metrics_document(summary, args.experiment, rows, variants, skipped, artifacts))
    write_figures(out, artifacts)
    write_report(out / "report.html", summary, rows, variants, skipped, artifacts)
    write_tensorboard(out / "tensorboard", artifacts)
    for row in rows:
        print(f"{row['rank']:>3}. {row['name']:<20} bce={row['bce']:.4f}  mse={row['mse']:.4f}  psnr={row['psnr']:.1f}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    print(f"report: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
