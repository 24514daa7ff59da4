"""Scores on the test split: each checkpoint's pass over it, its linear probe, the baselines and the leaderboard.

Every score here is measured on the test split (keys test_*); the validation scores beside them (val_*) are the ones
the search reported for the same checkpoint, read from summary.json.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from aetune.config import TrialConfig
from aetune.evaluate.baselines import PCA, image_mse, mean_image, pca_components, psnr, score, summarise
from aetune.evaluate.probe import probe_accuracy
from aetune.evaluate.stats import estimate
from aetune.evaluate.study import NO_BOTTLENECK
from aetune.models.base import Autoencoder
from aetune.numbers import is_finite
from aetune.train.data import ImageData, add_noise, to_float
from aetune.train.trainer import EVAL_BATCH, EVAL_NOISE_SEED, latent_draw, scored_batches

VALIDATION = ("val_loss", "val_bce", "val_mse", "val_denoise_bce")  # reported by every trial; code_l1 too
IS_SAMPLES = 100  # importance samples per test image of test_nll; measured on a 784-400-20 VAE: K = 1000 is 0.5 nats
# lower (the estimate tightens with K), and 100 cost 3 minutes for 10,000 test images on 2 busy cores
NLL_SEED = 2  # test_nll's draw: the same codes for every checkpoint and rerun
LEADERBOARD = ["group", "rank", "name", "kind", "note", "selected_on", "dataset", "model", "code", "params", "epoch",
               "trial_id", "repeats", "val_bce_mean", "val_bce_ci", "test_bce_mean", "test_bce_ci",
               "val_loss_mean", "val_loss_ci", "test_loss_mean", "test_loss_ci", "test_nll", "test_nll_se",
               "val_loss", "test_loss", "val_bce", "test_bce", "val_mse", "test_mse", "test_psnr",
               "val_denoise_bce", "test_denoise_bce", "test_denoise_psnr", "val_code_l1", "test_code_l1",
               "test_probe", "test_flagged"]


@dataclass
class Variant:
    """One loaded checkpoint (a variant's pick, or a member of its Pareto front) and what its test pass found."""

    name: str
    record: dict[str, Any]  # the variant's entry in summary.json, as written
    config: TrialConfig
    model: Autoencoder
    bundle: dict[str, Any]
    checkpoint: str  # relative to the experiment folder
    kind: str = "model"  # "model": the variant's pick; "front": a member of its Pareto front; "repeat": the pick's
    # config trained again under a new seed (its name: <pick>~seed=N)
    reported: dict[str, float] = field(default_factory=dict)  # the search's validation metrics of this checkpoint
    trial_id: str | None = None
    device: torch.device = torch.device("cpu")
    metrics: dict[str, float] = field(default_factory=dict)  # test_*: measured here on the test split
    codes: torch.Tensor | None = None  # N x code elements: deterministic codes of the clean test images
    code_shape: tuple[int, ...] = ()
    image_numel: int = 0  # C x H x W of the images it was scored on: a code this size or more is no bottleneck
    errors: torch.Tensor | None = None  # N: per-image MSE of the clean reconstruction
    baselines: dict[str, str] = field(default_factory=dict)  # {"mean_image", "pca", "pixels"}: row names


@dataclass(frozen=True)
class EvalImages:
    """One dataset as the evaluation reads it: the images the trials trained on (the baselines' and the probe's
    training images) and were validated on, the test split, and the test split corrupted at the study's eval_noise
    (one draw shared by every model and baseline)."""

    data: ImageData  # train_x, val_x: the trials' training and validation images; test_x: the test split
    eval_noise: float
    noisy: torch.Tensor  # float test images + eval_noise * N(0, 1), clipped: the trainer's val_denoise_bce recipe
    pca: PCA  # fitted on data.train_x: the one PCA of every "PCA-k" (baseline rows and the validation curve)

    @classmethod
    def build(cls, data: ImageData, eval_noise: float) -> "EvalImages":
        noisy = add_noise(to_float(data.test_x), eval_noise, torch.Generator().manual_seed(EVAL_NOISE_SEED))
        return cls(data, eval_noise, noisy, PCA.fit(to_float(data.train_x)))

    @property
    def noisy_input_psnr(self) -> float:
        """How corrupted the denoising inputs are: PSNR of the noisy test images against the clean ones."""
        return psnr(float(image_mse(self.noisy, to_float(self.data.test_x)).mean()))


# --- models ----------------------------------------------------------------------------------------------------

@torch.inference_mode()
def score_checkpoint(v: Variant, images: EvalImages, device: torch.device, nll_samples: int = IS_SAMPLES) -> None:
    """Own objective (a VAE's: the negative ELBO with one fixed code draw per image, as the trainer's val_loss),
    clean and denoising reconstruction, codes and per-image errors, in big batches; test_nll where the family has a
    likelihood (`nll_samples` importance samples per image; 0 leaves it out)."""
    v.device = device
    cfg, model = v.config, v.model.to(device)
    own_noise = torch.Generator(device).manual_seed(cfg.seed + 1)  # the trainer's val_loss noise: same numbers
    latent = latent_draw(model, len(images.data.test_x), device)
    parts, loss = defaultdict(list), 0.0
    for clean, out, own, denoised in scored_batches(model, images.data.test_x, images.noisy, latent, cfg.noise_factor,
                                                     own_noise, lambda chunk: to_float(chunk.to(device))):
        loss += float(own.loss) * len(clean)
        for key, pixels in (("bce", out.pixel_bce(clean)), ("mse", out.pixel_mse(clean)),
                            ("denoise_bce", denoised.pixel_bce(clean)), ("denoise_mse", denoised.pixel_mse(clean))):
            parts[key].append(pixels.flatten(1).mean(1))
        parts["codes"].append(out.code.flatten(1))
    cat = {key: torch.cat(values).float().cpu() for key, values in parts.items()}
    v.codes, v.errors, v.code_shape = cat["codes"], cat["mse"], tuple(out.code.shape[1:])
    v.image_numel = images.data.test_x[0].numel()
    v.metrics = {"test_loss": loss / len(v.errors), **summarise(cat["bce"], cat["mse"]),
                 **summarise(cat["denoise_bce"], cat["denoise_mse"], "test_denoise_"),
                 "test_code_l1": float(v.codes.abs().mean()),
                 "test_flagged": int((v.errors > 2 * v.errors.mean()).sum())}
    if model.likelihood and nll_samples:
        v.metrics |= test_nll(model, images.data.test_x, device, nll_samples)


@torch.inference_mode()
def test_nll(model: Autoencoder, test_x: torch.Tensor, device: torch.device,
             samples: int = IS_SAMPLES) -> dict[str, float]:
    """-log p(x) in nats per test image, importance-sampled with `samples` codes per image (seeded: every rerun
    draws the same), and its standard error over the test images (sd / sqrt(N): how far another test set of the
    same size would move the mean)."""
    generator = torch.Generator().manual_seed(NLL_SEED)
    nll = torch.cat([model.nll(to_float(chunk.to(device)), samples, generator).float().cpu()
                     for chunk in test_x.split(EVAL_BATCH)])
    return {"test_nll": float(nll.mean()), "test_nll_se": float(nll.std() / len(nll) ** 0.5),
            "test_nll_samples": samples}


@torch.inference_mode()
def probe_pass(v: Variant, images: EvalImages) -> None:
    """The linear probe of the frozen encoder: fitted on the training images' codes, scored on the test codes.
    Without labels there is nothing to probe: the metric is left out (the report says why)."""
    if not images.data.labelled:
        return
    train = images.data.train_x
    codes = torch.cat([v.model.encode(to_float(chunk.to(v.device))).flatten(1).float().cpu()
                       for chunk in train.split(EVAL_BATCH)])
    v.metrics["test_probe"] = probe_accuracy(codes, images.data.train_y, v.codes, images.data.test_y)


def variant_row(v: Variant) -> dict[str, Any]:
    """The test scores beside the validation scores the search reported for the same checkpoint."""
    reported = v.reported
    return {"name": v.name, "kind": v.kind, "selected_on": v.record.get("selected_on"), "dataset": v.config.dataset,
            "model": v.config.model, "code": v.codes.shape[1], "image_numel": v.image_numel,
            "likelihood": v.model.likelihood,
            "params": v.model.trainable_params, "epoch": v.bundle["epoch"],
            "trial_id": v.trial_id, **{key: reported.get(key) for key in VALIDATION},
            "val_code_l1": reported.get("code_l1"), **v.metrics,
            "pca_baseline": v.baselines.get("pca"), "mean_baseline": v.baselines.get("mean_image"),
            "pixels_baseline": v.baselines.get("pixels")}


# --- baselines -------------------------------------------------------------------------------------------------

def baseline_rows(variants: list[Variant], images: dict[str, EvalImages]) -> list[dict[str, Any]]:
    """Per dataset: the mean image, raw pixels (probe only: they are the input) and one PCA per distinct rank."""
    rows = []
    for name, imgs in images.items():
        train, test, labels = to_float(imgs.data.train_x), to_float(imgs.data.test_x), imgs.data.test_y
        suffix, pixels = f"-{name}" if len(images) > 1 else "", test[0].numel()
        mean = mean_image(train)
        rows.append({"name": f"mean-image{suffix}", "kind": "baseline", "dataset": name, "model": "mean", "code": 0,
                     **reconstruction_scores(lambda x: mean.expand_as(x), imgs)})
        if labels is not None:  # raw pixels are a probe baseline only
            rows.append({"name": f"pixels{suffix}", "kind": "baseline", "dataset": name, "model": "pixels",
                         "code": pixels, "test_probe": probe_accuracy(train, imgs.data.train_y, test, labels)})
        ranks = set()
        for v in variants:
            if v.config.dataset == name:
                k = min(pca_components(v.codes.shape[1], pixels), len(imgs.pca.components))
                ranks.add(k)
                v.baselines = {"mean_image": f"mean-image{suffix}", "pca": f"pca-{k}{suffix}",
                               **({"pixels": f"pixels{suffix}"} if labels is not None else {})}
        for k in sorted(ranks):
            pca = imgs.pca.top(k)
            probe = ({"test_probe": probe_accuracy(pca.transform(train), imgs.data.train_y, pca.transform(test),
                                                   labels)} if labels is not None else {})
            rows.append({"name": f"pca-{k}{suffix}", "kind": "baseline", "dataset": name, "model": "pca", "code": k,
                         **reconstruction_scores(pca.reconstruct, imgs), **probe})
    return rows


def reconstruction_scores(reconstruct, imgs: EvalImages) -> dict[str, float]:
    """Clean reconstruction and denoising (the same noisy test images the models get) of a baseline."""
    test = to_float(imgs.data.test_x)
    return {**score(reconstruct, test), **score(reconstruct, test, imgs.noisy, prefix="test_denoise_")}


@dataclass(frozen=True)
class PCACurve:
    """BCE of PCA with k components for each code size k of the study, scored on the images the trials were scored
    on (the validation images of `source`'s config; the test split under val_size 0), so it sits on the trials'
    scale; the baselines' fit, on the trials' training images (never their validation images)."""

    scores: dict[int, float]
    split: str  # "validation" | "test": what the trials' val_* were measured on (selected_on)
    images: int
    fit_images: int
    source: str  # the variant whose validation images these are
    same_images: bool  # every evaluated pick was validated on the same images


def pca_curve(images: EvalImages, sizes: list[int], split: str, source: str, same_images: bool) -> PCACurve:
    """`images`: the dataset of `source`, a pick whose trials' validation images the curve is scored on."""
    val = to_float(images.data.val_x)
    scores = {k: score(images.pca.top(k).reconstruct, val)["test_bce"] for k in sizes if k < val[0].numel()}
    return PCACurve(scores, split, len(val), len(images.data.train_x), source, same_images)


# --- the table -------------------------------------------------------------------------------------------------

RANKED_BY = "val_bce"  # the picks' BCE on the split each was selected on (selected_on): never the test split
RANKING = ("picks grouped by code size (ascending), PCA of that size as each group's baseline row, ranked within "
           "the group by val_bce, their BCE on the split each was selected on (selected_on): the mean over the "
           "pick's repeats under new seeds where it has them (± the 95% t-interval half-width), else its one run; "
           "test scores beside; a code with at least as many numbers as the image (no bottleneck) is not ranked; "
           "other baselines (scored on the test split only) and Pareto-front members unranked")
ESTIMATED = ("bce", "loss", "denoise_bce")  # metrics whose mean and interval over repeats a pick's row gets


def repeat_estimates(rows: list[dict[str, Any]]) -> None:
    """Each pick's row gets, from its repeats' rows (kind "repeat", named <pick>~seed=N), K (`repeats`) and per
    metric the per-run values (`val_bce_runs`, `test_bce_runs`: the findings test them) and their mean and 95 %
    t-interval half-width (`val_bce_mean`, `val_bce_ci`...). Validation values are the search's, test ones measured
    here; both on the same images for every repeat."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "repeat":
            runs[row["name"].split("~seed=")[0]].append(row)
    for row in rows:
        repeats = runs.get(row["name"]) if row["kind"] == "model" else None
        if not repeats:
            continue
        row["repeats"] = len(repeats)
        for split, metric in ((s, m) for m in ESTIMATED for s in ("val", "test")):
            values = [r[f"{split}_{metric}"] for r in repeats if is_finite(r.get(f"{split}_{metric}"))]
            if len(values) == len(repeats):
                found = estimate(values)
                row |= {f"{split}_{metric}_runs": values, f"{split}_{metric}_mean": found.mean,
                        f"{split}_{metric}_ci": found.half_width}


def ranking_score(row: dict[str, Any]) -> float | None:
    """What a pick is ranked by: the mean of its repeats' val_bce, else its own run's."""
    return row.get(f"{RANKED_BY}_mean", row.get(RANKED_BY))


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The picks grouped by code size, ascending; each group opens with the PCA of that size (its baseline row,
    labelled where it is capped below the code's size) and ranks its picks by validation BCE, the mean over their
    repeats where they have them (the split they were selected on; ranking on the test split would pick the winner
    on the split meant to report it). A code with at least as many numbers as the image is no bottleneck: marked,
    never ranked. Then, unranked, the other baselines, the Pareto-front members and the repeats."""
    rows = [dict(r) for r in rows]
    repeat_estimates(rows)
    table = {r["name"]: r for r in rows}
    models = [r for r in rows if r["kind"] == "model"]
    board, shown = [], set()
    for size in sorted({r["code"] for r in models}):
        group = [r for r in models if r["code"] == size]
        for row in group:
            if size >= row.get("image_numel", math.inf):  # the data's own shape: labelled or not
                row["note"] = NO_BOTTLENECK
        for name in dict.fromkeys(r.get("pca_baseline") for r in group):
            if name in table:
                pca, capped = table[name], table[name]["code"] < size
                shown.add(name)
                board.append({"group": size, "rank": None, **pca,
                              "note": f"PCA capped at {pca['code']} components (the code has {size})" if capped
                              else ""})
        ranked = sorted((r for r in group if is_finite(ranking_score(r)) and not r.get("note")), key=ranking_score)
        board += [{"group": size, "rank": i, **r} for i, r in enumerate(ranked, 1)]
        board += [{"group": size, "rank": None, **r} for r in group if r not in ranked]
    rest = ([r for r in rows if r["kind"] == "baseline" and r["name"] not in shown] +
            [r for r in rows if r["kind"] not in ("model", "baseline")])
    return board + [{"group": r.get("code") if r["kind"] != "baseline" else None, "rank": None, **r} for r in rest]
