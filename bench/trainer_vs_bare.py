#!/usr/bin/env python
"""Epoch time of aetune's Trainer.train_epoch() against the bare loop (bare.py, in the Trainer's memory format) and
against the Trainer of an earlier revision (--baseline REV, checked out in a temporary git worktree): same model,
batch, seed and number of training images.

Each loop runs in its own process, started with the malloc settings the trial workers get (aetune.search's
WORKER_ENV; --glibc-default drops them), loads the data and runs its warm-up epochs, then waits. The rounds time one
epoch of each loop in turn, the first loop rotating from round to round, while the others wait; so the loops
share the machine's state of the moment, and their ratios are medians of the per-round ratios. A round in which a
loop got less than --min-cpu-use CPU-seconds per second (another process took a core) is discarded and run again,
up to --max-retries times.

  python bench/trainer_vs_bare.py --baseline ae762c1                 # dense, vae, conv, denoising; full MNIST
  python bench/trainer_vs_bare.py --models conv --baseline HEAD --images 1000 --epochs 1 --warmup 0 \\
      --wait-idle 0 --min-cpu-use 0                                  # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PREFIX = "@@ "  # the lines of the parent-child protocol on the child's stdout (libraries may print there too)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import _common

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(_common.MODELS), choices=list(_common.MODELS))
    p.add_argument("--baseline", metavar="REV", help="also time the Trainer of this git revision (e.g. ae762c1)")
    p.add_argument("--epochs", type=int, default=3, help="timed rounds per model (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs of each loop first (default 1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--images", type=int, help="training images per epoch (default: all of this checkout's, 54,000)")
    p.add_argument("--glibc-default", action="store_true", help="run without the workers' MALLOC_* settings")
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or the shared/data beside the checkout)")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each round, wait up to S s for idle CPUs (other users' jobs); 0: do not wait")
    p.add_argument("--min-cpu-use", type=float, metavar="X", help="default 0.875 x --threads")
    p.add_argument("--max-retries", type=int, default=6, help="discarded rounds allowed per model (default 6)")
    return p.parse_args(argv)


# --- a loop's process ----------------------------------------------------------------------------------------------

def serve(kind: str, config: dict, data_root: str, size: int | None, threads: int, warmup: int) -> None:
    """In a child: build one loop, warm it up, then time one epoch per line read from stdin. `kind` is aetune or
    bare (this checkout) or baseline (the aetune found first on PYTHONPATH: the worktree of --baseline)."""
    import torch

    torch.set_num_threads(threads)
    epoch, params, images = loop(kind, config, data_root, size)
    for _ in range(warmup):
        epoch()
    say({"params": params, "images": images})
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        times = os.times()
        cpu, start = times.user + times.system, time.perf_counter()
        epoch()
        seconds = time.perf_counter() - start
        times = os.times()
        say({"seconds": seconds, "cpu_use": (times.user + times.system - cpu) / seconds})


def loop(kind: str, config: dict, data_root: str, size: int | None):
    """(one epoch, trainable parameters or None for the baseline, training images) of the loop `kind`, on the
    first `size` training images of its loader (None: all of them)."""
    import dataclasses

    try:  # this checkout's layout, or a baseline revision's flat one (before aetune/train/)
        from aetune.train.data import load_data
        from aetune.train.trainer import Trainer
    except ModuleNotFoundError:
        from aetune.data import load_data
        from aetune.train import Trainer

    # Every revision's loader takes (name, root, train_size, test_size, download) and returns a frozen dataclass;
    # earlier ones hold no validation images out of the training images, later ones 10%.
    data = load_data("mnist", data_root, None, 1, download=False)
    data = dataclasses.replace(data, train_x=data.train_x[:size], train_y=data.train_y[:size])
    if kind == "bare":
        from bare import BareLoop

        bare = BareLoop(config, data.train_x, channels_last=True)
        return bare.epoch, bare.model.trainable_params, len(data.train_x)
    from aetune.config import TrialConfig

    trainer = Trainer(TrialConfig.from_dict(config), data, "cpu")
    params = None if kind == "baseline" else trainer.params  # the same model: this checkout's count stands
    return lambda: trainer.train_epoch()["train_loss"], params, len(data.train_x)


def say(message: dict) -> None:
    print(PREFIX + json.dumps(message), flush=True)


class Child:
    """The parent's handle on one loop's process."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        sys.exit(f"a timed loop exited ({self.proc.wait()}): {self.proc.args}")

    def epoch(self) -> dict:
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# --- the parent -----------------------------------------------------------------------------------------------------

