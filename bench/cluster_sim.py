#!/usr/bin/env python
"""Scale on paper: wall time and utilisation of a search space on W workers, variants one after another (the
first design: one Tuner per variant) against all variants' trials sharing the workers, by discrete-event simulation.

What is simulated: the space's variants as they run (sweeps expanded, space.runs()), each with its trial count,
epochs, and scheduler: ASHA exactly as Ray's ASHAScheduler decides (Asha below; tests/test_bench.py holds it
against Ray's on a random stream) or FIFO. A worker runs one trial at a time (one GPU per trial); a trial's epochs
take its seconds per epoch each, one after another. Sequential: a variant's trials start as workers free up, the
next variant once the last trial of this one has ended. Concurrent: a free worker starts a trial of the variant
with the fewest running trials among those with trials left, the costliest of those by the router's estimate
first (aetune's router: FLOPs of a training step, aetune.search.tuner.trial_costs).
Utilisation = trial-epoch seconds / (workers x wall).

Seconds per epoch, per variant of the space: measured in a finished experiment (--measured runs/quick: each
trial's median time_this_iter_s over its epochs after the first, scaled from its training images to the variant's;
only trials of the same variant name and model family count), or given, which wins (--epoch-seconds conv=12 ...).
A simulated trial draws one of its variant's measured trials' values. They are the speed of the machine that
measured them: the wall times scale with the workers' speed, the utilisation much less.

Objective values for ASHA's decisions come from a synthetic model, not the measured curves (a quick run's curves
have 4 epochs, mnist.yaml's trials up to 30): trial i reports v_i(t) = floor_i + gap_i / sqrt(t) + noise, with
floor_i ~ lognormal(0, 0.1), gap_i ~ lognormal(ln 0.5, 0.5), noise ~ N(0, 0.01), independent across trials (random
search's stream). ASHA only compares values recorded at a rung, and continues a trial in the top 1/rf of them, so
the share of trials it stops at each rung, hence the work and the wall time, depends little on the curves' shape.

  python bench/cluster_sim.py --measured runs/quick --epoch-seconds denoising=25   # mnist.yaml, 8 and 64 workers
  python bench/cluster_sim.py --epoch-seconds dense=1.2 sparse=1.3 denoising=25 conv=12 vae=2.7 --seeds 1
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import _common
import numpy as np


class Asha:
    """One variant's ASHA, as ray/tune/schedulers/async_hyperband.py decides (one bracket, stop_last_trials): rungs
    at grace_period x rf^k below max_t; at the first result at or past a rung it has no value at yet, a trial is
    stopped if its value is worse than the (1 - 1/rf) quantile of the values recorded at that rung so far (none
    recorded: it goes on), and its value is recorded there; at max_t every trial stops."""

    def __init__(self, grace_period: int, reduction_factor: float, max_t: int, mode: str = "min"):
        self.rf, self.max_t, self.sign = reduction_factor, max_t, -1.0 if mode == "min" else 1.0
        count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)  # Ray's MAX_RUNGS, same floats
        self.rungs = [(grace_period * reduction_factor ** k, {}) for k in reversed(range(count))]

    def keeps(self, trial: object, t: int, value: float) -> bool:
        """Whether the trial goes on after reporting `value` at time `t` (its epoch)."""
        reward, keep = self.sign * value, True
        for milestone, recorded in self.rungs:
            if t < milestone or trial in recorded:
                continue
            if recorded and reward < np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100):
                keep = False
            recorded[trial] = reward
            break
        return keep and t < self.max_t


@dataclass
class Plan:
    """One variant as it runs."""

    name: str
    trials: int
    epochs: int
    asha: tuple | None  # (grace_period, reduction_factor, mode), or None: FIFO
    epoch_seconds: list[float]
    cost: float = 0.0  # what the router ranks the variant's trials by (aetune.search.tuner.trial_costs: FLOPs of a step)


@dataclass
class Trial:
    id: int
    plan: Plan
    seconds: float  # per epoch
    values: list[float]
    epoch: int = 0


def synthetic_curve(rng: random.Random, epochs: int) -> list[float]:
    floor, gap = math.exp(rng.gauss(0, 0.1)), math.exp(rng.gauss(math.log(0.5), 0.5))
    return [floor + gap / math.sqrt(t) + rng.gauss(0, 0.01) for t in range(1, epochs + 1)]


def simulate(plans: list[Plan], workers: int, concurrent: bool, seed: int = 0) -> dict:
    rng = random.Random(seed)
    schedulers = {p.name: Asha(p.asha[0], p.asha[1], p.epochs, p.asha[2]) if p.asha else None for p in plans}
    pending = {p.name: p.trials for p in plans}
    running = dict.fromkeys(pending, 0)
    events: list = []
    ids = itertools.count()
    state = {"free": workers, "busy": 0.0, "epochs": 0, "now": 0.0}

    def next_plan() -> Plan | None:
        if concurrent:
            waiting = [p for p in plans if pending[p.name]]
            # the router's rule: fewest running, then the costliest by its estimate (ties: the space's order)
            return min(waiting, key=lambda p: (running[p.name], -p.cost), default=None)
        current = next((p for p in plans if pending[p.name] or running[p.name]), None)
        return current if current and pending[current.name] else None

    def start(now: float) -> None:
        while state["free"] and (plan := next_plan()):
            pending[plan.name] -= 1
            running[plan.name] += 1
            state["free"] -= 1
            trial = Trial(next(ids), plan, rng.choice(plan.epoch_seconds), synthetic_curve(rng, plan.epochs))
            heapq.heappush(events, (now + trial.seconds, trial.id, trial))

    start(0.0)
    while events:
        now, _, trial = heapq.heappop(events)
        trial.epoch += 1
        state["busy"] += trial.seconds
        state["epochs"] += 1
        asha = schedulers[trial.plan.name]
        value = trial.values[trial.epoch - 1]
        goes_on = asha.keeps(trial.id, trial.epoch, value) if asha else trial.epoch < trial.plan.epochs
        if goes_on:
            heapq.heappush(events, (now + trial.seconds, trial.id, trial))
        else:
            running[trial.plan.name] -= 1
            state["free"] += 1
            start(now)
        state["now"] = now
    wall = state["now"]
    return {"wall": wall, "utilisation": state["busy"] / (workers * wall) if wall else 0.0,
            "epochs": state["epochs"]}


def measured(space, folder: Path) -> dict[str, tuple[list[float], str]]:
    """Per YAML variant of the space: seconds per epoch of each matching measured trial, scaled; and a note."""
    found: dict[str, list] = {}
    for t in _common.trials(folder):
        times = [r["time_this_iter_s"] for r in t["results"]]
        found.setdefault(t["variant"].split("@")[0], []).append((t["config"], statistics.median(times[1:] or times)))
    out = {}
    for name, variant in space.variants.items():
        want = space.base_config(variant)
        same = [(c, s) for c, s in found.get(name, []) if c["model"] == want["model"]]
        if same:
            scales = [_common.train_images(want) / _common.train_images(c) for c, _ in same]
            out[name] = ([s * scale for (_, s), scale in zip(same, scales)],
                         f"{len(same)} trials in {folder}, scaled x{statistics.median(scales):.3g}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", type=Path, default=_common.REPO / "search_spaces" / "mnist.yaml")
    p.add_argument("--measured", type=Path, help="a finished experiment folder (runs/NAME) to take s/epoch from")
    p.add_argument("--epoch-seconds", nargs="*", default=[], metavar="VARIANT=S",
                   help="seconds per epoch of a variant of the space (its YAML name), over --measured")
    p.add_argument("--workers", nargs="+", type=int, default=[8, 64])
    p.add_argument("--seeds", type=int, default=5, help="simulations per row, seeds 0..N-1 (default 5)")
    return p.parse_args(argv)


def epoch_seconds(args: argparse.Namespace, space) -> dict[str, tuple[list[float], str]]:
    seconds = measured(space, args.measured) if args.measured else {}
    for item in args.epoch_seconds:
        name, _, value = item.partition("=")
        if name not in space.variants or not value:
            sys.exit(f"cluster_sim.py: error: --epoch-seconds {item}: give VARIANT=SECONDS, VARIANT one of "
                     f"{', '.join(space.variants)}")
        seconds[name] = ([float(value)], "given")
    missing = [name for name in space.variants if name not in seconds]
    if missing:
        sys.exit(f"cluster_sim.py: error: no seconds per epoch for {', '.join(missing)} (no trial of that name and "
                 "model family in --measured); pass --epoch-seconds NAME=S")
    return seconds


def plans_of(space, seconds: dict[str, tuple[list[float], str]]) -> list[Plan]:
    from aetune.search.tuner import trial_costs

    costs = trial_costs(space, space.image_shape())
    plans = []
    for variant in space.runs():
        search = space.search(variant)
        asha = ((min(search.grace_period, space.epochs), search.reduction_factor, search.asha_mode)
                if search.scheduler == "asha" else None)
        plans.append(Plan(variant.name, space.trial_count(variant), space.epochs, asha,
                          seconds[variant.base or variant.name][0], costs[variant.name]))
    return plans


def variant_rows(plans: list[Plan], seconds: dict[str, tuple[list[float], str]]) -> list[list[object]]:
    groups: dict[str, list[Plan]] = {}
    for plan in plans:  # the members of a sweep (dense@code_size=8, ...) under their YAML variant
        groups.setdefault(plan.name.split("@")[0], []).append(plan)
    return [[name, len(group), group[0].trials,
             f"ASHA grace {group[0].asha[0]}, rf {group[0].asha[1]}" if group[0].asha else "FIFO",
             f"{statistics.median(seconds[name][0]):.3g}", seconds[name][1]] for name, group in groups.items()]


def design_rows(plans: list[Plan], workers: int, seeds: int) -> list[list[object]]:
    runs = {design: [simulate(plans, workers, concurrent, seed) for seed in range(seeds)]
            for design, concurrent in (("sequential variants", False), ("concurrent variants", True))}
    rows = [[workers, design, _common.spread([r["wall"] / 3600 for r in results]),
             f"{_common.median([r['utilisation'] for r in results]):.0%}",
             f"{_common.median([r['epochs'] for r in results]):,.0f}"] for design, results in runs.items()]
    speedup = _common.median([s["wall"] / c["wall"] for s, c in zip(*runs.values())])
    return [rows[0] + ["-"], rows[1] + [f"{speedup:.2f}x"]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from aetune.search.space_file import load_space

    space = load_space(args.space)
    seconds = epoch_seconds(args, space)
    plans = plans_of(space, seconds)
    _common.header()
    print(f"`{_common.shown(args.space)}`: {len(plans)} variants as they run, {sum(p.trials for p in plans)} "
          f"trials, up to {space.epochs} epochs each; one trial per worker.\n")
    print(_common.table(["variant", "studies (sweep values)", "trials each", "scheduler", "s/epoch (median)", "from"],
                        variant_rows(plans, seconds)))
    print(f"\nSimulated, median (min-max) of {args.seeds} seeds (synthetic objective values, see the script):\n")
    print(_common.table(["workers", "design", "wall h", "utilisation", "trial-epochs", "speed-up of concurrent"],
                        [row for workers in args.workers for row in design_rows(plans, workers, args.seeds)]))
    _common.footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
