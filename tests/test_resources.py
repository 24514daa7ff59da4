"""What a trial asks Ray for, and how many such trials a node runs at once, counted as Ray counts. (The refusal
when no node of a real cluster can hold one trial is in test_bad_inputs: cpus-, gpus- and memory-beyond-the-cluster.)"""
from __future__ import annotations

import pytest

from aetune.search.preflight import node_slots, trial_resources
from aetune.search.space_file import parse_space

SPLITS = {"dense": {"train": 900, "val": 100, "shape": [3, 8, 8]},  # 192,000 bytes of uint8 images
          "conv": {"train": 450, "val": 50, "shape": [3, 8, 8]}}


def space(**resources):
    return parse_space({"resources": resources, "variants": {"dense": {"model": "dense"}}}, "test")


def test_a_trial_asks_for_its_cpus_gpus_and_its_largest_copy_of_the_images_at_the_loading_peak():
    assert trial_resources(space(cpus=2, gpus=0.5), SPLITS) == {"CPU": 2, "GPU": 0.5, "memory": 3 * 192_000}


@pytest.mark.parametrize("node, trial, slots", [
    ({"CPU": 3}, {"CPU": 2, "GPU": 0, "memory": 1}, 0),  # memory absent: Ray would never place it here
    ({"CPU": 3, "memory": 10}, {"CPU": 2, "GPU": 0, "memory": 1}, 1),  # a trial never spans two nodes
    ({"CPU": 7, "memory": 10**9}, {"CPU": 0.07, "GPU": 0, "memory": 1}, 100),  # 7 / 0.07 is 99.99... in floats
    ({"CPU": 16, "GPU": 1, "memory": 10**9}, {"CPU": 1, "GPU": 0.25, "memory": 1}, 4),  # the GPU decides
    ({"CPU": 16, "GPU": 1}, {"CPU": 1, "GPU": 1, "memory": 1}, 0),
    ({"CPU": 64, "memory": 2**30}, {"CPU": 1, "GPU": 0, "memory": 0.3 * 2**30}, 3),  # the images decide
    ({"CPU": 64, "memory": 2**30}, {"CPU": 1, "GPU": 0, "memory": 2**30 + 1}, 0),
])
def test_a_node_runs_as_many_trials_as_its_scarcest_resource_holds(node, trial, slots):
    assert node_slots(node, trial) == slots
