"""python -m aetune.evaluate runs/<name>: each variant's best checkpoint -> metrics, figures and one report.

Reads runs/<name>/summary.json, loads every best checkpoint with weights_only=True (a checkpoint never runs code),
scores it on the test split beside PCA and mean-image baselines, draws what each model learned (aetune.plots) and
writes runs/<name>/eval/: leaderboard.csv, metrics.json, figures/*.png, report.html (self-contained) and
tensorboard/ (the same figures, shown by `tensorboard --logdir runs/<name>`). A variant whose checkpoint is missing,
truncated, unsafe or does not fit its config is skipped and the report says why; with none left it exits 2.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aetune.baselines import (
    PCA,
    PCA_FIT_IMAGES,
    image_bce_logits,
    image_mse,
    mean_image,
    pca_components,
    psnr,
    score,
    summarise,
)
from aetune.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from aetune.config import TrialConfig
from aetune.data import ImageData, add_noise, load_data, to_float
from aetune.errors import UsageError, cli
from aetune.experiment import EVAL_DIR, Summary, VariantResult, is_uri
from aetune.figures import Artifact, Variant, figures
from aetune.report import write_report
from aetune.train import EVAL_BATCH, default_device

LEADERBOARD = ["rank", "name", "kind", "dataset", "model", "code", "epoch", "objective", "bce", "mse", "psnr",
               "bce_noisy", "mse_noisy", "psnr_noisy", "psnr_noisy_input", "code_l1", "flagged", "search_val_bce"]


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
        mean, pca, suffix = mean_image(train), PCA.fit(train), f"-{name}" if len(data) > 1 else ""
        rows.append({"name": f"mean-image{suffix}", "kind": "baseline", "dataset": name, "model": "mean",
                     "code": 0, **score(lambda x: mean.expand_as(x), test)})
        ranks = set()
        for v in variants:
            if v.config.dataset == name:
                k = pca_components(v.codes.shape[1], train[0].numel())
                ranks.add(k)
                v.baselines = {"mean_image": f"mean-image{suffix}", "pca": f"pca-{k}{suffix}"}
        for k in sorted(ranks):
            rows.append({"name": f"pca-{k}{suffix}", "kind": "baseline", "dataset": name, "model": "pca", "code": k,
                         **score(pca.top(k).reconstruct, test)})
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first by per-pixel BCE of clean inputs: the one score every variant and baseline shares."""
    rows = sorted(rows, key=lambda r: r["bce"])
    return [{"rank": i, **row} for i, row in enumerate(rows, 1)]



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
    by_name = {row["name"]: row for row in rows}
    return {
        "experiment": summary.name, "experiment_dir": str(experiment), "ranked_by": "bce",
        "test_images": {v.name: len(v.errors) for v in variants},
        "leaderboard": rows,
        "variants": {v.name: {"config": v.config.to_dict(), "checkpoint": v.result.checkpoint,
                              "epoch": v.bundle["epoch"], "metrics": v.metrics,
                              "baselines": {kind: by_name[row] for kind, row in v.baselines.items()}}
                     for v in variants},
        "skipped": skipped,
        "figures": [{"file": f"figures/{a.name}.png", "title": a.title, "caption": a.caption} for a in artifacts],
    }



# --- command line ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aetune.evaluate", description=__doc__.splitlines()[0],
                                     epilog="example: python -m aetune.evaluate runs/quick --variants dense vae")
    parser.add_argument("experiment", help="the runs/<name> folder that `python -m aetune.search` wrote")
    parser.add_argument("--out", type=Path, help="output folder (default: <experiment>/eval); its figures/ and "
                        "tensorboard/ are replaced")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="evaluate only these variants")
    parser.add_argument("--data-root", help="dataset root (default: $AETUNE_DATA, else the one the search used)")
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
    args.experiment, device = Path(args.experiment), pick_device(args.device)
    summary = Summary.read(args.experiment)
    args.data_root = args.data_root or os.environ.get("AETUNE_DATA") or summary.data_root
    variants, skipped = load_variants(args.experiment, summary, select(summary, args.variants))
    if variants:
        variants, data = load_test_data(variants, args, skipped)
    if not variants:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items()) or "summary.json lists no variants"
        raise UsageError(f"nothing to evaluate in {args.experiment}: {reasons}")
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
        print(f"skipped {name}: {why}")
    print(f"report: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

