"""The figures of what the study found, drawn from every trial the search ran (summary.json's trial_results and
fronts) beside the evaluation's test scores: reconstruction against code size, and each multi-objective front."""
from __future__ import annotations

from typing import Any, Iterator

import torch

from aetune.evaluate import plots, study
from aetune.evaluate.model_figures import Artifact, render, render_rows, showcase
from aetune.evaluate.scoring import EvalImages, PCACurve, Variant
from aetune.evaluate.study import Record, fmt
from aetune.numbers import is_finite
from aetune.train.data import to_float

FRONT_ROWS = 5  # front members whose reconstructions are shown, spread along the front
SECTION = "study"


def code_size_figure(records: dict[str, Record], rows: list[dict[str, Any]], pca: PCACurve | None,
                     dataset: str) -> Artifact | None:
    """Every trial's validation BCE against its code size, per variant (sweep members together), beside PCA scored
    on the same images; only when the study holds more than one code size."""
    if len(study.code_sizes(records)) < 2:
        return None
    series = []
    for base, names in study.groups(records).items():
        trials = [t for name in names for t in records[name].get("trial_results") or []]
        points = study.trial_points(trials, "code_size", "val_bce")
        if not points:
            continue
        picks = [(r["code"], r["test_bce"]) for r in rows
                 if r["kind"] == "model" and r["name"] in names and r.get("test_bce") is not None]
        series.append({"label": base, "picks": picks, "envelope": study.lower_envelope(points),
                       "trials": [(x, y) for x, y, t in points if t.get("state") != "stopped"],
                       "stopped": [(x, y) for x, y, t in points if t.get("state") == "stopped"]})
    if not series:
        return None
    split = study.selection_split(records.values())
    fig = plots.code_size_tradeoff(series, sorted(pca.scores.items()) if pca else [],
                                   "Reconstruction against code size", split)
    trials = sum(len(s["trials"]) + len(s["stopped"]) for s in series)
    dashed = "" if not pca or not pca.scores else (
        f" Dashed: PCA with as many components as the code has numbers, fitted on {pca.fit_images} of {pca.source}'s "
        f"{dataset} training images and scored on its {pca.images} {pca.split} images, the ones its trials were "
        "scored on" + ("" if pca.same_images else " (other variants were validated on other images)") + ".")
    return render("", "code_size", "Reconstruction against code size",
                  f"Dots: each of the {trials} trials' BCE at its picked epoch against its code size "
                  f"(hollow: stopped early by the scheduler), {split} split; lines: each variant's best trial per "
                  "size (sweep members drawn as one variant). Diamonds: the picked models' BCE on the test split."
                  + dashed, fig, SECTION)


def front_figure(name: str, record: Record, rows: list[dict[str, Any]]) -> Artifact | None:
    """The front in its first two objectives: all trials grey, the front connected, the pick starred, and the
    members' test scores where both objectives can be measured on the test split."""
    pairs, front = study.objectives(record), study.sorted_front(record)
    if len(pairs) < 2 or not front:
        return None
    (x, x_mode), (y, y_mode) = pairs[:2]
    front = [m for m in front if is_finite(m["metrics"].get(y))]
    if not front:
        return None
    trials = [(px, py) for px, py, _ in study.trial_points(record.get("trial_results") or [], x, y)]
    pick = next(((m["metrics"][x], m["metrics"][y]) for m in front if m.get("trial_id") == record.get("trial_id")),
                None)
    tested = {r["trial_id"]: r for r in rows if r["kind"] == "front" and r["name"].startswith(f"{name}#")}
    front_test = [(tested[m["trial_id"]].get(study.test_metric(x)), tested[m["trial_id"]].get(study.test_metric(y)))
                  for m in front if m.get("trial_id") in tested]
    front_test = [p for p in front_test if all(is_finite(v) for v in p)]
    fig = plots.pareto_front(trials, [(m["metrics"][x], m["metrics"][y]) for m in front], member_labels(front),
                             pick, front_test, axis_label(x, x_mode, record), axis_label(y, y_mode, record),
                             f"{name}: Pareto front of {x} and {y}", study.selection_split([record]))
    more = (f" The front is non-dominated in all {len(pairs)} objectives ({', '.join(m for m, _ in pairs)}); drawn "
            "in the first two, where some members can look dominated." if len(pairs) > 2 else "")
    test = (" Hollow, dashed: the same members re-scored on the test split." if front_test else "")
    return render(name, "front", f"Pareto front: {name}",
                  f"Grey: every trial of {name} at its last epoch, {study.selection_split([record])} split; red: "
                  f"the {len(front)} "
                  f"non-dominated trials, numbered along {x} as in the front table; star: the pick "
                  f"({record.get('pick_rule') or 'the search rule'}).{test}{more}", fig, SECTION)


