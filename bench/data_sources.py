#!/usr/bin/env python
"""Your own data, measured: load time and resident memory of a 100,000-image 32x32x3 .npz and of a 10,000-file PNG
folder (each loaded in a fresh process through aetune.train.data.load_data, as a trial worker loads it), and one
epoch of conv [16, 8, 8] on CIFAR-10-sized data (synthetic: 50,000 x 3 x 32 x 32 random uint8, the size and shape of
CIFAR-10's training split; timing does not depend on the pixel values) in the Trainer against the bare loop
(bare.py, channels_last as the Trainer). The epochs alternate Trainer, bare, Trainer, bare; both are listed.

  python bench/data_sources.py                         # the BENCHMARKS.md table
  python bench/data_sources.py --npz-images 2000 --png-files 500 --epoch-images 2000   # smoke
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

LOADER = r"""
import json, resource, sys, time
def rss():  # MiB resident now and at the peak
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
from aetune.train.data import load_data
before, _ = rss()
start = time.perf_counter()
data = load_data(sys.argv[1])
seconds = time.perf_counter() - start
after, peak = rss()
images = sum(t.numel() for t in (data.train_x, data.val_x, data.test_x))
print(json.dumps({"seconds": seconds, "rss_mib": after - before, "peak_mib": peak - before,
                  "images_mib": images / 2**20, "n": len(data.train_x) + len(data.val_x) + len(data.test_x)}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--npz-images", type=int, default=100_000)
    p.add_argument("--png-files", type=int, default=10_000)
    p.add_argument("--epoch-images", type=int, default=50_000, help="0: no epochs, the loading table only")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def make_npz(folder: Path, n: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    path = folder / "images.npz"
    np.savez(path, x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, n))
    return path


def make_pngs(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    rng, root = np.random.default_rng(0), folder / "pngs"
    for i in range(n):
        (root / f"class{i % 10}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"class{i % 10}" / f"{i}.png")
    return root


def measure_load(path: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", LOADER, str(path)], capture_output=True, text=True,
                         env=_common.python_env(), check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def epochs(n: int, threads: int) -> dict[str, list[float]]:
    import torch
    from bare import BareLoop

    from aetune.config import TrialConfig
    from aetune.train.data import ImageData
    from aetune.train.trainer import Trainer

    torch.set_num_threads(threads)
    config = {**_common.MODELS["conv"], "batch_size": 256, "lr": 1e-3, "seed": 0}
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    val = images[:1000]
    trainer = Trainer(TrialConfig.from_dict(config), ImageData("synthetic", images, None, val, None), "cpu")
    bare = BareLoop(config, images, channels_last=True)
    times: dict[str, list[float]] = {"Trainer.train_epoch": [], "bare loop": []}
    for _ in range(2):
        for name, epoch in (("Trainer.train_epoch", trainer.train_epoch), ("bare loop", bare.epoch)):
            start = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args()
    _common.header()
    with tempfile.TemporaryDirectory() as tmp:
        _common.progress("writing the .npz and the PNG folder")
        sources = {f".npz, {args.npz_images:,} x 32x32x3 uint8": make_npz(Path(tmp), args.npz_images),
                   f"PNG folder, {args.png_files:,} files 32x32 RGB, 10 class subfolders":
                       make_pngs(Path(tmp), args.png_files)}
        rows = []
        for name, path in sources.items():
            _common.progress(f"loading {name}")
            m = measure_load(path)
            rows.append([name, m["n"], m["seconds"], m["images_mib"], m["rss_mib"], m["peak_mib"]])
    print("### Loading (load_data in a fresh process: read, carve the test split, hold out validation)\n")
    print(_common.table(["source", "images", "load s", "images MiB (uint8)", "resident MiB after",
                         "peak MiB during"], rows))
    if not args.epoch_images:
        _common.footer()
        return
    _common.progress("conv epochs")
    times = epochs(args.epoch_images, args.threads)
    print(f"\n### One epoch of conv [16, 8, 8], {args.epoch_images:,} synthetic 3x32x32 images, batch 256, "
          f"{args.threads} threads\n")
    print(_common.table(["loop", "epoch 1 s", "epoch 2 s", "images/s (best)"],
                        [[name, t[0], t[1], args.epoch_images / min(t)] for name, t in times.items()]))
    _common.footer()


if __name__ == "__main__":
    main()
