"""The report's "Findings": short statements written from the numbers of this study, each naming its split.

A finding is produced only when the data supports it (a code-size finding needs several code sizes, a front finding
a front); nothing here is fixed text about autoencoders. Inputs: summary.json's variant records as written, and the
evaluation's leaderboard rows (test_* measured on the test split, val_* reported by the search).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from aetune.evaluate import stats, study
from aetune.evaluate.study import NO_BOTTLENECK, Record, fmt
from aetune.metrics import BIASED, OWN_LOSS, for_family
from aetune.numbers import is_finite

Row = dict[str, Any]
Finding = dict[str, Any]  # {"text": ..., "split": "validation" | "test" | "validation and test"}; "descriptive":
# True on a finding that states how something was done or measured and claims no difference (nothing to test).
# Every other finding names its test (stats.TEST), or says "not tested" or "indistinguishable".
NOT_TESTED = "one run; not tested"


def findings(records: dict[str, Record], rows: list[Row], pca: dict[int, float], probe_images: int | None = None,
             eval_noise: float | None = None) -> list[Finding]:
    """Every finding the numbers support, in reading order: how the picks were chosen, what won, what each
    knob and trade-off bought, which codes keep class information."""
    makers: list[Callable[[], Iterator[Finding]]] = [
        lambda: selected_on_test(records),
        lambda: best_reconstruction(rows, records),
        lambda: against_pca(rows),
        lambda: by_code_size(records, pca),
        lambda: sweeps(records, rows),
        lambda: knobs(records, eval_noise),
        lambda: fronts(records, rows),
        lambda: robustness(rows, eval_noise),
        lambda: probe(rows, probe_images),
        lambda: generalisation(rows),
    ]
    return [finding for make in makers for finding in make()]


def finding(text: str, split: str, descriptive: bool = False) -> Finding:
    return {"text": text, "split": split, **({"descriptive": True} if descriptive else {})}


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
                      f"{'its' if len(names) == 1 else 'their'} test scores are not held-out estimates.", "test",
                      descriptive=True)


def runs(row: Row, key: str) -> list[float]:
    """A pick's values of `key` (val_bce, test_bce...) over its repeats, else its one run's."""
    return row.get(f"{key}_runs") or ([row[key]] if is_finite(row.get(key)) else [])


def shown(row: Row, key: str) -> str:
    """A pick's value: the mean ± 95 % half-width over its K repeats, or its one run's value."""
    values = runs(row, key)
    return str(stats.estimate(values)) + (f" over {len(values)} seeds" if len(values) > 1 else " (one run)")


def outcome(verdict: str, k: int) -> str:
    return {"untested": NOT_TESTED, "indistinguishable": f"indistinguishable at {k} seeds"}.get(
        verdict, verdict)


def first_vs_second(groups: list[list[Row]], key: str, mode: str = "min") -> list[tuple[float | None, str, int]]:
    """Each ordered group's first pick against its second on `key` (the test split's values): Welch's p, Holm over
    the groups, the verdict and the fewer of their runs; (None, "untested", 1) for a group of one."""
    adjusted = stats.holm([stats.p_value(runs(g[0], key), runs(g[1], key)) if len(g) > 1 else None for g in groups])
    compared = []
    for group, p in zip(groups, adjusted):
        a, b = (runs(group[0], key), runs(group[1], key)) if len(group) > 1 else ([], [])
        compared.append((p, stats.verdict(p, a, b, mode), min(len(a), len(b)) or 1))
    return compared


def best_reconstruction(rows: list[Row], records: dict[str, Record]) -> Iterator[Finding]:
    """Within each code size, the pick ranked first by validation BCE (the split it was selected on; the mean of
    its repeats where it has them) against the runner-up on the test split (the same test images for both): a
    difference is claimed only where Welch's test holds it (Holm over the code sizes). Codes without a bottleneck
    are never "best". Comparisons across code sizes are the code-size view's (by_code_size)."""
    groups = [[r for r in rows if r["kind"] == "model" and r.get("group") == size and r.get("rank")]
              for size in sorted({r["group"] for r in rows if r["kind"] == "model" and r.get("rank")})]
    groups = [sorted(g, key=lambda r: r["rank"]) for g in groups if len(g) >= 2]
    split = study.selection_split(records[r["name"]] for g in groups for r in g if r["name"] in records)
    for group, (p, verdict, k) in zip(groups, first_vs_second(groups, "test_bce")):
        best, second = group[:2]
        claim = (f"{best['name']} reconstructs better than {second['name']}" if verdict == "better" else
                 f"{best['name']} vs {second['name']}: {outcome(verdict, k)}")
        yield finding(f"At code size {best['group']}, {best['name']} ranks first of the {len(group)} picks on the "
                      f"{split} split (BCE {shown(best, 'val_bce')}); on the test split "
                      f"{shown(best, 'test_bce')} vs {shown(second, 'test_bce')} for {second['name']}: {claim}"
                      + (f" ({stats.TEST}, p = {p:.3g})" if p is not None else "") + ".",
                      "test" if split == "test" else f"{split} and test")
    unbounded = [r["name"] for r in rows if r["kind"] == "model" and r.get("note") == NO_BOTTLENECK]
    if unbounded:
        yield finding(f"{', '.join(unbounded)}: the code has at least as many numbers as the image (no bottleneck), "
                      "so it is not ranked and never called best.", "test", descriptive=True)


