"""The report's "Findings": short statements written from the numbers of this study, each naming its split.

A finding is produced only when the data supports it (a code-size finding needs several code sizes, a front finding
a front); nothing here is fixed text about autoencoders. Inputs: summary.json's variant records as written, and the
evaluation's leaderboard rows (test_* measured on the test split, val_* reported by the search).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from aetune.evaluate import study
from aetune.evaluate.study import Record, fmt
from aetune.metrics import BIASED
from aetune.numbers import is_finite

Row = dict[str, Any]
Finding = dict[str, str]  # {"text": ..., "split": "validation" | "test" | "validation and test"}


def findings(records: dict[str, Record], rows: list[Row], pca: dict[int, float], probe_images: int | None = None,
             eval_noise: float | None = None) -> list[Finding]:
    """Every finding the numbers support, in reading order: how the picks were chosen, what won, what each
    knob and trade-off bought, which codes keep class information."""
    makers: list[Callable[[], Iterator[Finding]]] = [
        lambda: selected_on_test(records),
        lambda: best_reconstruction(rows, records),
        lambda: against_pca(rows),
        lambda: by_code_size(records, pca),
        lambda: sweeps(records),
        lambda: knobs(records, eval_noise),
        lambda: fronts(records, rows),
        lambda: robustness(rows, eval_noise),
        lambda: probe(rows, probe_images),
        lambda: generalisation(rows),
    ]
    return [finding for make in makers for finding in make()]


def finding(text: str, split: str) -> Finding:
    return {"text": text, "split": split}


def picks(rows: list[Row], key: str) -> list[Row]:
    """The picked models (not baselines or front members) that have a finite `key`."""
    return [r for r in rows if r["kind"] == "model" and is_finite(r.get(key))]


def by_name(rows: list[Row]) -> dict[str, Row]:
    return {r["name"]: r for r in rows}


def num(score: Any) -> str:
    """A score: four significant digits, so close models stay apart (0.1003 vs 0.1012)."""
    return fmt(score, 4)


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


# --- how the picks were chosen, and what won -------------------------------------------------------------------

def selected_on_test(records: dict[str, Record]) -> Iterator[Finding]:
    names = [name for name, r in records.items() if r.get("selected_on") == "test"]
    if names:
        yield finding(f"Selected on the test split (val_size: 0, the course protocol): {', '.join(names)} "
                      f"{'was' if len(names) == 1 else 'were'} picked by scores on the test split, so "
                      f"{'its' if len(names) == 1 else 'their'} test scores are not held-out estimates.", "test")


def best_reconstruction(rows: list[Row], records: dict[str, Record]) -> Iterator[Finding]:
    """The winner by the score it was selected on (val_bce), its test score beside: naming it by test BCE would
    choose on the split meant to report it. Older picks without a val_bce take no part."""
    models = [r for r in picks(rows, "val_bce") if is_finite(r.get("test_bce"))]
    if not models:
        return
    best, table = min(models, key=lambda r: r["val_bce"]), by_name(rows)
    split = study.selection_split(records[r["name"]] for r in models if r["name"] in records)
    baselines = [f"{num(table[name]['test_bce'])} for {label}" for name, label in
                 ((best.get("pca_baseline"), f"PCA with as many components ({best.get('pca_baseline')})"),
                  (best.get("mean_baseline"), "the mean image")) if name in table]
    yield finding(f"On the {split} split (the one the picks were selected on), {best['name']} reconstructs best of "
                  f"the {len(models)} picked models (BCE {num(best['val_bce'])}); on the test split its BCE is "
                  f"{num(best['test_bce'])}" + (f", vs {' and '.join(baselines)}" if baselines else "") + ".",
                  "test" if split == "test" else "validation and test")


def against_pca(rows: list[Row]) -> Iterator[Finding]:
    table = by_name(rows)
    pairs = [(r, table[r["pca_baseline"]]) for r in picks(rows, "test_bce") if r.get("pca_baseline") in table]
    if len(pairs) < 2:
        return
    losers = [(r, p) for r, p in pairs if r["test_bce"] >= p["test_bce"]]
    margins = [(p["test_bce"] - r["test_bce"]) / p["test_bce"] for r, p in pairs if r["test_bce"] < p["test_bce"]]
    text = f"On the test split, {len(pairs) - len(losers)} of {len(pairs)} picked models reconstruct better than PCA " \
           "with as many components as their code"
    if margins:
        spread = percent(min(margins)) + (f" to {percent(max(margins))}" if len(margins) > 1 else "")
        text += f" (BCE lower by {spread})"
    if losers:
        text += "; not " + ", ".join(f"{r['name']} ({num(r['test_bce'])} vs {num(p['test_bce'])} for {p['name']})"
                                     for r, p in losers)
    yield finding(text + ".", "test")


# --- what the knobs bought -------------------------------------------------------------------------------------

def by_code_size(records: dict[str, Record], pca: dict[int, float]) -> Iterator[Finding]:
    """The best trial at each code size over the whole study, against PCA of that size scored on the same
    images the trials were (`pca`: see scoring.pca_curve)."""
    if len(study.code_sizes(records)) < 2:
        return
    best: dict[int, tuple[float, str]] = {}
    for name, record in records.items():
        for size, bce, _ in study.trial_points(record.get("trial_results") or [], "code_size", "val_bce"):
            best[int(size)] = min(best.get(int(size), (float("inf"), "")), (bce, name))
    if len(best) < 2:
        return
    split = study.selection_split(records.values())
    parts = [f"{size}: {num(bce)} ({name})" + (f" vs PCA {num(pca[size])}" if size in pca else "")
             for size, (bce, name) in sorted(best.items())]
    trials = sum(len(study.trial_points(r.get("trial_results") or [], "code_size", "val_bce"))
                 for r in records.values())
    yield finding(f"By code size, the best of {trials} trials' BCE on the {split} split" +
                  (" against PCA's at the same size on the same images" if any(s in pca for s in best) else "") +
                  f": {'; '.join(parts)}.", split)


def sweeps(records: dict[str, Record]) -> Iterator[Finding]:
    """A swept knob: each member's pick, on the variant's own (single) metric. A knob whose best on that metric is
    known before the study ran (aetune.metrics.BIASED: a larger code always reconstructs better) gets its curve, value by
    value, never a "best" — the answer the search guard exists to refuse."""
    for base, names in study.groups(records).items():
        members = [(records[n]["sweep"], records[n]) for n in names if len(records[n].get("sweep") or {}) == 1]
        pairs = {tuple(study.objectives(r)) for _, r in members}
        if len(members) < 2 or len(pairs) != 1 or len(next(iter(pairs))) != 1:
            continue
        metric, mode = next(iter(pairs))[0]
        key = next(iter(members[0][0]))
        scored = sorted(((s[key], r["metrics"][metric]) for s, r in members
                         if key in s and is_finite((r.get("metrics") or {}).get(metric))), key=lambda p: p[0])
        if len(scored) < 2:
            continue
        split = study.selection_split(r for _, r in members)
        values = "; ".join(f"{fmt(value)}: {num(score)}" for value, score in scored)
        bias = BIASED.get(key)
        if bias and metric in (*bias.low, *bias.high):
            why = bias.why.split(" (")[0].split(",")[0]  # "a larger code always reconstructs better"
            yield finding(f"{base} swept over {key}, {split} split: {metric} of each member's pick by {key}: "
                          f"{values} (a trade-off curve, not a best: {why}).", split)
            continue
        best = (min if mode == "min" else max)(scored, key=lambda p: p[1])
        yield finding(f"{base} swept over {key}, {split} split: {key} {fmt(best[0])} gives the best {metric} "
                      f"({values}).", split)


def knobs(records: dict[str, Record], eval_noise: float | None) -> Iterator[Finding]:
    """What each single-objective search found over the knobs it turned (sweep members: see sweeps)."""
    for name, record in records.items():
        trials = [t for t in record.get("trial_results") or [] if study.objectives(record)
                  and is_finite((t.get("metrics") or {}).get(study.objectives(record)[0][0]))]
        best = study.best_trial(record)
        turned = study.varying_keys(t.get("config") or {} for t in trials)
        if record.get("sweep") or best is None or len(trials) < 3 or not turned:
            continue
        metric, mode = study.objectives(record)[0]
        scores = [t["metrics"][metric] for t in trials]
        settings = ", ".join(f"{k} {fmt(best['config'].get(k))}" for k in turned)
        what = metric + (f" (clean images from inputs with noise {fmt(eval_noise)})"
                         if metric == "val_denoise_bce" and eval_noise is not None else "")
        worst = max(scores) if mode == "min" else min(scores)
        split = study.selection_split([record])
        text = (f"{name}, {split} split: of {len(trials)} trials, {settings} gives the best {what}, "
                f"{num(best['metrics'][metric])} (worst {num(worst)})")
        edges = [edge for k in turned if (edge := at_edge(k, best, trials))]
        yield finding(text + (f"; {'; '.join(edges)}: the best may lie outside the searched range" if edges else "")
                      + ".", split)


def at_edge(key: str, best: Record, trials: list[Record]) -> str | None:
    """'l1 1e-06 is the lowest value tried' when a numeric knob's best sits on the edge of 3+ tried values."""
    values = sorted({t["config"][key] for t in trials if is_finite((t.get("config") or {}).get(key))})
    value = best["config"].get(key)
    if len(values) < 3 or not is_finite(value) or values[0] < value < values[-1]:
        return None
    return f"{key} {fmt(value)} is the {'lowest' if value == values[0] else 'highest'} value tried"


