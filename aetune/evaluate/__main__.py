"""python -m aetune.evaluate runs/<name>: each variant's picked checkpoint -> test scores, figures, findings, report.

Reads runs/<name>/summary.json, loads every picked checkpoint (and every Pareto-front member of a multi-objective
variant) with weights_only=True (a checkpoint never runs code), scores it on the test split beside the validation
scores the search reported for the same checkpoint, the mean-image, PCA and raw-pixel baselines and a linear probe,
draws what each model learned (aetune.evaluate.model_figures) and what the study found over all its trials (aetune.evaluate.study_figures),
writes the findings (aetune.evaluate.findings) and runs/<name>/eval/: leaderboard.csv (picks ranked by the validation BCE
they were selected on, never by a test score), metrics.json, figures/*.png, report.html (self-contained) and
tensorboard/ (the same figures). A variant whose checkpoint is missing, truncated,
unsafe or does not fit its config is skipped and the report says why; with none left it exits 2.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aetune.config import TrialConfig
from aetune.errors import UsageError, cli, quote
from aetune.evaluate import study
from aetune.evaluate.findings import findings
from aetune.evaluate.model_figures import Artifact, figures
from aetune.evaluate.probe import C_GRID, HELD_OUT
from aetune.evaluate.progress import SILENT, Progress
from aetune.evaluate.report import Evaluation, write_report
from aetune.evaluate.scoring import (
    IS_SAMPLES,
    LEADERBOARD,
    RANKED_BY,
    RANKING,
    EvalImages,
    PCACurve,
    Variant,
    baseline_rows,
    leaderboard,
    pca_curve,
    probe_pass,
    score_checkpoint,
    variant_row,
)
from aetune.evaluate.study import Record
from aetune.evaluate.study_figures import study_figures
from aetune.experiment import EVAL_DIR, Summary, VariantResult, _finite_or_null
from aetune.storage import is_uri, write_bytes, write_text
from aetune.train.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from aetune.train.data import dataset_keys, load_data
from aetune.train.trainer import pick_device

# --- loading ---------------------------------------------------------------------------------------------------

def select(summary: Summary, wanted: list[str] | None) -> list[str]:
    """--variants as the search names them: a sweep member (dense@code_size=8) or the space's variant, which
    stands for every member of its sweep (dense)."""
    if not wanted:
        return list(summary.variants)
    chosen = {w: [n for n, v in summary.variants.items() if w in (n, v.base or n.split("@", 1)[0])] for w in wanted}
    unknown = [w for w, names in chosen.items() if not names]
    if unknown:
        bases = {v.base for v in summary.variants.values() if v.base}
        raise UsageError(f"unknown variant {unknown[0]!r}; {summary.name} has: "
                         f"{', '.join([*summary.variants, *sorted(bases)])}")
    return list(dict.fromkeys(n for names in chosen.values() for n in names))


def record_of(result: VariantResult) -> Record:
    """The variant's entry in summary.json's own shape (aetune.evaluate.study reads it): a summary written before a field
    existed reads as the field being empty. One without a recorded split predates the validation split, so which
    split picked it is unknown (its val_* were then measured on the test split)."""
    record = asdict(result)
    if not record.get("split"):
        record["selected_on"] = None
    return record


def no_trial_reason(record: Record) -> str:
    errored, diverged = record.get("errored") or [], record.get("diverged") or []
    errors = "; ".join(e.get("error_file", e.get("trial_id", "?")) for e in errored[:3])
    return (f"no finished trial ({record.get('trials', 0)} run, {len(errored)} errored, {len(diverged)} "
            f"diverged)" + (f"; errors in {errors}" if errors else ""))


def load_variants(experiment: Path, records: dict[str, Record], names: list[str],
                  fronts: bool, allow_outside: bool = False) -> tuple[list[Variant], dict[str, str]]:
    """Every loadable pick, and with `fronts` every member of a Pareto front (named variant#1, #2... along its
    first objective); the others with the reason (CheckpointError names file and fix)."""
    variants, skipped = [], {}
    for name in names:
        record = records[name]
        wanted = [(name, "model", record)] if record.get("checkpoint") else []
        if not wanted:
            skipped[name] = no_trial_reason(record)
        if fronts and study.is_multi_objective(record):
            wanted += [(f"{name}#{i}", "front", member) for i, member in enumerate(study.sorted_front(record), 1)]
        if record.get("checkpoint"):  # the pick's repeats under new seeds: its estimate (scoring.repeat_estimates)
            wanted += [(f"{name}~seed={r.get('seed')}", "repeat", r) for r in record.get("repeats") or []]
        for label, kind, source in wanted:
            check_inside(experiment, label, source.get("checkpoint"), allow_outside)
            try:
                variants.append(load_variant(experiment, label, kind, record, source))
            except CheckpointError as err:
                skipped[label] = str(err)
    return variants, skipped


def check_inside(experiment: Path, name: str, checkpoint: str | None, allowed: bool) -> None:
    """summary.json names checkpoints inside its experiment; one elsewhere (an edited file) is loaded only when
    the user says so: a checkpoint is trusted data (weights_only, but its numbers go into the report)."""
    if checkpoint and not allowed and not (experiment / checkpoint).resolve().is_relative_to(experiment.resolve()):
        raise UsageError(f"{name}: summary.json names the checkpoint {quote(checkpoint)}, outside {experiment}; "
                         "restore summary.json, or pass --allow-outside to evaluate it anyway")


def load_variant(experiment: Path, name: str, kind: str, record: Record, source: Record) -> Variant:
    """`source`: the record itself for its pick, or one member of its front (both carry config, metrics,
    checkpoint and trial_id)."""
    if not source.get("checkpoint"):
        raise CheckpointError(f"{name}: summary.json names no checkpoint for trial {source.get('trial_id')}")
    path = experiment / source["checkpoint"]
    bundle = load_checkpoint(path)
    model = model_from_checkpoint(bundle, path)
    return Variant(name, record, TrialConfig.from_dict(bundle["config"]), model, bundle, source["checkpoint"], kind,
                   source.get("metrics") or {}, source.get("trial_id"))


# --- outputs ---------------------------------------------------------------------------------------------------

def output_folder(out: Path) -> Path:
    """--out checked before any work, and created only once there is something to write: a file in the way or a
    folder that cannot be made is one line, exit 2, and nothing is written."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, not a folder; pass a folder (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable; pass a folder you can write to")
    return out


