#!/usr/bin/env python
"""Search efficiency on one trial-epoch budget: does TPE + ASHA come within 1% of the grid's best val_bce in a
third of the grid's trial-epochs, for most searcher seeds, and why (or why not)?

The problem: dense autoencoders (code 32) on a --train-size subset (10% of it held out: every number here is
val_bce on that validation split), --epochs epochs at most, searched over hidden_layers, batch_size and lr (GRID).
The reference is the grid: every combination, every epoch (FIFO). Every other searcher gets the same budget, B =
--budget-fraction x the grid's trial-epochs, over the same values (lr as a choice of the grid's values; with
--continuous, lr log-uniform over the grid's range, the grid at its own resolution). How B is held fixed: trials run
one at a time (resources cpus = all cores), so a run's trial-epochs in the order its trials started are the order
of the work, and a search stopped after B trial-epochs is exactly the first B of them (every decision before that
point depends only on results before it). Each run has `samples: B`, hence at least B trial-epochs (a trial runs
at least one), and is cut at B in the analysis; the training seed is 0 everywhere, the searcher seed varies.

The searchers (CONFIGS): random + ASHA; TPE with Optuna's defaults (10 random start-up trials, then multivariate
TPE) + ASHA; TPE with 4 start-up trials; the same, independent (univariate) TPE; the same with ASHA's reduction
factor 3 instead of 2 (grace period 1 throughout). TPE's settings go through the space file's `sampler` section.
For the why: TPE samples at random until its start-up trials have finished (compare "trials started in B"), and
Ray keeps one trial pending for a custom searcher, so TPE suggests each trial while the one before it still runs.

  python bench/search_efficiency.py --storage /tmp/aeb-se          # 1 grid + 5 configs x 5 seeds: 26 searches
  python bench/search_efficiency.py --storage /tmp/aeb-se --reuse  # re-analyse the finished runs
  python bench/search_efficiency.py --lrs 0.001 0.004 --epochs 2 --train-size 1000 --seeds 0 \\
      --configs random tpe                                         # smoke
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import _common

GRID = {"hidden_layers": [[128], [128, 64]], "batch_size": [64, 256],
        "lr": [0.0003, 0.0006, 0.001, 0.002, 0.004, 0.008]}
CONFIGS = {  # name: (label, searcher, TPE sampler settings, ASHA reduction factor)
    "random": ("random + ASHA rf 2", "random", {}, 2),
    "tpe": ("TPE, Optuna defaults (10 start-up) + ASHA rf 2", "optuna", {}, 2),
    "tpe4": ("TPE, 4 start-up + ASHA rf 2", "optuna", {"n_startup_trials": 4}, 2),
    "tpe4_uni": ("independent TPE, 4 start-up + ASHA rf 2", "optuna", {"n_startup_trials": 4, "multivariate": False},
                 2),
    "tpe4_rf3": ("TPE, 4 start-up + ASHA rf 3", "optuna", {"n_startup_trials": 4}, 3),
}
STARTUP_DEFAULT = 10  # optuna.samplers.TPESampler's n_startup_trials


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="searcher seeds (default 0-4)")
    p.add_argument("--lrs", nargs="+", type=float, default=GRID["lr"], help="the grid's lr values")
    p.add_argument("--continuous", action="store_true", help="searchers draw lr log-uniformly over the grid's range")
    p.add_argument("--epochs", type=int, default=4, help="maximum epochs per trial (default 4)")
    p.add_argument("--train-size", type=int, default=3000)
    p.add_argument("--budget-fraction", type=float, default=1 / 3, help="B / the grid's trial-epochs (default 1/3)")
    p.add_argument("--tolerance", type=float, default=0.01, help="'within': val_bce <= (1 + this) x grid best")
    p.add_argument("--storage", type=Path, help="experiments folder (default: a temporary one, deleted afterwards)")
    p.add_argument("--reuse", action="store_true", help="do not rerun experiments that finished (summary.json)")
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    return p.parse_args(argv)


# --- the budget: pure functions ------------------------------------------------------------------------------------

@dataclass
class Budgeted:
    best: float  # best value in the first `budget` trial-epochs
    epochs_to_target: int | None  # trial-epochs until the best first met the target, if it did within the budget
    trials: int  # trials started within the budget
    complete: bool  # the run had at least `budget` trial-epochs


def within_budget(curves: list[list[float]], budget: int, target: float) -> Budgeted:
    """A minimising search as if stopped after `budget` trial-epochs; `curves` are the trials' values per epoch in
    the order the work was done (one trial after another). NaN and inf count as no result."""
    flat = [v if math.isfinite(v) else math.inf for curve in curves for v in curve]
    used = flat[:budget]
    starts = itertools.accumulate([0] + [len(c) for c in curves[:-1]])
    reached = next((i + 1 for i, best in enumerate(itertools.accumulate(used, min)) if best <= target), None)
    return Budgeted(min(used, default=math.inf), reached, sum(1 for s in starts if s < budget), len(flat) >= budget)


def work_order(trials: list[dict], spans: list[tuple[str, float, float]], metric: str) -> list[list[float]]:
    """Each trial's metric per epoch, trials in the order they first started (trial_spans)."""
    first = {}
    for trial, start, _ in spans:
        first.setdefault(trial, start)
    ordered = sorted(trials, key=lambda t: first.get(t["id"], math.inf))
    return [[r.get(metric, math.nan) for r in t["results"]] for t in ordered]


