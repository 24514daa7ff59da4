#!/usr/bin/env python
"""What the search driver costs on top of the training, and how busy it keeps the cores.

1. Start-up: `python -m aetune.search --help`, and a space file with a mistyped key (its one-line error).
2. Fixed cost per experiment and cost per trial: a one-variant space (the fixture in _common: dense [128, 64]-32,
   random, FIFO, 1 epoch per trial, --cpus-per-trial 2 so that trials run one after another) with 1 trial and with
   N trials, interleaved, --repeats times; per trial = the slope of wall time over trials, per experiment = the
   intercept. Beside them, one bare training epoch (bare.py, no Ray) of the same model and data.
3. The timeline of one N-trial run through instrumented.py: when the driver imported torch and Ray, ray.init,
   Tuner.fit, the first trial's start, the last trial's end, ray.shutdown, exit.
4. Busy fraction of real jobs (--jobs, default the quick job): sum over trials of trial-seconds x CPUs per trial,
   over cores x wall, where a trial-second is the wall time of the trainable in its worker (instrumented.py) and
   the cores are this machine's (os.cpu_count(), what a local Ray uses).

  python bench/driver_overhead.py                                    # N=8, 3 repeats, quick.yaml
  python bench/driver_overhead.py --jobs search_spaces/quick.yaml search_spaces/seeds.yaml
  python bench/driver_overhead.py --jobs-only --jobs search_spaces/seeds.yaml --job-args "--epochs 10"
  python bench/driver_overhead.py --trials 2 --repeats 1 --train-size 1000 --wait-idle 0 \\
      --job-args "--samples 1 --epochs 1 --train-size 1000"       # smoke
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common
import yaml

TARGETS = {"quick": 0.70, "seeds": 0.90}  # busy fraction, issue #10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="N: trials in the larger experiment (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default 3)")
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--cpus-per-trial", type=float, default=2.0)
    p.add_argument("--jobs", nargs="*", type=Path, default=[_common.REPO / "search_spaces" / "quick.yaml"],
                   help="space files whose busy fraction to measure (default search_spaces/quick.yaml)")
    p.add_argument("--job-args", default="", help="extra aetune.search arguments for the jobs, e.g. "
                   "\"--gpus-per-trial 0.25\" or, for a smoke run, \"--samples 1 --epochs 1\"")
    p.add_argument("--jobs-only", action="store_true", help="measure only the jobs' busy fraction (part 4)")
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--wait-idle", type=float, default=120, metavar="S",
                   help="before each timed run, wait up to S seconds for idle CPUs; 0: do not wait")
    return p.parse_args(argv)


def startup(args: argparse.Namespace, tmp: Path) -> list[list[object]]:
    bad = _common.write_space(tmp, "typo", epochz=3)
    commands = {"`python -m aetune.search --help`": (["--help"], 0),
                "a space file with a mistyped key: its one-line error": (["--space", str(bad)], 2)}
    rows = []
    for label, (flags, code) in commands.items():
        walls = []
        for _ in range(args.repeats):
            _common.wait_for_idle(args.wait_idle)
            out = _common.search(flags, check=False)
            if out.returncode != code:
                sys.exit(f"{label}: exit status {out.returncode}, expected {code}:\n{out.output[-2000:]}")
            walls.append(out.wall)
        rows.append([label, _common.spread(walls), _common.met(statistics.median(walls), 1.0)])
    return rows


def bare_epoch(args: argparse.Namespace) -> list[float]:
    import torch
    from bare import BareLoop

    from aetune.train.data import load_data

    torch.set_num_threads(max(1, int(args.cpus_per_trial)))
    data = load_data("mnist", _common.data_root(args.data_root), args.train_size, download=False, test=False)
    loop = BareLoop({**_common.MODELS["dense"], "batch_size": 256}, data.train_x)
    loop.epoch()  # warm-up
    times = []
    for _ in range(max(3, args.repeats)):
        start = time.perf_counter()
        loop.epoch()
        times.append(time.perf_counter() - start)
    return times


def experiments(args: argparse.Namespace, tmp: Path) -> list[list[object]]:
    n = args.trials
    spaces = {k: _common.write_space(tmp, f"n{k}", samples=k, resources={"cpus": args.cpus_per_trial, "gpus": 0},
                                     defaults={"train_size": args.train_size}) for k in (1, n)}
    walls: dict[int, list[float]] = {1: [], n: []}
    for r in range(args.repeats):
        for k in (1, n):  # interleaved, so that a change in load hits both sizes alike
            _common.wait_for_idle(args.wait_idle)
            walls[k].append(_common.search(search_args(args, spaces[k], tmp, f"n{k}_r{r}")).wall)
            _common.progress(f"{k} trial(s), repeat {r}: {walls[k][-1]:.1f} s")
    slope = (statistics.median(walls[n]) - statistics.median(walls[1])) / (n - 1)
    intercept = statistics.median(walls[1]) - slope
    bare = bare_epoch(args)
    return [["experiment wall, 1 trial", _common.spread(walls[1]), "-"],
            [f"experiment wall, {n} trials", _common.spread(walls[n]), "-"],
            ["**fixed cost per experiment** (intercept)", f"**{intercept:.3g}**", _common.met(intercept, 8.0)],
            ["**cost per trial** (slope)", f"**{slope:.3g}**", "-"],
            ["one bare training epoch of the same model and data (bare.py, no Ray)", _common.spread(bare), "-"]]


def search_args(args: argparse.Namespace, space: Path, tmp: Path, name: str) -> list[str]:
    return ["--space", str(space), "--name", name, "--storage", str(tmp / "runs"), "--quiet",
            "--data-root", _common.data_root(args.data_root)]


def timeline(events: list[dict], run: _common.Run) -> list[list[object]]:
    """Seconds since launch of each phase's first start and last end (phases may overlap)."""
    first, last = {}, {}
    for e in sorted(events, key=lambda e: e["t"]):
        first.setdefault(e["event"], e["t"])
        last[e["event"]] = e["t"]
    spans = _common.trial_spans(events)
    points = [("driver script's first line", first.get("driver_start")),
              ("torch imported by the driver", last.get("import_torch_done")),
              ("ray imported by the driver", last.get("import_ray_done")),
              ("aetune.search imported", first.get("aetune_search_imported")),
              ("ray.init started", first.get("ray_init_start")), ("ray.init done", first.get("ray_init_done")),
              ("first Tuner.fit started", first.get("tuner_fit_start")),
              ("first trial started (in its worker)", spans[0][1] if spans else None),
              ("last trial ended", max(s[2] for s in spans) if spans else None),
              ("last Tuner.fit returned", last.get("tuner_fit_done")),
              ("ray.shutdown started", last.get("ray_shutdown_start")),
              ("ray.shutdown done", last.get("ray_shutdown_done")),
              ("main() returned", last.get("main_done")), ("process exited", run.exited)]
    points.sort(key=lambda point: point[1] or float("inf"))  # in the order they happened; "never" last
    rows = [[label, f"{t - run.launched:.2f}" if t else "never"] for label, t in points]
    walls = [end - start for _, start, end in spans]
    gaps = [b[1] - a[2] for a, b in zip(spans, spans[1:])]
    rows += [[f"trial wall (trainable in its worker), median of {len(walls)}", _common.spread(walls)],
             ["gap between one trial's end and the next one's start, median", _common.spread(gaps)]]
    return rows