def write_tables(out: Path, rows: list[dict[str, Any]], document: dict[str, Any]) -> None:
    """Atomically (a crash leaves the previous file, never half of one); metrics.json as strict JSON: a
    non-finite number (an infinite PSNR of noiseless inputs) is null, as in summary.json."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, LEADERBOARD, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(str(out / "leaderboard.csv"), table.getvalue())
    write_text(str(out / "metrics.json"), json.dumps(_finite_or_null(document), indent=2, allow_nan=False))


def write_figures(out: Path, artifacts: list[Artifact]) -> None:
    """Each figure, and for a figure of images those images at their own pixels (figures/pixels/)."""
    folder = out / "figures"
    for stale in [*folder.glob("*.png"), *folder.glob("pixels/*.png")]:  # figures of variants no longer evaluated
        stale.unlink()
    for artifact in artifacts:
        write_bytes(str(out / artifact.file), artifact.png)
        if artifact.pixels is not None:
            write_bytes(str(out / artifact.pixels_file), artifact.pixels)


def write_tensorboard(logdir: Path, artifacts: list[Artifact]) -> None:
    """The PNGs themselves (not a re-render), and the pixel tiles (`eval/pixels/...`), as one `eval` run; a rerun
    replaces it instead of adding a copy."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(logdir, ignore_errors=True)
    with SummaryWriter(str(logdir)) as writer:
        for artifact in artifacts:
            image = np.asarray(Image.open(io.BytesIO(artifact.png)).convert("RGB"))
            writer.add_image(f"eval/{artifact.name}", image, 0, dataformats="HWC")
            writer.add_text(f"eval/{artifact.name}", artifact.caption, 0)
            if artifact.pixels is not None:  # the tiles as they are (TensorBoard stores grey as RGB)
                pixels = np.asarray(Image.open(io.BytesIO(artifact.pixels)))
                writer.add_image(f"eval/pixels/{artifact.name}", pixels, 0,
                                 dataformats="HW" if pixels.ndim == 2 else "HWC")