def against_pca(rows: list[Row]) -> Iterator[Finding]:
    """Each pick against PCA with as many components as its code, on the same test images: PCA is one
    deterministic fit, so the test is the one-sample t-test of the pick's repeats against it (Holm over picks)."""
    table = by_name(rows)
    pairs = [(r, table[r["pca_baseline"]]) for r in picks(rows, "test_bce")
             if r.get("pca_baseline") in table and r.get("note") != NO_BOTTLENECK]
    capped = [r["name"] for r, p in pairs if p["code"] < r["code"]]
    pairs = [(r, p) for r, p in pairs if p["code"] >= r["code"]]
    if not pairs:
        return
    adjusted = stats.holm([stats.p_value(runs(r, "test_bce"), [p["test_bce"]], b_fixed=True) for r, p in pairs])
    by_verdict: dict[str, list[str]] = {}
    for (r, p), q in zip(pairs, adjusted):
        verdict = stats.verdict(q, runs(r, "test_bce"), [p["test_bce"]])
        label = outcome(verdict, len(runs(r, "test_bce")))
        by_verdict.setdefault(label, []).append(f"{r['name']} {shown(r, 'test_bce')} vs {num(p['test_bce'])} for "
                                                f"{p['name']}")
    parts = [f"{label}: {'; '.join(items)}" for label, items in by_verdict.items()]
    yield finding(f"On the test split, each pick against PCA with as many components as its code ({stats.TEST}; "
                  f"PCA is one deterministic fit, so a one-sample t-test): " + "; ".join(
                      f"[{part}]" for part in parts)
                  + (f"; not compared, PCA capped below the code's size: {', '.join(capped)}" if capped else "")
                  + ".", "test")


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
                  f": {'; '.join(parts)} (each size's best of its trials, one run picked for being lowest: it "
                  "overstates what the size gives; not tested).", split)


def sweeps(records: dict[str, Record], rows: list[Row] = ()) -> Iterator[Finding]:
    """A swept knob: each member's pick, on the variant's own (single) metric. A knob whose best on that metric is
    known before the study ran (aetune.metrics.BIASED: a larger code always reconstructs better) gets its curve, value by
    value, never a "best" — the answer the search guard exists to refuse. Members whose models say their own loss is
    a likelihood bound (rows' `likelihood`: a VAE's negative ELBO charges each latent dimension its KL) get a best
    code size on val_loss and train_loss, tested like any knob (aetune.metrics.for_family)."""
    table = by_name(rows)
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
        by_value = sorted(((s[key], r) for s, r in members if key in s), key=lambda p: p[0])
        values = member_values(key, metric, by_value)
        bound = all(table.get(n, {}).get("likelihood") for n in names)
        bias = BIASED.get(key) and for_family(BIASED[key], bound)
        if bias and metric in (*bias.low, *bias.high):
            why = bias.why.split(" (")[0].split(",")[0]  # "a larger code always reconstructs better"
            yield finding(f"{base} swept over {key}, {split} split: {metric} of each member's pick by {key}: "
                          f"{values} (a trade-off curve, not a best: {why}).", split, descriptive=True)
            continue
        sizes = {(r.get("metrics") or {}).get("code_size") for _, r in members}
        if len(sizes) > 1 and not (bound and metric in OWN_LOSS):  # e.g. filter lists: each value is another code
            # size, and a larger code reconstructs better (not on a likelihood bound, which charges the code its KL)
            yield finding(f"{base} swept over {key}, {split} split: {metric} of each member's pick by {key}: "
                          f"{values} (a trade-off curve, not a best: the values give codes of different sizes).", split,
                          descriptive=True)
            continue
        yield sweep_best(base, key, metric, mode, [(s[key], r) for s, r in members if key in s], split)