def fronts(records: dict[str, Record], rows: list[Row]) -> Iterator[Finding]:
    """Each front end to end: the knobs that vary along it and what each objective does."""
    tested = {r.get("trial_id"): r for r in rows if r["kind"] == "front"}
    for name, record in records.items():
        front, pairs = study.sorted_front(record), study.objectives(record)
        if len(pairs) < 2 or len(front) < 2:
            continue
        first, last = front[0], front[-1]
        knob_range = ", ".join(f"{k} {fmt(first['config'].get(k))} to {fmt(last['config'].get(k))}"
                               for k in study.varying_keys(m.get("config") or {} for m in front))
        moves = [f"{metric} {num(first['metrics'].get(metric))} -> {num(last['metrics'].get(metric))}"
                 for metric, _ in pairs]
        trials = len([t for t in record.get("trial_results") or [] if t.get("metrics")])
        pick = next((m for m in front if m.get("trial_id") == record.get("trial_id")), None)
        chosen = ""
        if pick is not None:
            rule = (record.get("pick_rule") or "the search's rule").split(":")[0]  # its name, not its definition
            chosen = f"; picked #{front.index(pick) + 1} by {rule}"
        split = study.selection_split([record])
        yield finding(f"{name} front, {split} split: {len(front)} of {trials} trials are non-dominated; from one "
                      f"end to the other ({knob_range or 'along the front'}) {moves[0]} while "
                      f"{', '.join(moves[1:])}{chosen}.", split)
        ends = [tested.get(first.get("trial_id")), tested.get(last.get("trial_id"))]
        measured = [(study.test_metric(m), m) for m, _ in pairs
                    if all(end is not None and is_finite(end.get(study.test_metric(m))) for end in ends)]
        if None not in ends and measured:
            text = ", ".join(f"{key} {num(ends[0][key])} -> {num(ends[1][key])}" for key, _ in measured)
            yield finding(f"{name} front re-scored on the test split, same two ends: {text}.", "test")