def overlapped(spans: list[tuple[str, float, float]]) -> bool:
    """Whether a trial started before the one before it ended (then the order of work is not a sequence)."""
    return any(b[1] < a[2] for a, b in zip(spans, spans[1:]))


# --- the runs ------------------------------------------------------------------------------------------------------

def grid_size(args: argparse.Namespace) -> int:
    return len(GRID["hidden_layers"]) * len(GRID["batch_size"]) * len(args.lrs)


def experiment(args: argparse.Namespace, name: str, searcher: str, sampler: dict | None = None,
               reduction_factor: int = 2, *, seed: int, budget: int) -> Path:
    """Run one search (unless --reuse finds it finished); returns its stamps file."""
    stamps = args.storage / f"{name}.jsonl"
    if args.reuse and (args.storage / name / "summary.json").is_file():
        return stamps
    shutil.rmtree(args.storage / name, ignore_errors=True)
    stamps.unlink(missing_ok=True)
    grid = searcher == "grid"
    lr = {"loguniform": [min(args.lrs), max(args.lrs)]} if args.continuous and not grid else {"choice": args.lrs}
    dense = {"model": "dense", "code_size": 32, "hidden_layers": {"choice": GRID["hidden_layers"]},
             "batch_size": {"choice": GRID["batch_size"]}, "lr": lr}
    space = _common.write_space(
        args.storage, name, variants={"dense": dense}, searcher=searcher, seed=seed, epochs=args.epochs,
        samples=1 if grid else budget, scheduler="fifo" if grid else "asha",
        asha={"grace_period": 1, "reduction_factor": reduction_factor},
        resources={"cpus": os.cpu_count(), "gpus": 0}, defaults={"train_size": args.train_size, "seed": 0},
        **({"sampler": sampler} if sampler else {}))
    _common.progress(f"running {name}")
    _common.search(["--space", str(space), "--storage", str(args.storage), "--quiet",
                    "--data-root", _common.data_root(args.data_root)], stamps=stamps)
    return stamps