@torch.inference_mode()
def front_reconstructions(name: str, members: list[Variant], images: dict[str, EvalImages]) -> Artifact | None:
    """Reconstructions of the same test images by a few members spread along the front."""
    if len(members) < 2:
        return None
    picked = sorted({round(i * (len(members) - 1) / (FRONT_ROWS - 1)) for i in range(FRONT_ROWS)})
    shown = [members[i] for i in picked]
    test = images[shown[0].config.dataset]
    digits = showcase(test.data)
    clean = to_float(test.data.test_x[digits].to(shown[0].device))
    rows = [("original", clean)]
    knobs = study.varying_keys(m.config.to_dict() for m in members)
    objectives = [metric for metric, _ in study.objectives(shown[0].record)][:2]
    for m in shown:
        settings = ", ".join(f"{k}={fmt(m.config.to_dict()[k])}" for k in knobs[:2])
        scores = "\n".join(f"{metric} {fmt(m.reported[metric])}" for metric in objectives if metric in m.reported)
        picked = " (picked)" if m.trial_id == m.record.get("trial_id") else ""
        label = "\n".join(part for part in (m.name.removeprefix(name) + picked, settings, scores) if part)
        rows.append((label, m.model(clean.to(m.device))))
    varying = f"; {', '.join(knobs)} {'varies' if len(knobs) == 1 else 'vary'} along it" if knobs else ""
    return render_rows(name, "front_recon", f"Along the front: {name}",
                       f"Test images reconstructed by {len(shown)} of the {len(members)} front members, in front "
                       f"order (numbers as in the front table, with their {study.selection_split([shown[0].record])} "
                       f"scores){varying}.", rows, f"{name}: test images reconstructed along the Pareto front",
                       section=SECTION)


def study_figures(records: dict[str, Record], rows: list[dict[str, Any]], variants: list[Variant],
                  images: dict[str, EvalImages], pca: PCACurve | None) -> Iterator[Artifact]:
    dataset = next(iter(images))
    figure = code_size_figure(records, rows, pca, dataset)
    if figure is not None:
        yield figure
    for name, record in records.items():
        if study.is_multi_objective(record):
            for figure in (front_figure(name, record, rows),
                           front_reconstructions(name, [v for v in variants if v.kind == "front"
                                                        and v.name.startswith(f"{name}#")], images)):
                if figure is not None:
                    yield figure


def member_labels(front: list[Record]) -> list[str]:
    """'#1', '#2', ... and the value of the knob when exactly one varies along the front."""
    knobs = study.varying_keys(m.get("config") or {} for m in front)
    return [f"#{i}" + (f" {knobs[0]}={fmt(m['config'][knobs[0]])}" if len(knobs) == 1 else "")
            for i, m in enumerate(front, 1)]


def axis_label(metric: str, mode: str, record: Record) -> str:
    better = "lower" if mode == "min" else "higher"
    split = "" if metric in study.MODEL_PROPERTIES else f", {study.selection_split([record])} split"
    return f"{metric} ({better} is better{split})"