def metrics_document(ev: Evaluation, experiment: Path) -> dict[str, Any]:
    by_name = {row["name"]: row for row in ev.rows}
    return {
        "experiment": ev.name, "experiment_dir": str(experiment), "ranked_by": RANKED_BY,
        "ranking": RANKING,
        "test_images": {v.name: len(v.errors) for v in ev.variants},
        "selected_on": {name: r.get("selected_on") for name, r in ev.records.items()},
        "test_size_note": ev.test_note or None, "pca_curve": pca_document(ev.pca),
        "eval_noise": ev.eval_noise, "noisy_input_psnr": ev.noisy_input_psnr,
        "probe": {"method": "logistic regression on standardised frozen codes", "split": "test",
                  "train_images": ev.probe_images, "c_grid": C_GRID, "c_chosen_on": f"the last {HELD_OUT:.0%} "
                  "of the training images' codes"},
        "findings": ev.findings,
        "leaderboard": ev.rows,
        "variants": {v.name: {"kind": v.kind, "trial_id": v.trial_id, "config": v.config.to_dict(),
                              "checkpoint": v.checkpoint, "epoch": v.bundle["epoch"], "test": v.metrics,
                              "validation": v.reported, "selected_on": v.record.get("selected_on"),
                              "baselines": {kind: by_name[row] for kind, row in v.baselines.items()}}
                     for v in ev.variants},
        "skipped": ev.skipped,
        "figures": [{"file": a.file, "title": a.title, "caption": a.caption, "pixels": a.pixels_file}
                    for a in ev.artifacts],
    }


def pca_document(pca: PCACurve | None) -> dict[str, Any] | None:
    if pca is None:
        return None
    return {"split": pca.split, "images": pca.images, "fit_images": pca.fit_images,
            "validation_images_of": pca.source, "same_images_for_every_pick": pca.same_images,
            "bce": {str(k): v for k, v in pca.scores.items()}}


