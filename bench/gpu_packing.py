#!/usr/bin/env python
"""GPU benchmarks (needs CUDA): trials packed on one GPU, bf16 AMP, and the dataset resident on the GPU.

1. packing: k = 1, 2, 4, 8 trials of one model at a time on one GPU, through `python -m aetune.search` with
   resources gpus 1/k (the space fixture in _common: random, FIFO, full MNIST) and instrumented.py. Per trial: the
   median of its epochs' samples_per_s after the first; in total: their sum, and all trials' training images over
   the span from the first trial's start to the last one's end (evaluation and Ray's costs included).
2. amp: the Trainer (no Ray) with amp false and true (bf16 autocast), same seed: train samples/s and the final
   val_loss and val_bce (validation split).
3. residency: the bare loop (bare.py) with the dataset on the GPU, against the dataset in pinned host memory with
   a non-blocking copy of each batch.
The quick job's wall time with --gpus-per-trial 0.25: bench/driver_overhead.py --job-args "--gpus-per-trial 0.25".

Without CUDA it says so and exits with status 1; --smoke-cpu runs the same code on the CPU with tiny sizes, to check
the script only (its numbers say nothing about GPUs).

  python bench/gpu_packing.py                                        # all three parts, dense
  python bench/gpu_packing.py --parts packing amp --models dense conv vae
  python bench/gpu_packing.py --smoke-cpu                            # smoke
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["packing", "amp", "residency"],
                   choices=["packing", "amp", "residency"])
    p.add_argument("--models", nargs="+", default=["dense"], choices=list(_common.MODELS))
    p.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4, 8], help="trials per GPU (default 1 2 4 8)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial / per AMP run (default 5)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-size", type=int, help="training images in use (default: all 60,000)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--smoke-cpu", action="store_true", help="check the script on a CPU: gpus 0, 2000 images, "
                   "2 epochs, packing 1 2")
    return p.parse_args(argv)


def packing(args: argparse.Namespace, device: str, name: str, tmp: Path) -> list[list[object]]:
    rows = []
    for k in args.packing:
        gpus = 0 if device == "cpu" else 1 / k
        experiment = f"pack_{name}_{k}"
        space = _common.write_space(tmp, experiment, samples=k, epochs=args.epochs,
                                    resources={"cpus": args.cpus_per_trial, "gpus": gpus},
                                    defaults={"batch_size": args.batch_size, **_subset(args)},
                                    variants={name: _common.MODELS[name]})
        stamps = tmp / f"{experiment}.jsonl"
        run = _common.search(["--space", str(space), "--storage", str(tmp / "runs"), "--quiet",
                              "--data-root", _common.data_root(args.data_root)], stamps=stamps)
        trials = _common.trials(tmp / "runs" / experiment)
        speeds = [statistics.median([r["samples_per_s"] for r in t["results"][1:] or t["results"]]) for t in trials]
        images = sum(len(t["results"]) for t in trials) * _common.train_images(_subset(args))
        spans = _common.trial_spans(_common.stamps(stamps))
        span = max(s[2] for s in spans) - min(s[1] for s in spans)
        together = min(s[2] for s in spans) > max(s[1] for s in spans)  # all started before the first one ended
        final = statistics.median(t["results"][-1]["val_loss"] for t in trials)
        rows.append([_common.LABELS[name], k, f"{gpus:g}", f"{statistics.median(speeds):,.0f}", f"{sum(speeds):,.0f}",
                     f"{images / span:,.0f}", "yes" if together else "NO", f"{final:.5g}", f"{run.wall:.1f}"])
        _common.progress(f"packing {name} x{k}: {run.wall:.1f} s")
    return rows


def _subset(args: argparse.Namespace) -> dict:
    return {"train_size": args.train_size} if args.train_size else {}


def amp(args: argparse.Namespace, device: str, name: str, data) -> list[list[object]]:
    from aetune.config import TrialConfig
    from aetune.train.trainer import Trainer

    rows = []
    for use_amp in (False, True):
        config = {**_common.MODELS[name], "batch_size": args.batch_size, "lr": 1e-3, "seed": 0, "amp": use_amp}
        trainer = Trainer(TrialConfig.from_dict(config), data, device)
        speeds = [trainer.run_epoch()["samples_per_s"] for _ in range(args.epochs)]
        last = trainer.history[-1]
        rows.append([_common.LABELS[name], "bf16" if use_amp else "fp32", statistics.median(speeds[1:] or speeds),
                     last["val_loss"], last["val_bce"]])
    fp32, bf16 = rows
    return [[*r[:2], f"{r[2]:,.0f}", f"{r[2] / fp32[2]:.2f}x", f"{r[3]:.5g}", f"{r[3] / fp32[3] - 1:+.2%}",
             f"{r[4]:.5f}"] for r in (fp32, bf16)]


def residency(args: argparse.Namespace, device: str, data) -> list[list[object]]:
    from bare import BareLoop

    rows = []
    config = {**_common.MODELS["dense"], "batch_size": args.batch_size}
    for label, images, pin in (("on the device", data.train_x.to(device), False),
                               ("pinned host memory, non-blocking copy per batch", data.train_x, device == "cuda")):
        loop = BareLoop(config, images, device, pin=pin)
        times = []
        for epoch in range(args.epochs + 1):  # the first is a warm-up
            start = time.perf_counter()
            loop.epoch()  # ends with loss.item(): waits for the device
            if epoch:
                times.append(time.perf_counter() - start)
        rows.append([label, f"{len(images) / statistics.median(times):,.0f}", _common.spread(times), len(times)])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.smoke_cpu:
        device, args.packing = "cpu", args.packing[:2]
        args.train_size, args.epochs = args.train_size or 2000, min(args.epochs, 2)
        torch.set_num_threads(2)
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print(f"gpu_packing.py: no CUDA device here (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); it measures GPU sharing, bf16 AMP and GPU-resident data, so it needs "
              "an NVIDIA GPU (--smoke-cpu checks the script on a CPU)", file=sys.stderr)
        return 1
    from aetune.train.data import load_data

    _common.header()
    where = torch.cuda.get_device_name(0) if device == "cuda" else "the CPU (smoke test: numbers mean nothing)"
    print(f"On {where}: {_common.train_images(_subset(args)):,} training images, batch {args.batch_size}, "
          f"{args.epochs} epochs.\n")
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-gpu-"))
    data = load_data("mnist", _common.data_root(args.data_root), args.train_size, download=False, test=False)
    if "packing" in args.parts:
        rows = [row for name in args.models for row in packing(args, device, name, tmp)]
        print(_common.table(["model", "trials on the GPU", "gpus per trial", "samples/s per trial (median)",
                             "sum of per-trial samples/s", "all train images / span (eval, Ray included)",
                             "ran together", "final val_loss (median)", "experiment wall s"], rows) + "\n")
    if "amp" in args.parts:
        rows = [row for name in args.models for row in amp(args, device, name, data)]
        print(_common.table(["model", "precision", "train samples/s (median)", "speed vs fp32", "final val_loss",
                             "val_loss vs fp32", "final val_bce"], rows) + "\n")
    if "residency" in args.parts:
        print(_common.table(["dense [128, 64]-32 dataset", "train samples/s", "s/epoch", "timed epochs"],
                            residency(args, device, data)))
    _common.footer()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
