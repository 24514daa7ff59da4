#!/usr/bin/env python
"""Search efficiency on a budget of trial-epochs: Optuna TPE + ASHA, random + ASHA, and a grid without early stopping.

Every run goes through `python -m aetune.search` on a temporary space per searcher (variants dense and conv, a small
train subset, a few epochs). The grid (scheduler fifo) enumerates every config once; its best val_loss is the
reference. TPE and random search the same ranges (lr log-uniform over the grid's lr range, the other keys as
categorical choices) with ASHA (grace 1, reduction 2), for several searcher seeds; the training seed is fixed at 0 in
every run, so any difference comes from the search alone. Trials run one at a time (cpus 2 per trial), so the order
of the trial folders is the order of the work; each trial's result.json (one JSON line per epoch) gives the
trial-epochs spent and the val_loss seen, hence the best val_loss after B trial-epochs and the budget B at which a
searcher first comes within 1% of the grid's best.

  python bench/search_efficiency.py                         # dense + conv, seeds 0 1 2 (~20 min on 2 cores)
  python bench/search_efficiency.py --variants dense --seeds 0 --epochs 3
  python bench/search_efficiency.py --storage /tmp/se --reuse   # re-analyse finished runs without rerunning
  python bench/search_efficiency.py --searchers optuna optuna_fix --storage /tmp/se --reuse

`optuna_fix` is a proposed change, tried from outside aetune (the driver runs aetune.search.main with
aetune.runner.make_searcher patched): TPESampler(n_startup_trials=--fix-startup) instead of Optuna's default 10
random start-up trials, and a trial that ASHA stopped reports its last val_loss to Optuna before it is told PRUNED
(aetune's PrunedOptunaSearch tells it PRUNED without the final result, so a trial stopped at the first rung has no
value at all and TPE ranks it below everything).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

LABELS = {"optuna": "TPE + ASHA", "random": "random + ASHA", "optuna_fix": "TPE + ASHA, proposed fix"}
LRS = [0.0003, 0.001, 0.003, 0.01]
GRID = {
    "dense": {"model": "dense", "hidden_layers": [[128], [128, 64]], "code_size": [16, 32], "lr": LRS},
    "conv": {"model": "conv", "filters": [[8, 8, 8], [16, 8, 8], [16, 16], [32, 32]], "lr": LRS},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(GRID), choices=list(GRID))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="searcher seeds (default 0 1 2)")
    p.add_argument("--searchers", nargs="+", default=["optuna", "random"], choices=list(LABELS),
                   help="searchers compared with the grid (default optuna random)")
    p.add_argument("--fix-startup", type=int, default=5, help="n_startup_trials of optuna_fix (default 5)")
    p.add_argument("--epochs", type=int, default=4, help="maximum epochs per trial (default 4)")
    p.add_argument("--samples", type=int, default=24,
                   help="trials per TPE/random run (default 24: about 2 epochs each under ASHA, i.e. ~3/4 of the "
                        "grid's 16 x 4 trial-epochs)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tolerance", type=float, default=0.01, help="'within' means <= (1 + tolerance) x grid best")
    p.add_argument("--storage", help="experiments folder (default: a temporary folder, deleted afterwards)")
    p.add_argument("--reuse", action="store_true", help="skip experiments that already have a summary.json")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--driver-fix", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # internal: patched driver
    return p.parse_args(argv)


def space(args: argparse.Namespace, searcher: str, seed: int) -> dict:
    variants = {}
    for name in args.variants:
        spec = {"model": GRID[name]["model"]}
        for key, values in GRID[name].items():
            if key == "model":
                continue
            if searcher == "grid":
                spec[key] = {"grid": values}
            elif key == "lr":
                spec[key] = {"loguniform": [min(values), max(values)]}
            else:
                spec[key] = {"choice": values}
        variants[name] = spec
    return {
        "name": f"{searcher}_s{seed}", "dataset": "mnist", "metric": "val_loss", "epochs": args.epochs,
        "samples": 1 if searcher == "grid" else args.samples,
        "searcher": "optuna" if searcher == "optuna_fix" else searcher,
        "scheduler": "fifo" if searcher == "grid" else "asha",
        "asha": {"grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 2, "gpus": 0},
        "seed": seed,  # the searcher's seed
        "defaults": {"train_size": args.train_size, "test_size": args.test_size, "batch_size": args.batch_size,
                     "seed": 0},  # the training seed: the same in every run
        "variants": variants,
    }


def run_experiment(args: argparse.Namespace, storage: Path, searcher: str, seed: int) -> float | None:
    """Run one experiment (unless --reuse finds it done); returns its wall time."""
    spec = space(args, searcher, seed)
    folder = storage / spec["name"]
    if args.reuse and (folder / "summary.json").is_file():
        return None
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    driver = ([__file__, "--driver-fix", str(args.fix_startup)] if searcher == "optuna_fix"
              else ["-m", "aetune.search"])
    cmd = [sys.executable, *driver, "--space", str(path), "--name", spec["name"],
           "--storage", str(storage), "--data-root", _common.data_root(args.data_root), "--quiet"]
    load = _common.load()
    start = time.perf_counter()
    proc = _common.run(cmd, env=_common.python_env())
    wall = time.perf_counter() - start
    (storage / f"{spec['name']}.log").write_text(proc.stdout + proc.stderr)
    print(f"<!-- {spec['name']}: {wall:.0f} s, load before {load}, after {_common.load()} -->", file=sys.stderr,
          flush=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {storage / spec['name']}.log\n{proc.stderr[-2000:]}")
    return wall


def trajectory(folder: Path) -> list[float]:
    """val_loss of every trial-epoch, in the order the work was done (trials ran one at a time)."""
    # Run order = creation order: Optuna's trial number (optuna_trials.json maps it to Ray's trial id), or the
    # running index that ends Ray's ids for the random and grid searchers (..._00007).
    optuna_file = folder / "optuna_trials.json"
    numbers = ({t["ray_trial_id"]: t["number"] for t in json.loads(optuna_file.read_text()) if t["ray_trial_id"]}
               if optuna_file.is_file() else {})
    trials = []
    for result in folder.glob("trial_*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        trial_id = lines[0]["trial_id"]
        order = numbers[trial_id] if numbers else int(trial_id.rsplit("_", 1)[-1])
        trials.append((order, [r.get("val_loss", math.inf) for r in lines]))
    out = []
    for _, values in sorted(trials):
        out += [v if isinstance(v, (int, float)) and math.isfinite(v) else math.inf for v in values]
    return out


def best_after(values: list[float], budget: int) -> float:
    return min(values[:budget], default=math.inf)


def budget_to_reach(values: list[float], target: float) -> int | None:
    best = math.inf
    for i, v in enumerate(values, 1):
        best = min(best, v)
        if best <= target:
            return i
    return None


def fixed_driver(startup: int, argv: list[str]) -> int:
    """aetune.search.main with the proposed searcher fix patched in (see the module docstring)."""
    import math as _math

    import optuna

    from aetune import runner, search, searchers

    class FixedSearch(searchers.PrunedOptunaSearch):
        def on_trial_complete(self, trial_id, result=None, error=False):
            if (result and not error and trial_id in self._ot_trials and trial_id not in self._completed_trials
                    and searchers.final_state(result, error, self.max_epochs) == searchers.STATES.PRUNED):
                value = result.get(self.metric)
                if value is not None and _math.isfinite(value):
                    self._ot_trials[trial_id].report(value, int(result["epoch"]))
            super().on_trial_complete(trial_id, result, error)

    real = runner.make_searcher

    def make_searcher(space, variant, trials_file):
        if space.searcher != "optuna":
            return real(space, variant, trials_file)
        sampler = optuna.samplers.TPESampler(n_startup_trials=startup, seed=space.seed)
        return FixedSearch(space=searchers.OptunaSampler(space, variant), metric=space.metric, mode=space.mode,
                           sampler=sampler, max_epochs=space.epochs, trials_file=trials_file)

    runner.make_searcher = make_searcher
    return search.main(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.driver_fix is not None:
        return fixed_driver(int(args.driver_fix[0]), args.driver_fix[1:])
    _common.header(f"search_efficiency: variants {args.variants}, {args.epochs} epochs max, train_size "
                   f"{args.train_size}, test_size {args.test_size}, batch {args.batch_size}, TPE/random "
                   f"{args.samples} trials + ASHA, seeds {args.seeds}")
    storage = Path(args.storage) if args.storage else Path(tempfile.mkdtemp(prefix="aetune-bench-search-"))
    walls: dict[str, list[float]] = {}
    runs = [("grid", args.seeds[0])] + [(s, seed) for seed in args.seeds for s in args.searchers]
    for searcher, seed in runs:
        wall = run_experiment(args, storage, searcher, seed)
        if wall is not None:
            walls.setdefault(searcher, []).append(wall)

    grid_name = f"grid_s{args.seeds[0]}"
    rows, summary_rows = [], []
    for variant in args.variants:
        grid = trajectory(storage / grid_name / variant)
        grid_budget, grid_best = len(grid), min(grid)
        target = grid_best * (1 + args.tolerance)
        third = grid_budget // 3
        rows.append([variant, "grid + fifo (reference)", "-", grid_budget, f"{grid_best:.5g}", f"{best_after(grid, third):.5g}",
                     _fmt_budget(budget_to_reach(grid, target), grid_budget), "-"])
        for searcher in args.searchers:
            label = LABELS[searcher]
            reached, at_third = [], []
            for seed in args.seeds:
                values = trajectory(storage / f"{searcher}_s{seed}" / variant)
                b = budget_to_reach(values, target)
                reached.append(b)
                at_third.append(best_after(values, third))
                rows.append([variant, label, seed, len(values), f"{min(values):.5g}", f"{best_after(values, third):.5g}",
                             _fmt_budget(b, grid_budget), "yes" if b is not None and b <= third else "no"])
            hits = sorted(b for b in reached if b is not None)
            median_budget = statistics.median([b if b is not None else math.inf for b in reached])
            summary_rows.append([variant, label, f"{len(hits)}/{len(reached)}",
                                 _fmt_budget(median_budget if math.isfinite(median_budget) else None, grid_budget),
                                 f"{statistics.median(at_third):.5g}", f"{grid_best:.5g}",
                                 f"{sum(1 for b in reached if b is not None and b <= third)}/{len(reached)}"])
    print(f"Grid best val_loss is the reference; 'within {args.tolerance:.0%}' = val_loss <= "
          f"{1 + args.tolerance:g} x grid best; 1/3 of the grid's budget = "
          f"{', '.join(str(len(trajectory(storage / grid_name / v)) // 3) for v in args.variants)} trial-epochs "
          f"({', '.join(args.variants)}).")
    print()
    print(_common.table(["variant", "searcher", "seed", "trial-epochs used", "best val_loss",
                         "best after 1/3 grid budget", f"trial-epochs to within {args.tolerance:.0%} of grid best",
                         "within 1/3 of grid budget"], rows))
    print()
    print(_common.table(["variant", "searcher", "seeds reaching target", "median trial-epochs to target",
                         "median best after 1/3 grid budget", "grid best", "seeds within 1/3 budget"], summary_rows))
    print()
    print(_common.table(["searcher", "experiment wall s (both variants), per run"],
                        [[k, ", ".join(f"{w:.0f}" for w in v)] for k, v in walls.items()]))
    print(f"<!-- storage: {storage} -->")
    if not args.storage:
        import shutil

        shutil.rmtree(storage, ignore_errors=True)
    return 0


def _fmt_budget(b: int | float | None, grid_budget: int) -> str:
    if b is None:
        return "not reached"
    return f"{b:g} ({b / grid_budget:.0%} of grid)"


if __name__ == "__main__":
    sys.exit(main())
