"""report.html: one self-contained page (figures embedded): findings, the leaderboard with validation and test
scores side by side, what the study found over all its trials, the picked configs and every figure."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from aetune.evaluate import study
from aetune.evaluate.model_figures import Artifact
from aetune.evaluate.scoring import RANKING, PCACurve, Variant
from aetune.evaluate.study import Record, fmt
from aetune.models import families
from aetune.storage import write_text

CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;font-size:85%;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
       "td{text-align:right}td:first-child,th:first-child{text-align:left}tr.baseline{color:#777;font-style:italic}"
       "th.test{background:#eef4ff}th.val{background:#f3f3f3}"
       ".warning{border:2px solid #c00;background:#fff0f0;padding:.6em 1em;font-size:110%}"
       ".split{color:#666;font-size:85%}figure{margin:2.5em 0}img{max-width:100%}figcaption{color:#444}"
       "img.pixels{image-rendering:pixelated;max-width:none}summary{cursor:pointer;color:#444}")
PIXELS_WIDTH = 1000  # screen pixels the tiles of a figure of images are zoomed to fill, by a whole factor
COLUMNS = {"group": "code size group", "rank": "# in group", "name": "variant", "note": "note",
           "selected_on": "selected on", "model": "model", "code": "code size",
           "params": "parameters", "epoch": "epoch", "repeats": "K (repeats)",
           "val_bce_mean": "BCE (val), mean of K", "val_bce_ci": "± 95% CI (val)",
           "test_bce_mean": "BCE (test), mean of K", "test_bce_ci": "± 95% CI (test)",
           "val_loss_mean": "own loss (val), mean of K", "val_loss_ci": "± 95% CI (val) ",
           "test_loss_mean": "own loss (test), mean of K", "test_loss_ci": "± 95% CI (test) ",
           "test_nll": "NLL (test), pick's run", "test_nll_se": "± SE (NLL)",
           "val_bce": "BCE (val), pick's run", "test_bce": "BCE (test), pick's run",
           "test_psnr": "PSNR dB (test)", "val_denoise_bce": "denoise BCE (val)",
           "test_denoise_bce": "denoise BCE (test)", "val_code_l1": "mean |code| (val)",
           "test_code_l1": "mean |code| (test)", "test_probe": "probe accuracy (test)",
           "test_flagged": "anomalies (test)", "val_loss": "own loss (val)", "test_loss": "own loss (test)"}
NOTES = ("K: the pick's config trained again under K new seeds once the search had picked; 'mean of K' is their "
         "mean, the pick's estimate (its own run, beside it, was the best of many trials and overstates it), ± the "
         "half-width of the 95% Student t confidence interval. "
         "(val): reported by the search for the same checkpoint, on the validation split it was picked on; (test): "
         "measured here on the test split, which the search never read (unless 'selected on' says test). BCE: "
         "per-pixel BCE of the reconstruction of clean inputs, averaged over images. PSNR: "
         "10 log10(1 / MSE). Denoise BCE: clean images reconstructed from inputs corrupted at the study's eval_noise "
         "{noise} (noisy inputs: {psnr:.1f} dB), the same noisy images for every row. Own loss: each variant's "
         "training objective (a VAE's: its negative ELBO with sampled codes, nats per image, so not comparable). "
         "Probe accuracy: logistic regression on the frozen codes of {probe} training images (its L2 strength chosen "
         "on a held-out fifth of them), scored on the test codes. Baselines, fitted on the same {probe} training images "
         "(those the trials trained on): the mean image; PCA with as many components as the code has numbers (a code "
         "with at least as many numbers as the image, C x H x W, is no bottleneck: its PCA is capped there, exact); "
         "raw pixels (probe only). Anomalies: test images with MSE above 2 x the mean.")


@dataclass
class Evaluation:
    """Everything one evaluation found: what metrics.json and the report are written from."""

    name: str
    records: dict[str, Record]  # the evaluated variants' summary.json entries
    rows: list[dict[str, Any]]  # the leaderboard: picks and baselines ranked, then pixels and front members
    variants: list[Variant]  # picks (kind "model") and front members (kind "front")
    skipped: dict[str, str]
    artifacts: list[Artifact]
    findings: list[dict[str, str]]
    eval_noise: float
    noisy_input_psnr: float
    probe_images: int
    pca: PCACurve | None = None  # PCA per code size on the trials' validation images (the code-size comparison)
    test_note: str = ""  # how many test images, when the picks' configs disagree
    origin: str = ""  # where the dataset's images came from (aetune.train.sources)
    test_from: str = "files"  # the dataset's own test split, or how it was carved
    labelled: bool = True  # without labels there is no probe and no colour by class

    @property
    def picks(self) -> list[Variant]:
        return [v for v in self.variants if v.kind == "model"]


def _cell(value: Any, key: str = "") -> str:
    if key == "test_probe" and isinstance(value, float):
        return f"{100 * value:.1f}%"
    if key == "params" and isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None,
          keys: list[str] | None = None) -> str:
    keys = keys or [""] * len(header)
    head = "".join(f"<th{_split_class(k)}>{html.escape(h)}</th>" for h, k in zip(header, keys))
    body = "".join(f'<tr class="{c}">' + "".join(f"<td>{_cell(v, k)}</td>" for v, k in zip(row, keys)) + "</tr>"
                   for row, c in zip(rows, classes or [""] * len(rows)))
    return f"<table><tr>{head}</tr>{body}</table>"


def _split_class(key: str) -> str:
    """Columns are shaded by the split their numbers come from."""
    split = "test" if key.startswith("test_") else "val" if key.startswith("val_") else ""
    return f' class="{split}"' if split else ""


def leaderboard_html(rows: list[dict[str, Any]]) -> str:
    """Picks and baselines (front members have their own tables); columns nobody fills are left out."""
    shown = [r for r in rows if r["kind"] not in ("front", "repeat")]
    keys = [k for k in COLUMNS if any(r.get(k) is not None for r in shown)]
    return table([COLUMNS[k] for k in keys], [[r.get(k) for k in keys] for r in shown], [r["kind"] for r in shown],
                 keys)


def front_table(name: str, record: Record, rows: list[dict[str, Any]]) -> str:
    """Each front member: the knobs that vary along the front, each objective on validation and (where it can be
    measured) test, and the probe."""
    front = study.sorted_front(record)
    tested = {r.get("trial_id"): r for r in rows if r["kind"] == "front" and r["name"].startswith(f"{name}#")}
    knobs = study.varying_keys(m.get("config") or {} for m in front)
    metrics = [metric for metric, _ in study.objectives(record)]
    header, keys = ["member", "trial", "picked", *knobs], ["", "", "", *[""] * len(knobs)]
    for metric in metrics:
        if metric in study.MODEL_PROPERTIES:
            header.append(metric)
            keys.append("")
        else:
            header += [metric if metric.startswith("val_") else f"{metric} (val)", study.test_metric(metric)]
            keys += ["val_" + metric.removeprefix("val_"), study.test_metric(metric)]
    header.append(COLUMNS["test_probe"])
    keys.append("test_probe")
    body = []
    for i, member in enumerate(front, 1):
        row = tested.get(member.get("trial_id"), {})
        cells = [f"{name}#{i}", member.get("trial_id"), "yes" if member.get("trial_id") == record.get("trial_id")
                 else "", *(fmt(member["config"].get(k)) for k in knobs)]
        for metric in metrics:
            cells.append(member["metrics"].get(metric))
            if metric not in study.MODEL_PROPERTIES:
                cells.append(row.get(study.test_metric(metric)))
        cells.append(row.get("test_probe"))
        body.append(cells)
    return table(header, body, keys=keys)


def configs_html(variants: list[Variant]) -> str:
    """Config keys down, variants across; keys a model ignores show as a dash, not as a misleading default."""
    architecture = {key for cls in families().values() for key in cls.config_keys}
    configs = [(v.config.to_dict(), architecture - set(v.model.config_keys)) for v in variants]
    rows = [[key, *("-" if key in unused else c[key] for c, unused in configs)] for key in configs[0][0]]
    rows += [["searched on", *(_metric(v.record) for v in variants)],
             ["picked by", *(v.record.get("pick_rule") for v in variants)],
             ["selected on", *(v.record.get("selected_on") for v in variants)],
             ["trials run", *(v.record.get("trials") for v in variants)],
             ["trials errored", *(len(v.record.get("errored") or []) for v in variants)],
             ["trials diverged", *(len(v.record.get("diverged") or []) for v in variants)],
             ["checkpoint", *(v.checkpoint for v in variants)]]
    return table(["key", *(v.name for v in variants)], rows)


def _metric(record: Record) -> str | None:
    pairs = study.objectives(record)
    return ", ".join(f"{metric} ({mode})" for metric, mode in pairs) or None


def figure_html(artifact: Artifact) -> str:
    return (f'<figure><img alt="{html.escape(artifact.title)}" src="{data_uri(artifact.png)}">'
            f"<figcaption><b>{html.escape(artifact.title)}.</b> {html.escape(artifact.caption)}</figcaption>"
            f"{pixels_html(artifact)}</figure>")


def pixels_html(artifact: Artifact) -> str:
    """A figure's images at their own pixels, folded under it: zoomed by a whole factor, never smoothed."""
    if artifact.pixels is None:
        return ""
    width = Image.open(io.BytesIO(artifact.pixels)).width
    zoom = max(1, PIXELS_WIDTH // width)
    return (f"<details><summary>The images at their own pixels ({zoom}x; also {html.escape(artifact.pixels_file)})"
            f'</summary><img class="pixels" width="{width * zoom}" alt="{html.escape(artifact.title)}, pixels" '
            f'src="{data_uri(artifact.pixels)}"></details>')


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figures_html(artifacts: list[Artifact]) -> str:
    parts, group = [], None
    for artifact in artifacts:
        if artifact.group != group:
            group = artifact.group
            parts.append(f"<h3>{html.escape(group or 'Across variants')}</h3>")
        parts.append(figure_html(artifact))
    return "".join(parts)


def study_html(ev: Evaluation) -> str:
    """The code-size figure, then each multi-objective variant: its front, the front's table, reconstructions."""
    found = [a for a in ev.artifacts if a.section == "study"]
    parts = [figure_html(a) for a in found if not a.group]
    for name, record in ev.records.items():
        if study.is_multi_objective(record) and study.sorted_front(record):
            figures = [figure_html(a) for a in found if a.group == name]
            parts += [f"<h3>{html.escape(name)}: Pareto front</h3>", *figures[:1],
                      front_table(name, record, ev.rows), *figures[1:]]
    return "".join(parts) or "<p>Nothing to draw: one code size and no multi-objective variant.</p>"


def findings_html(findings: list[dict[str, str]]) -> str:
    if not findings:
        return "<p>None: the summary holds too little to compare.</p>"
    items = "".join(f'<li>{html.escape(f["text"])} <span class="split">[{html.escape(f["split"])}]</span></li>'
                    for f in findings)
    return f"<ul>{items}</ul>"


def selection_html(records: dict[str, Record]) -> str:
    """Say it first when picks were chosen on the test split, or when the summary cannot tell."""
    on_test = [name for name, r in records.items() if r.get("selected_on") == "test"]
    unknown = [name for name, r in records.items() if r.get("checkpoint") and not r.get("selected_on")]
    parts = []
    if on_test:
        parts.append(f'<p class="warning"><b>Selected on the test split:</b> {html.escape(", ".join(on_test))} '
                     "(val_size: 0, the course protocol): these picks were chosen by their scores on the test "
                     "split, so their test scores are optimistic, not held-out estimates.</p>")
    if unknown:
        parts.append(f'<p class="warning">The summary does not record which split picked '
                     f"{html.escape(', '.join(unknown))} (it predates recorded splits): their validation scores may "
                     "have been measured on the test split.</p>")
    return "".join(parts)


def dataset_html(ev: Evaluation) -> str:
    """Where the images came from, which test split, and what is left out without labels."""
    test = "its own test split" if ev.test_from == "files" else f"a test split {ev.test_from}"
    text = f"Images: {ev.origin}; {test}, never read by the search. "
    if not ev.labelled:
        text += ("The dataset has no labels, so the linear probe (probe accuracy) is not measured and the latent "
                 "scatter plots are not coloured by class. ")
    return html.escape(text)


def write_report(path: Path, ev: Evaluation) -> None:
    """One self-contained page: the figures are embedded, so it can be mailed or archived alone."""
    skips = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>" for n, why in ev.skipped.items())
    title = f"aetune evaluation: {html.escape(ev.name)}"
    first = ev.variants[0]
    notes = NOTES.format(noise=fmt(ev.eval_noise), psnr=ev.noisy_input_psnr, probe=ev.probe_images)
    write_text(str(path), (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head><body>'
        f"<h1>{title}</h1><p>{len(ev.picks)} variants evaluated on {len(first.errors)} test images of "
        f"{html.escape(first.config.dataset)}. {dataset_html(ev)}"
        f"{html.escape(ev.test_note + ' ' if ev.test_note else '')}"
        f"Leaderboard: {RANKING}.</p>"
        f"{selection_html(ev.records)}"
        f"<h2>Findings</h2>{findings_html(ev.findings)}"
        f"<h2>Leaderboard</h2>{leaderboard_html(ev.rows)}<p>{notes}</p>"
        f"<h2>What the study found</h2>{study_html(ev)}"
        + (f"<h2>Picked config per variant</h2>{configs_html(ev.picks)}" if ev.picks else "") +
        f"<h2>Figures</h2>{figures_html([a for a in ev.artifacts if a.section == 'figures'])}"
        f"<h2>Skipped</h2>{f'<ul>{skips}</ul>' if skips else '<p>None: every variant was evaluated.</p>'}"
        "</body></html>"))
