"""What a trial asks Ray for, and how many such trials a node runs at once, counted as Ray counts. (The refusal
when no node of a real cluster can hold one trial is in test_bad_inputs: cpus-, gpus- and memory-beyond-the-cluster.)"""
from __future__ import annotations

import numpy as np
import pytest

from aetune.search.preflight import node_slots, trial_resources
from aetune.search.space_file import parse_space
from aetune.train.data import load_data, worker_bytes

SPLITS = {"dense": {"train": 900, "val": 100, "shape": [3, 8, 8], "read": 1250},  # 192 bytes an image
          "conv": {"train": 450, "val": 50, "shape": [3, 8, 8], "read": 1250}}


def space(**resources):
    return parse_space({"resources": resources, "variants": {"dense": {"model": "dense"}}}, "test")


def test_a_trial_asks_for_its_cpus_gpus_and_its_workers_peak_copy_of_the_data():
    assert trial_resources(space(cpus=2, gpus=0.5), SPLITS) == {"CPU": 2, "GPU": 0.5, "memory": 3 * 1250 * 192}


def test_the_peak_is_reading_the_whole_source_or_training_with_float_validation_images(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((500, 8, 8), np.uint8))
    split = load_data(str(tmp_path / "x.npz"), train_size=40, val_size=10).split  # all 500 read, 40 kept
    assert (split["read"], split["train"], split["val"]) == (500, 30, 10)
    assert worker_bytes(split) == 3 * 500 * 64  # reading: the images as read, channels first, reordered
    many_val = {"train": 100, "val": 900, "shape": [1, 8, 8], "read": 1000}
    assert worker_bytes(many_val) == 1000 * 64 + 2 * 4 * 900 * 64  # training: uint8, and clean + noisy float val


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
