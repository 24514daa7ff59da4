#!/usr/bin/env python
"""Epoch time of aetune's Trainer.train_epoch() against a minimal hand-written PyTorch loop (same model, same data).

Each model is measured in a fresh subprocess (so the glibc malloc settings, which only take effect at process
start, can be compared): warm-up epochs first, then aetune and bare epochs interleaved in ABBA order (aetune, bare
[, DataLoader], then the reverse, ...), so neither loop always runs first. A round in which another process took a
core (this process got less than --min-cpu-use CPU-seconds per second) is discarded and measured again. The table
shows the medians. The bare loop: the same uint8 tensor, a per-epoch permutation, batches gathered from slices of it
and converted to float on the fly, Adam 1e-3, model.objective's loss.

  python bench/trainer_vs_bare.py                         # dense, conv, vae; conv with and without the malloc env
  python bench/trainer_vs_bare.py --models dense --epochs 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MODELS = {
    "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
    "conv": {"model": "conv", "filters": [16, 8, 8]},
    "vae": {"model": "vae", "hidden_layers": [512], "code_size": 2},
}
LABELS = {"dense": "dense [128, 64] code 32", "conv": "conv [16, 8, 8]", "vae": "vae [512] code 2"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop, after the warm-up (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per loop first (default 1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--dataloader-models", nargs="*", default=["dense"], choices=list(MODELS),
                   help="also time the naive per-sample DataLoader(MNIST, ToTensor()) loop for these (default dense)")
    p.add_argument("--malloc-models", nargs="*", default=["conv"], choices=list(MODELS),
                   help="also measure these with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set (default conv)")
    p.add_argument("--eval", action="store_true", help="also time Trainer.evaluate() on the 10k test split")
    p.add_argument("--json", action="store_true", help="print the raw measurements as JSON lines too")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each round of epochs, wait up to S seconds for the CPUs to be idle (other users' "
                        "jobs); 0: do not wait (default 300)")
    p.add_argument("--min-cpu-use", type=float, default=None, metavar="X",
                   help="discard and repeat a round in which this process used less than X CPU-seconds per second "
                        "(another job took a core); default 0.875 x --threads")
    p.add_argument("--max-retries", type=int, default=6, help="discarded rounds allowed per model (default 6)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure one model in this process
    return p.parse_args(argv)


# --- the measurement, in a child process ------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict:
    import torch

    from aetune.config import TrialConfig
    from aetune.data import load_data
    from aetune.models import build_model
    from aetune.train import Trainer

    torch.set_num_threads(args.threads)
    name = args.child
    root = _common.data_root(args.data_root)
    data = load_data("mnist", root, args.train_size, None, download=False)
    config = TrialConfig.from_dict({**MODELS[name], "batch_size": args.batch_size, "lr": 1e-3, "seed": 0})
    trainer = Trainer(config, data, "cpu")

    torch.manual_seed(config.seed)
    model = build_model(config, data.shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(config.seed)
    images, batch = data.train_x, config.batch_size

    def bare_epoch() -> float:
        model.train()
        perm = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), batch):
            x = images[perm[i:i + batch]].float().div_(255)
            loss = model.objective(x, x).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    loops = {"aetune": lambda: trainer.train_epoch()["train_loss"], "bare": bare_epoch}
    if name in args.dataloader_models:
        loops["dataloader"] = dataloader_epoch_fn(config, root, args.train_size, data.shape)

    times: dict[str, list[float]] = {k: [] for k in loops}
    cpu_use: dict[str, list[float]] = {k: [] for k in loops}  # process CPU seconds / wall seconds per epoch
    losses: dict[str, float] = {}
    waits, discarded = [], []
    for _ in range(args.warmup):
        for key, fn in loops.items():
            losses[key] = fn()
    timed, retries = 0, 0
    while timed < args.epochs:
        # One round = one epoch of each loop, back to back. A round in which another process took a core
        # (our CPU use fell below --min-cpu-use) is discarded and measured again, up to --max-retries times.
        if args.wait_idle:
            waits.append(_common.wait_for_idle(args.wait_idle))
        round_times, round_use = {}, {}
        order = list(loops) if (timed + retries) % 2 == 0 else list(loops)[::-1]  # ABBA: no loop always goes first
        for key in order:
            fn = loops[key]
            cpu0, start = _cpu_seconds(), time.perf_counter()
            losses[key] = fn()
            round_times[key] = time.perf_counter() - start
            round_use[key] = (_cpu_seconds() - cpu0) / round_times[key]
        if min(round_use.values()) < args.min_cpu_use and retries < args.max_retries:
            retries += 1
            discarded.append({"times": round_times, "cpu_use": round_use})
            continue
        for key in loops:
            times[key].append(round_times[key])
            cpu_use[key].append(round_use[key])
        timed += 1
    evals = []
    if args.eval:
        for _ in range(3):
            start = time.perf_counter()
            trainer.evaluate()
            evals.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    return {"model": name, "params": params, "times": times, "cpu_use": cpu_use, "last_loss": losses,
            "eval": evals, "threads": torch.get_num_threads(), "train_images": len(images), "idle_waits": waits,
            "discarded_rounds": discarded}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def dataloader_epoch_fn(config, root: str, train_size: int | None, shape):
    """The textbook loop: per-sample ToTensor() through a DataLoader, shuffled."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from aetune.models import build_model

    dataset = datasets.MNIST(root, train=True, transform=transforms.ToTensor(), download=False)
    if train_size:
        dataset = Subset(dataset, range(train_size))
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True)
    torch.manual_seed(config.seed)
    model = build_model(config, shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> float:
        model.train()
        for x, _ in loader:
            loss = model.objective(x, x).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    return epoch


# --- the driver: one subprocess per (model, malloc setting) --------------------------------------------------------

def child(args: argparse.Namespace, name: str, tuned_malloc: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs), "--warmup", str(args.warmup),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--dataloader-models", *(args.dataloader_models if not tuned_malloc else []),
           "--malloc-models"]
    if args.train_size:
        cmd += ["--train-size", str(args.train_size)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    if args.eval:
        cmd.append("--eval")
    cmd += ["--wait-idle", str(args.wait_idle), "--min-cpu-use", str(args.min_cpu_use),
            "--max-retries", str(args.max_retries)]
    env = _common.python_env(_common.MALLOC_ENV if tuned_malloc else None,
                             drop=() if tuned_malloc else tuple(_common.MALLOC_ENV))
    load = _common.load()
    proc = _common.run(cmd, env=env)
    if proc.returncode != 0:
        sys.exit(f"measurement of {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(malloc="tuned" if tuned_malloc else "glibc default", load_before=load, load_after=_common.load())
    return result


def row(r: dict) -> list[object]:
    t = r["times"]
    aetune, bare = statistics.median(t["aetune"]), statistics.median(t["bare"])
    paired = statistics.median(a / b for a, b in zip(t["aetune"], t["bare"]))
    loader = statistics.median(t["dataloader"]) if "dataloader" in t else None
    evals = f"{statistics.median(r['eval']):.3g}" if r["eval"] else "-"
    use = statistics.median(r["cpu_use"]["aetune"] + r["cpu_use"]["bare"])
    return [LABELS[r["model"]], f"{r['params']:,}", r["malloc"], f"{aetune:.3g} ({_common.spread(t['aetune'])})",
            f"{bare:.3g} ({_common.spread(t['bare'])})", f"{aetune / bare:.3f}", f"{paired:.3f}",
            f"{loader:.3g} ({loader / bare:.2f}x bare)" if loader else "-", evals, f"{len(t['aetune'])} (+{len(r['discarded_rounds'])} discarded)",
            f"{use:.2f}", f"{r['load_before']} / {r['load_after']}"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.min_cpu_use is None:
        args.min_cpu_use = 0.875 * args.threads
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    _common.header(f"trainer_vs_bare: train_epoch s/epoch, {args.train_size or 60000} images, batch "
                   f"{args.batch_size}, {args.threads} threads")
    results = []
    for name in args.models:
        results.append(child(args, name, tuned_malloc=False))
        if name in args.malloc_models:
            results.append(child(args, name, tuned_malloc=True))
        print(f"<!-- done {name} -->", file=sys.stderr, flush=True)
    columns = ["model", "params", "malloc env", "aetune s/epoch (min-max)", "bare s/epoch (min-max)",
               "ratio of medians", "median paired ratio", "DataLoader(MNIST, ToTensor()) s/epoch", "aetune eval s",
               "timed epochs",
               "CPU s per wall s (2 = both cores ours)", "load 1/5/15 min before / after"]
    print(_common.table(columns, [row(r) for r in results]))
    if args.json:
        for r in results:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