def analyse(args: argparse.Namespace, name: str, stamps: Path) -> dict:
    """A finished run: its trials' val_bce per epoch in the order of work, its wall time, and whether trials
    overlapped."""
    events = _common.stamps(stamps)
    spans = _common.trial_spans(events)
    launch = next(e["t_launch"] for e in events if e["event"] == "driver_start")
    return {"curves": work_order(_common.trials(args.storage / name), spans, "val_bce"), "overlap": overlapped(spans),
            "wall": max(e["t"] for e in events if e["event"] == "main_done") - launch}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.header()
    keep = args.storage is not None
    args.storage = (args.storage or Path(tempfile.mkdtemp(prefix="aetune-bench-search-"))).resolve()
    grid_epochs = grid_size(args) * args.epochs
    budget = math.floor(grid_epochs * args.budget_fraction + 1e-9)
    grid = analyse(args, "grid", experiment(args, "grid", "grid", seed=0, budget=budget))
    runs = {(c, seed): analyse(args, f"{c}_s{seed}", experiment(args, f"{c}_s{seed}", *CONFIGS[c][1:], seed=seed,
                                                                  budget=budget))
            for seed in args.seeds for c in args.configs}
    best = within_budget(grid["curves"], grid_epochs, -math.inf).best
    target = best * (1 + args.tolerance)
    for r in [grid, *runs.values()]:
        r["cut"] = within_budget(r["curves"], budget, target)

    lr = (f"lr log-uniform over [{min(args.lrs):g}, {max(args.lrs):g}] (the grid: {len(args.lrs)} values)"
          if args.continuous else f"lr in {args.lrs}")
    print(f"Dense code 32 on {args.train_size:,} MNIST training images (val_bce on the 10% held out), up to "
          f"{args.epochs} epochs, over hidden_layers in {GRID['hidden_layers']}, batch_size in {GRID['batch_size']}, "
          f"{lr}. Grid: {grid_size(args)} configs x {args.epochs} epochs = {grid_epochs} trial-epochs, best val_bce "
          f"{best:.5f}. Budget B = {budget} trial-epochs ({args.budget_fraction:.3g} of the grid's) for every "
          f"searcher; target: val_bce <= {1 + args.tolerance:g} x the grid's best = {target:.5f}.\n")
    rows = [["grid + FIFO, all of it (the reference)", "-", grid_epochs, f"{best:.5f}", "+0.00%", "-", "-"],
            ["grid + FIFO, its first B trial-epochs", "-", *cut_row(grid, best)]]
    rows += [[CONFIGS[c][0], seed, *cut_row(r, best)] for (c, seed), r in runs.items()]
    print(_common.table(["searcher", "seed", "trial-epochs run", "best val_bce in B", "vs grid best",
                         "trial-epochs to target", "trials started in B"], rows) + "\n")
    print(_common.table(["searcher", f"seeds within {args.tolerance:.0%} in B", "median vs grid best",
                         "median trial-epochs to target", "median trials in B",
                         "of them after TPE's start-up (approx.)", "median experiment wall s"],
                        [summary(c, [runs[c, s] for s in args.seeds], best) for c in args.configs]))
    named = [("grid", grid), *((f"{c}_s{s}", r) for (c, s), r in runs.items())]
    notes = [f"- {name}: trials overlapped: the order of work is not one sequence, the cut at B approximate"
             for name, r in named if r["overlap"]]
    notes += [f"- {name}: fewer than B trial-epochs run" for name, r in named if not r["cut"].complete]
    print("\n" + "\n".join(notes) if notes else "", end="")
    if "tpe" in args.configs:
        hits = sum(runs["tpe", s]["cut"].epochs_to_target is not None for s in args.seeds)
        print(f"\nTPE + ASHA (Optuna's defaults) came within {args.tolerance:.0%} of the grid's best within "
              f"{args.budget_fraction:.3g} of its budget for {hits} of {len(args.seeds)} seeds: "
              f"{'yes' if hits > len(args.seeds) / 2 else 'no'}, for most seeds.")
    _common.footer()
    if not keep:
        shutil.rmtree(args.storage, ignore_errors=True)
    return 0


def cut_row(run: dict, best: float) -> list[object]:
    b = run["cut"]
    return [sum(map(len, run["curves"])), f"{b.best:.5f}",
            f"{b.best / best - 1:+.2%}" if math.isfinite(b.best) else "no result",
            b.epochs_to_target if b.epochs_to_target is not None else "not in B", b.trials]


def summary(config: str, runs: list[dict], best: float) -> list[object]:
    results = [r["cut"] for r in runs]
    reached = [b.epochs_to_target for b in results if b.epochs_to_target is not None]
    startup = CONFIGS[config][2].get("n_startup_trials", STARTUP_DEFAULT) if CONFIGS[config][1] == "optuna" else None
    trials = _common.median([b.trials for b in results])
    return [CONFIGS[config][0], f"{len(reached)}/{len(results)}",
            f"{_common.median([b.best for b in results]) / best - 1:+.2%}",
            f"{_common.median(reached):g} (of {len(reached)} seeds)" if reached else "-", f"{trials:g}",
            f"{max(0, trials - startup):g}" if startup is not None else "-",
            f"{_common.median([r['wall'] for r in runs]):.0f}"]


if __name__ == "__main__":
    sys.exit(main())