def member_values(key: str, metric: str, members: list[tuple[Any, Record]]) -> str:
    """'value: score' per member: the mean ± 95 % half-width over its pick's repeats where it has them
    ('(K seeds)'), else its pick's one run."""
    scored = ((value, member_runs(r, metric)) for value, r in members)
    return "; ".join(f"{fmt(value)}: {stats.estimate(runs_)}" + (f" ({len(runs_)} seeds)" if len(runs_) > 1 else "")
                     for value, runs_ in scored if runs_)


def member_runs(record: Record, metric: str) -> list[float]:
    """A sweep member's values of its metric: over its pick's repeats, else the pick's one run."""
    repeated = [r["metrics"][metric] for r in record.get("repeats") or []
                if is_finite((r.get("metrics") or {}).get(metric))]
    return repeated or ([record["metrics"][metric]] if is_finite((record.get("metrics") or {}).get(metric)) else [])


def sweep_best(base: str, key: str, metric: str, mode: str, members: list[tuple[Any, Record]],
               split: str) -> Finding:
    """'value X gives the best' only where the best member (by its repeats' mean) beats every other member under
    Welch's test, Holm over those comparisons (all on the same validation images); flagged on the edge of the range
    tried (a numeric knob's lowest or highest value: the best may lie beyond it)."""
    sign = 1 if mode == "min" else -1
    scored = sorted(((value, member_runs(r, metric)) for value, r in members if member_runs(r, metric)),
                    key=lambda p: sign * stats.estimate(p[1]).mean)
    best, others = scored[0], scored[1:]
    adjusted = stats.holm([stats.p_value(best[1], values) for _, values in others])
    verdicts = [stats.verdict(p, best[1], values, mode) for p, (_, values) in zip(adjusted, others)]
    values = member_values(key, metric, members)
    numeric = sorted(v for v, _ in scored if is_finite(v))
    edge = (f"; {key} {fmt(best[0])} is the {'lowest' if best[0] == numeric[0] else 'highest'} value tried: the best "
            "may lie outside the range" if is_finite(best[0]) and len(numeric) >= 2 and best[0] in (numeric[0],
                                                                                                     numeric[-1])
            else "")
    if all(v == "better" for v in verdicts):
        claim = f"{key} {fmt(best[0])} gives the best {metric} ({stats.TEST})"
    elif "untested" in verdicts:
        claim = f"{key} {fmt(best[0])} has the best {metric} of one run each; not tested"
    else:
        k = min(len(r) for _, r in scored)
        claim = (f"no value of {key} is better than every other: {key} {fmt(best[0])} has the best mean, "
                 f"indistinguishable at {k} seeds from " + ", ".join(
                     fmt(v) for (v, _), verdict in zip(others, verdicts) if verdict != "better") + f" ({stats.TEST})")
    return finding(f"{base} swept over {key}, {split} split: {claim} ({values}){edge}.", split)


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
        settings = ", ".join(f"{k} {fmt(best['config'].get(k))}" for k in turned)
        what = metric + (f" (clean images from inputs with noise {fmt(eval_noise)})"
                         if metric == "val_denoise_bce" and eval_noise is not None else "")
        completed = [t["metrics"][metric] for t in trials if t.get("state", "completed") == "completed"]
        worst = (max(completed) if mode == "min" else min(completed)) if len(completed) > 1 else None
        stopped = len(trials) - len(completed)
        split = study.selection_split([record])
        repeats = [r["metrics"][metric] for r in record.get("repeats") or [] if is_finite(r["metrics"].get(metric))]
        text = (f"{name}, {split} split: of {len(trials)} trials (one run each; not tested across seeds), {settings} "
                f"scored best on {what}, {num(best['metrics'][metric])}"
                + (f" (worst of the {len(completed)} that ran every epoch: {num(worst)}"
                   + (f"; {stopped} stopped early by ASHA left out)" if stopped else ")") if worst is not None else "")
                + (f"; the pick's config over {len(repeats)} new seeds: {stats.estimate(repeats)}" if repeats else ""))
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
        scored = [t for t in record.get("trial_results") or [] if t.get("metrics")]
        trials = len([t for t in scored if t.get("state", "completed") == "completed"])  # ASHA-stopped: not on it
        pick = next((m for m in front if m.get("trial_id") == record.get("trial_id")), None)
        chosen = ""
        if pick is not None:
            rule = (record.get("pick_rule") or "the search's rule").split(":")[0]  # its name, not its definition
            chosen = f"; picked #{front.index(pick) + 1} by {rule}"
        split = study.selection_split([record])
        stopped = len(scored) - trials
        yield finding(f"{name} front, {split} split: {len(front)} of {trials} trials that ran every epoch are "
                      "non-dominated" + (f" ({stopped} stopped early left out)" if stopped else "") +
                      f"; from one end to the other ({knob_range or 'along the front'}) {moves[0]} while "
                      f"{', '.join(moves[1:])}{chosen}; each member is one run (differences along the front are "
                      "not tested across seeds).", split)
        ends = [tested.get(first.get("trial_id")), tested.get(last.get("trial_id"))]
        measured = [(study.test_metric(m), m) for m, _ in pairs
                    if all(end is not None and is_finite(end.get(study.test_metric(m))) for end in ends)]
        if None not in ends and measured:
            text = ", ".join(f"{key} {num(ends[0][key])} -> {num(ends[1][key])}" for key, _ in measured)
            yield finding(f"{name} front re-scored on the test split, same two ends: {text} (one run each; not "
                          "tested).", "test")