# --- command line ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aetune.evaluate", description=__doc__.splitlines()[0],
                                     epilog="example: python -m aetune.evaluate runs/quick --variants dense vae")
    parser.add_argument("experiment", help="the runs/<name> folder that `python -m aetune.search` wrote")
    parser.add_argument("--out", type=Path, help="output folder (default: <experiment>/eval); its figures/ and "
                        "tensorboard/ are replaced")
    parser.add_argument("--variants", nargs="+", metavar="NAME",
                        help="evaluate only these: a variant of the space (every member of its sweep, e.g. dense) or "
                        "single sweep members (dense@code_size=8), as the search names them")
    parser.add_argument("--no-front", action="store_true",
                        help="score only each variant's pick; by default every member of a multi-objective "
                        "variant's Pareto front is scored on the test split too (leaderboard rows NAME#1, NAME#2... "
                        "of kind 'front', in the order of the first objective) and a few are drawn")
    parser.add_argument("--data-root", help="dataset root (default: $AETUNE_DATA, else the one the search used)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    parser.add_argument("--test-size", type=int, help="evaluate on the first N test images (default: the picks' "
                        "config test_size, the smallest when they differ; all when none sets it)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="evaluate checkpoints that summary.json names outside the experiment folder")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr (what is being scored "
                        "or drawn, and the total time); the leaderboard is printed either way")
    parser.add_argument("--nll-samples", type=int, default=IS_SAMPLES, metavar="K",
                        help=f"importance samples per test image of a VAE's test_nll (default {IS_SAMPLES}; 0 skips "
                        "it: a conv VAE's takes minutes per 1,000 test images on 2 busy CPU cores)")
    return parser


def resolve_test_size(variants: list[Variant], given: int | None) -> tuple[int | None, str]:
    """--test-size, else the picks' config test_size (the smallest when they differ, said in the report), else
    None: every test image."""
    variants = [v for v in variants if v.kind == "model"] or variants  # front members share their pick's config
    if given is not None:
        return given, ""
    asked = {v.name: v.config.test_size for v in variants if v.config.test_size is not None}
    if not asked:
        return None, ""
    smallest = min(asked.values())
    if len(set(asked.values())) == 1 and len(asked) == len(variants):
        return smallest, ""
    listed = ", ".join(f"{name} {size if size is not None else 'all'}" for name, size in
                       {v.name: v.config.test_size for v in variants}.items())
    return smallest, (f"The picks' configs ask for different test_size ({listed}); every model is scored on the "
                      f"first {smallest} test images, the smallest.")


def load_test_images(variants: list[Variant], args, skipped: dict[str, str]) -> tuple[list[Variant], dict]:
    """Each dataset once: the images the trials trained and validated on (the split of its first pick's config:
    train_size less val_size, by the trials' permutation; aetune.train.data), which the baselines and the probe
    are fitted on, and the test split; a checkpoint for other images is skipped. The split is space-wide, so
    every variant of one search shares it."""
    images = {}
    for name in sorted({v.config.dataset for v in variants}):
        config = min((v for v in variants if v.config.dataset == name), key=lambda v: v.kind != "model").config
        data = load_data(name, args.data_root, config.train_size, args.test_size, not args.no_download,
                         config.val_size, config.val_split, **dataset_keys(config))
        images[name] = EvalImages.build(data, config.eval_noise)  # eval_noise: a space-level key
    usable = []
    for v in variants:
        shape, expected = tuple(v.bundle["input_shape"]), images[v.config.dataset].data.shape
        if shape != expected:
            skipped[v.name] = f"trained on images of shape {shape}, but {v.config.dataset} has {expected}"
        else:
            usable.append(v)
    return usable, images


def validation_key(config: TrialConfig) -> tuple:
    """What decides a trial's validation images (aetune.train.data.trial_data)."""
    return (config.dataset, *dataset_keys(config).values(), config.train_size, config.val_size, config.val_split,
            config.test_size if config.val_size == 0 else None)


def pca_on_validation(records: dict[str, Record], variants: list[Variant],
                      images: dict[str, EvalImages]) -> PCACurve | None:
    """PCA per code size on the validation images the first pick's trials were scored on (the test split only
    under val_size 0), so the code-size comparison stays on one split; the same PCA fit as the baselines'."""
    sizes, picks = study.code_sizes(records), [v for v in variants if v.kind == "model"]
    if len(sizes) < 2 or not picks:
        return None
    first = picks[0]
    return pca_curve(images[first.config.dataset], sizes, study.selection_split([first.record]), first.name,
                     len({validation_key(v.config) for v in picks}) == 1)


@cli
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.test_size is not None and args.test_size <= 0:
        raise UsageError(f"--test-size must be > 0, got {args.test_size}")
    if args.nll_samples < 0:
        raise UsageError(f"--nll-samples must be >= 0 (0 skips test_nll), got {args.nll_samples}")
    if is_uri(args.experiment):
        raise UsageError(f"{args.experiment}: evaluate reads checkpoints from a local folder; copy the experiment "
                         "first (e.g. `aws s3 sync` / `gsutil -m rsync -r`) and pass that folder")
    args.experiment, device = Path(args.experiment), pick_device(args.device)
    summary = Summary.read(args.experiment)
    args.data_root = args.data_root or os.environ.get("AETUNE_DATA") or summary.data_root
    records = {name: record_of(summary.variants[name]) for name in select(summary, args.variants)}
    out = output_folder(args.out or args.experiment / EVAL_DIR)
    variants, skipped = load_variants(args.experiment, records, list(records), fronts=not args.no_front,
                                       allow_outside=args.allow_outside)
    test_note = ""
    if variants:
        args.test_size, test_note = resolve_test_size(variants, args.test_size)
        variants, images = load_test_images(variants, args, skipped)
    if not variants:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items()) or "summary.json lists no variants"
        raise UsageError(f"nothing to evaluate in {args.experiment}: {reasons}")
    progress = Progress(args.quiet)
    pca = pca_on_validation(records, variants, images)
    ev = evaluate(summary.name, records, variants, images, skipped, device, pca, args.nll_samples, progress)
    ev.test_note = test_note
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out, ev.rows, metrics_document(ev, args.experiment))
    write_figures(out, ev.artifacts)
    write_report(out / "report.html", ev)
    write_tensorboard(out / "tensorboard", ev.artifacts)
    print_summary(ev, out)
    progress.done(len(ev.variants), len(ev.artifacts), str(out / "report.html"))
    return 0


