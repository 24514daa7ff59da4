#!/usr/bin/env python
"""GPU benchmarks (needs CUDA): trials packed on one GPU, bf16 AMP, and the dataset resident on the GPU.

1. Packing: the same dense [128, 64] code 32 trial, 1, 2, 4 and 8 at a time on one GPU through
   `python -m aetune.search --gpus-per-trial 1 / 0.5 / 0.25 / 0.125` (searcher random, scheduler fifo, full MNIST).
   Per trial: median train samples/s over its epochs after the first (each trial's own `samples_per_s`); in total:
   the sum of those, and all trials' train images / (last trial end - first trial start) from stamps that the
   wrapped real trainable writes (see driver_overhead.py), which includes evaluation and Ray's per-trial costs.
2. AMP: Trainer (no Ray) with `amp: false` and `amp: true` (bf16 autocast) on the same seed: train samples/s and
   the final val_loss / val_bce, for dense (and conv with --amp-models).
3. Residency: a hand-written loop over the same model with the dataset on the GPU (one uint8 tensor, batches sliced
   from a per-epoch permutation) against the same loop with the dataset in pinned host memory and a non-blocking
   copy of each batch; Trainer's own data device is printed too.

On a machine without CUDA it prints why and exits with status 1 (use --smoke-cpu to run the same code on the CPU
with tiny sizes, only to check the script itself: its numbers mean nothing about GPUs).

  python bench/gpu_packing.py                          # all three parts
  python bench/gpu_packing.py --parts amp --amp-models dense conv --epochs 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MODELS = {
    "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
    "conv": {"model": "conv", "filters": [16, 8, 8]},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["packing", "amp", "residency"],
                   choices=["packing", "amp", "residency"])
    p.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4, 8], help="trials per GPU (default 1 2 4 8)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial / per AMP run (default 5)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all 60,000)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--amp-models", nargs="+", default=["dense"], choices=list(MODELS))
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--smoke-cpu", action="store_true",
                   help="check the script on a CPU (gpus-per-trial 0, 2000 images, 2 epochs); not a GPU measurement")
    return p.parse_args(argv)


# --- 1. packing ---------------------------------------------------------------------------------------------------

def packing(args: argparse.Namespace, device: str) -> list[list[object]]:
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-gpu-"))
    for k in args.packing:
        gpus = 0 if device == "cpu" else 1.0 / k
        train = f"train_size: {args.train_size}, " if args.train_size else ""
        space = tmp / f"pack{k}.yaml"
        space.write_text(textwrap.dedent(f"""\
            name: pack{k}
            dataset: mnist
            metric: val_loss
            epochs: {args.epochs}
            samples: {k}
            searcher: random
            scheduler: fifo
            resources: {{cpus: {args.cpus_per_trial}, gpus: {gpus}}}
            seed: 0
            defaults: {{{train}batch_size: {args.batch_size}, lr: 0.001}}
            variants:
              dense: {{model: dense, hidden_layers: [128, 64], code_size: 32}}
            """))
        stamps = tmp / f"pack{k}.stamps.jsonl"
        cmd = [sys.executable, str(Path(__file__).with_name("driver_overhead.py")), "--driver", str(stamps),
               "--space", str(space), "--name", f"pack{k}", "--storage", str(tmp / "runs"),
               "--data-root", _common.data_root(args.data_root), "--quiet"]
        start = time.perf_counter()
        proc = _common.run(cmd, env=_common.python_env())
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"packing {k} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        per_trial, images, final = [], 0, []
        for result in (tmp / "runs" / f"pack{k}" / "dense").glob("trial_*/result.json"):
            lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            speeds = [r["samples_per_s"] for r in lines[1:]] or [r["samples_per_s"] for r in lines]
            per_trial.append(statistics.median(speeds))
            images += len(lines) * (args.train_size or 60000)
            final.append(lines[-1]["val_loss"])
        events = [json.loads(line) for line in stamps.read_text().splitlines()]
        starts = [e["t"] for e in events if e["event"] == "trial_start"]
        ends = [e["t"] for e in events if e["event"] == "trial_end"]
        overlap = min(ends) > max(starts)  # every trial started before the first one ended: they ran together
        span = max(ends) - min(starts)
        rows.append([k, f"{gpus:g}", len(per_trial), f"{statistics.median(per_trial):,.0f}",
                     f"{sum(per_trial):,.0f}", f"{images / span:,.0f}", "yes" if overlap else "NO",
                     f"{statistics.median(final):.5g}", f"{wall:.1f}"])
        print(f"<!-- packing {k}: {rows[-1]} -->", file=sys.stderr, flush=True)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return rows


# --- 2. AMP ---------------------------------------------------------------------------------------------------------

def amp(args: argparse.Namespace, device: str) -> list[list[object]]:
    from aetune.config import TrialConfig
    from aetune.data import load_data
    from aetune.train import Trainer

    data = load_data("mnist", _common.data_root(args.data_root), args.train_size, None, download=False)
    rows = []
    for name in args.amp_models:
        for use_amp in (False, True):
            config = TrialConfig.from_dict({**MODELS[name], "batch_size": args.batch_size, "lr": 1e-3, "seed": 0,
                                            "epochs": args.epochs, "amp": use_amp})
            trainer = Trainer(config, data, device)
            speeds = []
            for _ in range(args.epochs):
                metrics = trainer.run_epoch()
                speeds.append(metrics["samples_per_s"])
            last = trainer.history[-1]
            rows.append([name, "bf16" if use_amp else "fp32", f"{statistics.median(speeds[1:] or speeds):,.0f}",
                         f"{last['val_loss']:.5g}", f"{last['val_bce']:.5f}", args.epochs,
                         str(trainer.data.train_x.device)])
        fp32, bf16 = rows[-2], rows[-1]
        change = float(bf16[3]) / float(fp32[3]) - 1
        speedup = float(bf16[2].replace(",", "")) / float(fp32[2].replace(",", ""))
        rows[-1] = rows[-1] + [f"{speedup:.2f}x", f"{change:+.2%}"]
        rows[-2] = rows[-2] + ["1.00x", "-"]
    return rows


# --- 3. residency -----------------------------------------------------------------------------------------------

def residency(args: argparse.Namespace, device: str) -> list[list[object]]:
    import torch

    from aetune.data import load_data
    from aetune.models import build_model

    data = load_data("mnist", _common.data_root(args.data_root), args.train_size, None, download=False)
    rows = []
    for where in ("device", "pinned host + non_blocking copy per batch"):
        torch.manual_seed(0)
        model = build_model(MODELS["dense"], data.shape).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        if where == "device":
            images = data.train_x.to(device)
        else:
            images = data.train_x.pin_memory() if device == "cuda" else data.train_x
        n, batch, times = len(images), args.batch_size, []
        for epoch in range(args.epochs + 1):
            _sync(device)
            start = time.perf_counter()
            perm = torch.randperm(n, device=images.device)
            shuffled = images[perm]
            if where != "device" and device == "cuda":
                shuffled = shuffled.pin_memory()
            for i in range(0, n, batch):
                x = shuffled[i:i + batch].to(device, non_blocking=True).float().div_(255)
                loss = model.objective(x, x).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            _sync(device)
            if epoch:
                times.append(time.perf_counter() - start)
        rows.append([where, f"{n / statistics.median(times):,.0f}", f"{statistics.median(times):.3f}", len(times)])
    return rows


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.smoke_cpu:
        device = "cpu"
        args.train_size, args.epochs, args.packing = args.train_size or 2000, min(args.epochs, 2), args.packing[:2]
        torch.set_num_threads(2)
    elif not torch.cuda.is_available():
        print("gpu_packing.py: no CUDA device here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}). This benchmark measures GPU "
              "sharing, bf16 AMP and GPU-resident data, so it needs a machine with an NVIDIA GPU. "
              "(--smoke-cpu runs its code on the CPU, for checking the script only.)", file=sys.stderr)
        return 1
    else:
        device = "cuda"
    _common.header(f"gpu_packing on {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (smoke test)'}: "
                   f"dense [128,64]-32, {args.train_size or 60000} images, batch {args.batch_size}, "
                   f"{args.epochs} epochs")
    if "packing" in args.parts:
        print(_common.table(["trials on the GPU", "gpus per trial", "trials", "samples/s per trial (median)",
                             "sum of per-trial samples/s", "all train images / span (incl. eval, Ray)",
                             "ran together", "final val_loss (median)", "experiment wall s"], packing(args, device)))
        print()
    if "amp" in args.parts:
        print(_common.table(["model", "precision", "train samples/s (median)", "final val_loss", "final val_bce",
                             "epochs", "data device", "speed vs fp32", "val_loss change vs fp32"], amp(args, device)))
        print()
    if "residency" in args.parts:
        print(_common.table(["dataset", "train samples/s", "s/epoch", "timed epochs"], residency(args, device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