def measure(args: argparse.Namespace, name: str, baseline: Path | None) -> dict:
    """Rounds of one epoch of every loop of one model."""
    import _common

    from aetune.search.__main__ import WORKER_ENV

    config = {**_common.MODELS[name], "batch_size": args.batch_size, "lr": 1e-3, "seed": 0}
    env = _common.python_env(None if args.glibc_default else WORKER_ENV, drop=tuple(WORKER_ENV))
    kinds = ["aetune", "bare"] + (["baseline"] if baseline else [])
    children, ready = {}, {}
    before = _common.load()
    for kind in kinds:  # one at a time: loading and warming up are not timed, but should not crowd each other
        size = ready["aetune"]["images"] if ready else args.images  # every loop on as many images as the first
        cmd = [sys.executable, __file__, "--child", kind, json.dumps(config), _common.data_root(args.data_root),
               str(size or 0), str(args.threads), str(args.warmup)]
        child_env = {**env, "PYTHONPATH": os.pathsep.join([str(baseline), str(BENCH)])} if kind == "baseline" else env
        children[kind] = Child(cmd, child_env)
        ready[kind] = children[kind].read()
    if len({r["images"] for r in ready.values()}) > 1 or ready["bare"]["params"] != ready["aetune"]["params"]:
        sys.exit(f"the loops do not train the same model on as many images: {ready}")
    rounds, discarded = [], 0
    while len(rounds) < args.epochs:
        _common.wait_for_idle(args.wait_idle)
        turn = (len(rounds) + discarded) % len(kinds)
        order = kinds[turn:] + kinds[:turn]  # each loop first in turn
        result = {kind: children[kind].epoch() for kind in order}
        use = min(r["cpu_use"] for r in result.values())
        if use < args.min_cpu_use and discarded < args.max_retries:
            discarded += 1
            continue
        rounds.append({"times": {k: r["seconds"] for k, r in result.items()}, "cpu_use": use})
    for child in children.values():
        child.close()
    return {"model": name, "params": ready["aetune"]["params"], "images": ready["aetune"]["images"],
            "rounds": rounds, "discarded": discarded, "load": f"{before} / {_common.load()}"}


def worktree(rev: str) -> Path:
    """The revision checked out beside this one, in a temporary folder (removed by the caller)."""
    import _common

    folder = Path(tempfile.mkdtemp(prefix="aetune-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "prune"], cwd=_common.REPO, check=True)  # what a killed run left behind
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(folder), rev], cwd=_common.REPO, check=True)
    return folder


def row(r: dict, baseline: bool) -> list[object]:
    import _common

    times = {key: [x["times"][key] for x in r["rounds"]] for key in r["rounds"][0]["times"]}

    def ratio(a: str, b: str) -> str:
        return f"{_common.median([x / y for x, y in zip(times[a], times[b])]):.3f}" if b in times else "-"

    cells = [_common.LABELS[r["model"]], f"{r['params']:,}", _common.spread(times["aetune"]),
             _common.spread(times["bare"]), ratio("aetune", "bare")]
    if baseline:
        cells += [_common.spread(times["baseline"]), ratio("aetune", "baseline")]
    return cells + [f"{len(r['rounds'])} (+{r['discarded']} discarded)",
                    f"{_common.median([x['cpu_use'] for x in r['rounds']]):.2f}", r["load"]]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # kind, config, data root, size (0: all), threads, warm-up epochs
        kind, config, root, size, threads, warmup = argv[1:]
        serve(kind, json.loads(config), root, int(size) or None, int(threads), int(warmup))
        return 0
    import _common

    args = parse_args(argv)
    args.min_cpu_use = args.min_cpu_use if args.min_cpu_use is not None else 0.875 * args.threads
    _common.header()
    baseline = worktree(args.baseline) if args.baseline else None
    try:
        results = []
        for name in args.models:
            _common.progress(f"timing {name}")
            results.append(measure(args, name, baseline))
    finally:
        if baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=_common.REPO)
            shutil.rmtree(baseline.parent, ignore_errors=True)
    malloc = "glibc's malloc defaults" if args.glibc_default else "the workers' malloc settings"
    print(f"Train s/epoch, median (min-max) of the rounds; {results[0]['images']:,} training images, batch "
          f"{args.batch_size}, {args.threads} threads, {malloc}, one process per loop; bare = bare.py's loop in the "
          f"Trainer's memory format (channels_last)"
          + (f"; {args.baseline} = the Trainer at revision {args.baseline}, on as many images" if baseline else "")
          + ".\n")
    columns = ["model", "params", "aetune s/epoch", "bare s/epoch", "aetune / bare"]
    if baseline:
        columns += [f"{args.baseline} s/epoch", f"aetune / {args.baseline}"]
    columns += ["rounds", "CPU s per wall s (min of the loops)", "load before / after"]
    print(_common.table(columns, [row(r, baseline is not None) for r in results]))
    _common.footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