def evaluate(name: str, records: dict[str, Record], variants: list[Variant], images: dict[str, EvalImages],
             skipped: dict[str, str], device: torch.device, pca: PCACurve | None,
             nll_samples: int = IS_SAMPLES, progress: Progress = SILENT) -> Evaluation:
    """Score every checkpoint and baseline on the test split, then draw and write up what they show; `pca`: PCA
    per code size on the trials' own validation images (pca_on_validation)."""
    for i, v in enumerate(variants, 1):
        progress.say(f"scoring {i}/{len(variants)}: {v.name} on {len(images[v.config.dataset].data.test_x)} test "
                     "images" + ("" if v.kind == "repeat" else ", then its linear probe"))
        # test_nll is the pick's (and a front member's): importance sampling every repeat would multiply its cost
        score_checkpoint(v, images[v.config.dataset], device, 0 if v.kind == "repeat" else nll_samples)
        if v.kind != "repeat":  # the probe describes the picked encoder; repeats estimate its reconstruction
            probe_pass(v, images[v.config.dataset])
    progress.say("scoring the baselines (mean image, PCA, raw pixels)")
    baselines = baseline_rows(variants, images)  # first: it names each variant's baselines
    rows = leaderboard([variant_row(v) for v in variants] + baselines)
    first = images[variants[0].config.dataset]
    picks = [v for v in variants if v.kind == "model"]
    artifacts = list(progress.drawing(chain(study_figures(records, rows, [v for v in variants if v.kind != "repeat"],
                                                          images, pca), figures(picks, images))))
    notes = findings(records, rows, pca.scores if pca else {}, len(first.data.train_x), first.eval_noise)
    return Evaluation(name, records, rows, variants, skipped, artifacts, notes, first.eval_noise,
                      first.noisy_input_psnr, len(first.data.train_x), pca, origin=first.data.origin,
                      test_from=first.data.test_from, labelled=first.data.labelled)


def print_summary(ev: Evaluation, out: Path) -> None:
    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return f"{value:.4f}" if isinstance(value, float) else "   -  "

    def interval_cell(row: dict[str, Any], key: str) -> str:
        mean, half = row.get(f"{key}_mean"), row.get(f"{key}_ci")
        if mean is None:
            return cell(row, key)
        return f"{mean:.4f}" + (f" ± {half:.4f}" if half is not None else "")

    print("picks by code size, ranked within each on the validation BCE (mean ± 95% CI over K repeats where run); "
          "PCA of that size first")
    nll = any(row.get("test_nll") is not None for row in ev.rows)
    print(f"{'code':>5} {'#':>3}  {'name':<24} {'K':>2} {'val_bce':>17} {'test_bce':>17} {'probe':>6}"
          + (f" {'test_nll':>9}" if nll else ""))
    for row in ev.rows:
        if row["kind"] in ("front", "repeat"):
            continue
        print(f"{row.get('group') or '':>5} {row['rank'] or '':>3}  {row['name']:<24} {row.get('repeats') or '':>2} "
              f"{interval_cell(row, 'val_bce'):>17} {interval_cell(row, 'test_bce'):>17} {cell(row, 'test_probe'):>6}"
              + (f" {cell(row, 'test_nll'):>9}" if nll else "") + (f"  {row['note']}" if row.get("note") else ""))
    for finding in ev.findings:
        print(f"- {finding['text']}")
    for name, why in ev.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"report: {out / 'report.html'}")


if __name__ == "__main__":
    sys.exit(main())