# --- robustness and what the codes keep -----------------------------------------------------------------------

def within_code_sizes(models: list[Row], key: str, mode: str) -> list[tuple[int, list[Row], str]]:
    """The picks grouped by code size (across sizes a larger code simply keeps more), each group ordered by its
    mean over repeats of `key` (else the one run), with the verdict of its first against its second: Welch's test,
    Holm over the groups; a group of one pick is not compared."""
    sign = 1 if mode == "min" else -1
    groups = [sorted((r for r in models if r["code"] == size), key=lambda r: sign * stats.estimate(runs(r, key)).mean)
              for size in sorted({r["code"] for r in models})]
    out = []
    for group, (p, verdict, k) in zip(groups, first_vs_second(groups, key, mode)):
        if len(group) < 2:
            out.append((group[0]["code"], group, "one pick at this size; not tested"))
            continue
        a, b = group[:2]
        said = (f"{a['name']} {verdict} than {b['name']} ({stats.TEST}, p = {p:.3g})" if verdict in ("better", "worse")
                else f"{a['name']} vs {b['name']}: {outcome(verdict, k)}"
                + (f" ({stats.TEST}, p = {p:.3g})" if p is not None else ""))
        out.append((a["code"], group, said))
    return out


def robustness(rows: list[Row], eval_noise: float | None) -> Iterator[Finding]:
    """Denoising BCE of the picks on the test split, compared within each code size (repeats' means where the
    picks have them), with PCA of that size beside."""
    models = picks(rows, "test_denoise_bce")
    if len(models) < 2:
        return
    table = by_name(rows)
    noise = f" with noise {fmt(eval_noise)}" if eval_noise is not None else ""
    parts = []
    for size, group, said in within_code_sizes(models, "test_denoise_bce", "min"):
        pca = table.get(group[0].get("pca_baseline"), {})
        baseline = f"; {pca['name']} {num(pca['test_denoise_bce'])}" if is_finite(pca.get("test_denoise_bce")) else ""
        listed = ", ".join(f"{r['name']} {shown(r, 'test_denoise_bce')}" for r in group)
        parts.append(f"code size {size}: {listed}{baseline} ({said})")
    yield finding(f"Denoising on the test split, BCE of clean images recovered from inputs{noise}, within each code "
                  f"size: {'; '.join(parts)}.", "test")


def probe(rows: list[Row], probe_images: int | None) -> Iterator[Finding]:
    """Linear-probe accuracy of each pick's encoder (its one run: repeats are not probed), within each code size,
    with PCA of that size beside; raw pixels last."""
    models = picks(rows, "test_probe")
    if not models:
        return
    table = by_name(rows)
    parts = []
    for size, group, said in within_code_sizes(models, "test_probe", "max"):
        listed = []
        for r in group:
            pca = table.get(r.get("pca_baseline"), {})
            listed.append(f"{r['name']} ({r['code']} numbers) {percent(r['test_probe'])}" +
                          (f" vs {pca['name']} {percent(pca['test_probe'])}" if is_finite(pca.get("test_probe"))
                           else ""))
        parts.append(f"code size {size}: {', '.join(listed)} ({said})")
    pixels = [table[name] for name in {r.get("pixels_baseline") for r in models} if name in table]
    fitted = f" of {probe_images} training images" if probe_images else " of training images"
    yield finding(f"Linear probe (logistic regression on the frozen codes{fitted}), accuracy on the test split of "
                  "each pick's one run, within each code size: " + "; ".join(parts)
                  + "".join(f"; raw pixels {percent(p['test_probe'])}" for p in pixels) + ".", "test")


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
                  f"{num(worst['test_bce'])} test).", "validation and test", descriptive=True)