# --- robustness and what the codes keep -----------------------------------------------------------------------

def robustness(rows: list[Row], eval_noise: float | None) -> Iterator[Finding]:
    models = sorted(picks(rows, "test_denoise_bce"), key=lambda r: r["test_denoise_bce"])
    if len(models) < 2:
        return
    table = by_name(rows)
    pca = table.get(models[0].get("pca_baseline"), {})
    noise = f" with noise {fmt(eval_noise)}" if eval_noise is not None else ""
    listed = ", ".join(f"{r['name']} {num(r['test_denoise_bce'])}" for r in models)
    baseline = f"; {pca['name']} {num(pca['test_denoise_bce'])}" if is_finite(pca.get("test_denoise_bce")) else ""
    yield finding(f"Denoising on the test split, BCE of clean images recovered from inputs{noise}: {listed}"
                  f"{baseline}.", "test")


def probe(rows: list[Row], probe_images: int | None) -> Iterator[Finding]:
    models = sorted(picks(rows, "test_probe"), key=lambda r: -r["test_probe"])
    if not models:
        return
    table = by_name(rows)
    parts = []
    for r in models:
        pca = table.get(r.get("pca_baseline"), {})
        parts.append(f"{r['name']} ({r['code']} numbers) {percent(r['test_probe'])}" +
                     (f" vs {pca['name']} {percent(pca['test_probe'])}" if is_finite(pca.get("test_probe")) else ""))
    pixels = [table[name] for name in {r.get("pixels_baseline") for r in models} if name in table]
    fitted = f" of {probe_images} training images" if probe_images else " of training images"
    yield finding(f"Linear probe (logistic regression on the frozen codes{fitted}), accuracy on the test split: "
                  + "; ".join(parts) + "".join(f"; raw pixels {percent(p['test_probe'])}" for p in pixels) + ".",
                  "test")


def generalisation(rows: list[Row]) -> Iterator[Finding]:
    """How far the test BCE of checkpoints picked on validation moves from their validation BCE."""
    models = [r for r in picks(rows, "test_bce") if r.get("selected_on") == "validation" and is_finite(r.get("val_bce"))]
    if not models:
        return

    def gap(r: Row) -> float:
        return (r["test_bce"] - r["val_bce"]) / r["val_bce"]

    worst = max(models, key=lambda r: abs(gap(r)))
    yield finding(f"Validation vs test: the picked checkpoints' test BCE is within {percent(abs(gap(worst)))} of "
                  f"their validation BCE (largest gap: {worst['name']}, {num(worst['val_bce'])} validation vs "
                  f"{num(worst['test_bce'])} test).", "validation and test")
