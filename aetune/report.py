"""report.html: one self-contained page (figures embedded) with the leaderboard, best configs and every figure."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from aetune.baselines import PCA_FIT_IMAGES
from aetune.experiment import Summary
from aetune.figures import Artifact, Variant
from aetune.models import families

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
         "comparable). Baselines, fitted on the first {fit} training images: the mean image, and PCA with as "
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


def configs_html(variants: list[Variant]) -> str:
    """Config keys down, variants across; keys a model ignores show as a dash, not as a misleading default."""
    architecture = {key for cls in families().values() for key in cls.config_keys}
    configs = [(v.config.to_dict(), architecture - set(v.model.config_keys)) for v in variants]
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
