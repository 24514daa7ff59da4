#!/usr/bin/env python
"""Time of Trainer.evaluate() (the 10k test split) against aetune.train.EVAL_BATCH, with and without the malloc env.

evaluate() runs the held-out split in chunks of EVAL_BATCH (2048) images. A conv activation of 2048 images is
2048 x 16 x 28 x 28 x 4 B = 103 MB: above even the tuned MALLOC_MMAP_THRESHOLD_ (64 MiB), so every such buffer is
mmapped, page-faulted in and unmapped again. This script sets aetune.train.EVAL_BATCH to each value in turn (in the
benchmark process only) and times evaluate() (median of --repeats after one warm-up), each model and malloc setting
in a fresh subprocess; it also checks that the metrics do not depend on the chunk size.

  python bench/eval_batch.py                                  # conv, dense, vae; 256 512 1024 2048
  python bench/eval_batch.py --models conv --batches 512 2048 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import resource
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["conv", "dense", "vae"], choices=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[256, 512, 1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--malloc", nargs="+", default=["default", "tuned"], choices=["default", "tuned"])
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--wait-idle", type=float, default=120, metavar="S",
                   help="before each model/malloc subprocess, wait up to S s for idle CPUs; 0: do not wait")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    import torch

    import aetune.train as train
    from aetune.config import TrialConfig
    from aetune.data import load_data

    torch.set_num_threads(args.threads)
    data = load_data("mnist", _common.data_root(args.data_root), 2048, None, download=False)  # evaluate reads test
    trainer = train.Trainer(TrialConfig.from_dict({**MODELS[args.child], "seed": 0}), data, "cpu")
    trainer.train_epoch()  # 2048 images: weights that are not the initial ones
    out = {}
    for batch in args.batches:
        train.EVAL_BATCH = batch
        trainer.evaluate()
        times, faults = [], []
        for _ in range(args.repeats):
            f0, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            metrics = trainer.evaluate()
            times.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        out[batch] = {"times": times, "faults": faults, "val_loss": metrics["val_loss"]}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    _common.header(f"eval_batch: Trainer.evaluate() on 10,000 test images, {args.threads} threads")
    rows = []
    for name in args.models:
        for malloc in args.malloc:
            idle = _common.wait_for_idle(args.wait_idle) if args.wait_idle else "-"
            cmd = [sys.executable, __file__, "--child", name, "--batches", *map(str, args.batches), "--repeats",
                   str(args.repeats), "--threads", str(args.threads)]
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            env = _common.python_env(_common.MALLOC_ENV if malloc == "tuned" else None,
                                     drop=() if malloc == "tuned" else tuple(_common.MALLOC_ENV))
            load = _common.load()
            proc = _common.run(cmd, env=env)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            losses = [r["val_loss"] for r in result.values()]
            spread = max(losses) / min(losses) - 1  # float32 sums in a different order differ in the last digits
            for batch, r in result.items():
                rows.append([name, malloc, batch, f"{statistics.median(r['times']):.3f} ({_common.spread(r['times'])})",
                             f"{statistics.median(r['faults']):,.0f}", f"{r['val_loss']:.6g} (spread {spread:.1e})",
                             f"{load} ({idle})"])
    print(_common.table(["model", "malloc env", "EVAL_BATCH", "evaluate() s, median (min-max)",
                         "minor page faults per evaluate()", "val_loss (relative spread over the batches)", "load (CPU busy)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
