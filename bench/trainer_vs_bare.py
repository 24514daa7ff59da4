#!/usr/bin/env python
"""Epoch time of aetune's Trainer.train_epoch() against the bare loop (bare.py): same model, data, batch and seed.

Each model is timed in a fresh process started with the malloc settings the trial workers get (aetune.search's
WORKER_ENV; --glibc-default drops them). Warm-up epochs first, then rounds of one epoch of each loop, in ABBA order
so that no loop always runs first. A round in which another process took a core (this one used less than
--min-cpu-use CPU-seconds per second) is discarded and measured again, up to --max-retries times. With
--channels-last MODEL..., those models also run the bare loop in channels_last memory format, beside today's
(NCHW) one. The ratios are medians of the per-round ratios.

  python bench/trainer_vs_bare.py                                    # dense, vae, conv, denoising; full MNIST
  python bench/trainer_vs_bare.py --channels-last conv denoising     # + the bare loop in channels_last
  python bench/trainer_vs_bare.py --models conv --channels-last conv --train-size 2000 --epochs 1 --warmup 0 \\
      --wait-idle 0 --min-cpu-use 0                                  # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import _common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(_common.MODELS), choices=list(_common.MODELS))
    p.add_argument("--channels-last", nargs="*", default=[], choices=list(_common.MODELS), metavar="MODEL",
                   help="also time the bare loop in channels_last memory format for these (conv models)")
    p.add_argument("--epochs", type=int, default=3, help="timed rounds per model (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs of each loop first (default 1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--train-size", type=int, help="training images in use, 10%% of them held out (default all)")
    p.add_argument("--glibc-default", action="store_true", help="run without the workers' MALLOC_* settings")
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each round, wait up to S s for idle CPUs (other users' jobs); 0: do not wait")
    p.add_argument("--min-cpu-use", type=float, metavar="X", help="default 0.875 x --threads")
    p.add_argument("--max-retries", type=int, default=6, help="discarded rounds allowed per model (default 6)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: time one model in this process
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """In the child: the loops of one model, round by round."""
    import torch
    from bare import BareLoop

    from aetune.config import TrialConfig
    from aetune.data import load_data
    from aetune.train import Trainer

    torch.set_num_threads(args.threads)
    data = load_data("mnist", _common.data_root(args.data_root), args.train_size, download=False, test=False)
    config = {**_common.MODELS[args.child], "batch_size": args.batch_size, "lr": 1e-3, "seed": 0}
    trainer = Trainer(TrialConfig.from_dict(config), data, "cpu")
    loops = {"aetune": lambda: trainer.train_epoch()["train_loss"], "bare": BareLoop(config, data.train_x).epoch}
    if args.child in args.channels_last:
        loops["channels_last"] = BareLoop(config, data.train_x, channels_last=True).epoch
    for _ in range(args.warmup):
        for epoch in loops.values():
            epoch()
    rounds, discarded = [], 0
    while len(rounds) < args.epochs:
        _common.wait_for_idle(args.wait_idle)
        order = list(loops) if (len(rounds) + discarded) % 2 == 0 else list(loops)[::-1]
        times, use = {}, {}
        for key in order:
            cpu, start = _cpu_seconds(), time.perf_counter()
            loops[key]()
            times[key] = time.perf_counter() - start
            use[key] = (_cpu_seconds() - cpu) / times[key]
        if min(use.values()) < args.min_cpu_use and discarded < args.max_retries:
            discarded += 1
            continue
        rounds.append({"times": times, "cpu_use": min(use.values())})
    return {"params": trainer.params, "rounds": rounds, "discarded": discarded, "images": len(data.train_x)}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def child(args: argparse.Namespace, name: str) -> dict:
    from aetune.search import WORKER_ENV

    cmd = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs), "--warmup", str(args.warmup),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--wait-idle", str(args.wait_idle),
           "--min-cpu-use", str(args.min_cpu_use), "--max-retries", str(args.max_retries),
           "--data-root", _common.data_root(args.data_root), "--channels-last", *args.channels_last]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    env = _common.python_env(None if args.glibc_default else WORKER_ENV, drop=tuple(WORKER_ENV))
    before = _common.load()
    out = json.loads(_common.run(cmd, env=env).output.strip().splitlines()[-1])
    return {**out, "model": name, "load": f"{before} / {_common.load()}"}


def row(r: dict) -> list[object]:
    times = {key: [x["times"][key] for x in r["rounds"]] for key in r["rounds"][0]["times"]}

    def ratio(a: str, b: str) -> str:
        if a not in times or b not in times:
            return "-"
        return f"{_common.median([x / y for x, y in zip(times[a], times[b])]):.3f}"

    def seconds(key: str) -> str:
        return _common.spread(times[key]) if key in times else "-"

    return [_common.LABELS[r["model"]], f"{r['params']:,}", seconds("aetune"), seconds("bare"),
            ratio("aetune", "bare"), seconds("channels_last"), ratio("channels_last", "bare"),
            ratio("aetune", "channels_last"), f"{len(r['rounds'])} (+{r['discarded']} discarded)",
            f"{_common.median([x['cpu_use'] for x in r['rounds']]):.2f}", r["load"]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.min_cpu_use = args.min_cpu_use if args.min_cpu_use is not None else 0.875 * args.threads
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    _common.header()
    results = []
    for name in args.models:
        _common.progress(f"timing {name}")
        results.append(child(args, name))
    malloc = "glibc's malloc defaults" if args.glibc_default else "the workers' malloc settings"
    print(f"Train s/epoch, median (min-max) of the rounds; {results[0]['images']:,} training images, batch "
          f"{args.batch_size}, {args.threads} threads, {malloc}; "
          "bare = bare.py's loop in today's NCHW layout, channels_last = the same loop in channels_last.\n")
    print(_common.table(["model", "params", "aetune s/epoch", "bare s/epoch", "aetune / bare",
                         "channels_last s/epoch", "channels_last / bare", "aetune / channels_last",
                         "rounds", "CPU s per wall s (min of the loops)", "load before / after"],
                        [row(r) for r in results]))
    _common.footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