def busy(args: argparse.Namespace, tmp: Path) -> list[list[object]]:
    rows = []
    for space in args.jobs:
        name = f"job_{space.stem}"
        stamps = tmp / f"{name}.jsonl"
        _common.wait_for_idle(args.wait_idle)
        run = _common.search(search_args(args, space, tmp, name) + shlex.split(args.job_args), stamps=stamps)
        saved = yaml.safe_load((tmp / "runs" / name / "space.yaml").read_text())
        cpus = float(saved["resources"]["cpus"])
        spans = _common.trial_spans(_common.stamps(stamps))
        trial_seconds = sum(end - start for _, start, end in spans)
        cores = os.cpu_count() or 1
        fraction = trial_seconds * cpus / (cores * run.wall)
        # No schedule ends before its longest trial: the busy fraction it allows, with this run's trial times
        longest = max(end - start for _, start, end in spans)
        bound = trial_seconds * cpus / (cores * max(longest, trial_seconds * cpus / cores))
        target = TARGETS.get(space.stem)
        verdict = _common.met(100 * fraction, 100 * target, at_most=False, unit="%") if target else "-"
        rows.append([f"`{_common.shown(space)}`", len(spans), f"{run.wall:.1f}", f"{trial_seconds:.1f}", f"{cpus:g}",
                     cores, f"{fraction:.0%}", f"{longest:.1f}", f"{bound:.0%}", verdict])
        _common.progress(f"{space}: {run.wall:.1f} s")
    return rows


def overhead(args: argparse.Namespace, tmp: Path) -> None:
    """Parts 1-3: start-up, fixed and per-trial cost, the timeline."""
    print(f"Seconds, median (min-max) of {args.repeats}; experiments of 1 epoch per trial, dense [128, 64]-32, "
          f"train_size {args.train_size}, {args.cpus_per_trial:g} CPUs per trial.\n")
    print(_common.table(["quantity", "seconds", "target"], startup(args, tmp) + experiments(args, tmp)))
    _common.wait_for_idle(args.wait_idle)
    stamps = tmp / "timeline.jsonl"
    run = _common.search(search_args(args, tmp / f"n{args.trials}.yaml", tmp, "timeline"), stamps=stamps)
    print(f"\nTimeline of one {args.trials}-trial run ({run.wall:.1f} s, bench/instrumented.py):\n")
    print(_common.table(["event", "s since launch"], timeline(_common.stamps(stamps), run)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.jobs = [p.resolve() for p in args.jobs]
    _common.header()
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-overhead-"))
    if not args.jobs_only:
        overhead(args, tmp)
    if args.jobs:
        extra = f" with `{args.job_args}`" if args.job_args else ""
        print(f"\nBusy fraction of the jobs{extra}: trial-seconds x CPUs per trial / (cores x wall):\n")
        print(_common.table(["space", "trials", "wall s", "trial-seconds", "CPUs per trial", "cores", "busy",
                             "longest trial s", "best possible busy (no start-up; the longest trial)", "target"],
                            busy(args, tmp)))
    _common.footer()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
