"""What a trial asks Ray for, and how many such trials a node runs at once, counted as Ray counts. (The refusal
when no node of a real cluster can hold one trial is in test_bad_inputs: cpus-, gpus- and memory-beyond-the-cluster.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aetune.search.preflight import node_slots, trial_resources
from aetune.search.space_file import parse_space
from aetune.train.data import load_data, worker_bytes

SPLITS = {"dense": {"train": 900, "val": 100, "shape": [3, 8, 8], "read": 1250, "read_bytes": 1250 * 192},
          "conv": {"train": 450, "val": 50, "shape": [3, 8, 8], "read": 1250, "read_bytes": 1250 * 192}}


def space(**resources):
    return parse_space({"resources": resources, "variants": {"dense": {"model": "dense"}}}, "test")


def test_a_trial_asks_for_its_cpus_gpus_and_its_workers_peak_copy_of_the_data():
    assert trial_resources(space(cpus=2, gpus=0.5), SPLITS) == {"CPU": 2, "GPU": 0.5, "memory": 3 * 1250 * 192}


def test_a_worker_reads_the_whole_source_as_stored_whatever_it_keeps(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((500, 16, 16, 3), np.uint8))
    split = load_data(str(tmp_path / "x.npz"), train_size=40, val_size=10, channels=1, image_size=(8, 8)).split
    assert (split["read"], split["read_bytes"], split["train"], split["val"]) == (500, 500 * 768, 30, 10)
    assert worker_bytes(split) == 3 * 500 * 768  # as stored: RGB 16 x 16, not the grey 8 x 8 kept


# A worker's real peak, measured in a fresh process: its resident memory's high-water mark (reset once the imports
# are done, Linux's clear_refs 5) over its resident memory then, while it loads the data, builds a Trainer and trains
# an epoch. worker_bytes must cover it, plus the model and PyTorch's own working memory (SLACK).
PEAK = """
import re, sys
import torch
from aetune.config import TrialConfig
from aetune.train.data import load_data, worker_bytes
from aetune.train.trainer import Trainer

def status(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

torch.set_num_threads(1)
open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts again from here
before = status("VmRSS")
path, train_size, val_size, channels, size = sys.argv[1], *map(int, sys.argv[2:])
config = TrialConfig.from_dict({"dataset": path, "model": "dense", "hidden_layers": [8], "code_size": 2, "epochs": 1,
                                "train_size": train_size, "val_size": val_size, "channels": channels,
                                "image_size": size, "batch_size": 256})
data = load_data(path, None, train_size, None, True, val_size, "random", False, channels, (size, size))
Trainer(config, data, "cpu").train_epoch()
print(status("VmHWM") - before, worker_bytes(data.split))
"""
SLACK = 64 * 2**20


@pytest.mark.parametrize("images, train_size, val_size, channels, size", [
    ((20_000, 64, 64, 3), 4000, 400, 1, 16),  # reading: RGB 64 x 64 stored, grey 16 x 16 kept
    ((30_000, 32, 32, 3), 22_000, 20_000, 3, 32),  # training: 2,000 images and 20,000 validation ones as float32
])
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures with Linux's /proc")
def test_a_workers_measured_peak_stays_within_what_it_asks_for(tmp_path, images, train_size, val_size, channels, size):
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).integers(0, 256, images, dtype=np.uint8))
    run = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / "x.npz"), str(train_size), str(val_size),
                          str(channels), str(size)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    peak, asked = map(int, run.stdout.split())
    assert peak > asked / 4  # the measurement sees the data (the request is at most a few times the peak)
    assert peak <= asked + SLACK, f"measured {peak / 2**20:.0f} MiB, asked {asked / 2**20:.0f} MiB"


@pytest.mark.parametrize("node, trial, slots", [
    ({"CPU": 3}, {"CPU": 2, "GPU": 0, "memory": 1}, 0),  # memory absent: Ray would never place it here
    ({"CPU": 3, "memory": 10}, {"CPU": 2, "GPU": 0, "memory": 1}, 1),  # a trial never spans two nodes
    ({"CPU": 7, "memory": 10**9}, {"CPU": 0.07, "GPU": 0, "memory": 1}, 100),  # 7 / 0.07 is 99.99... in floats
    ({"CPU": 16, "GPU": 1, "memory": 10**9}, {"CPU": 1, "GPU": 0.25, "memory": 1}, 4),  # the GPU decides
    ({"CPU": 16, "GPU": 0.5, "memory": 10**9}, {"CPU": 1, "GPU": 1, "memory": 1}, 0),
    ({"CPU": 64, "memory": 2**30}, {"CPU": 1, "GPU": 0, "memory": 0.3 * 2**30}, 3),  # the images decide
    ({"CPU": 64, "memory": 2**30}, {"CPU": 1, "GPU": 0, "memory": 2**30 + 1}, 0),
])
def test_a_node_runs_as_many_trials_as_its_scarcest_resource_holds(node, trial, slots):
    assert node_slots(node, trial) == slots


def test_the_driver_keeps_no_copy_of_the_data_once_checked(tmp_path):
    """The driver reads the data once to check it and size the trials; the trials' workers read their own."""
    from aetune.search.__main__ import _splits

    np.savez(tmp_path / "x.npz", x=np.zeros((500, 8, 8), np.uint8))
    checked = parse_space({"dataset": str(tmp_path / "x.npz"), "variants": {"dense": {"model": "dense"}}}, "test")
    assert _splits(checked, tmp_path, resume=False)["dense"]["read"] == 500
    assert load_data.cache_info().currsize == 0
