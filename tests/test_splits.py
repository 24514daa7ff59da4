"""Every number names the split it came from: a pick searched on train_loss was not selected on validation, and a
summary that does not record its split (older ones validated on the test split) is not worded as validation."""
from __future__ import annotations

import pytest

from aetune.evaluate import study
from aetune.search.picks import selected_on
from aetune.search.spaces import Search


def search(*metric: str) -> Search:
    return Search(metric, ("min",) * len(metric), 2, "fifo", 1, 2, None)


@pytest.mark.parametrize("metric, val_from, expected", [
    (("val_bce",), "train", "validation"),
    (("val_bce",), "test", "test"),
    (("train_loss",), "train", "training"),
    (("train_loss", "code_size"), "train", "training"),
    (("val_bce", "code_size"), "train", "validation"),
    (("train_loss", "val_bce"), "test", "test and training"),
])
def test_a_pick_is_labelled_with_the_split_its_objectives_read(metric, val_from, expected):
    assert selected_on(search(*metric), {"val_from": val_from}) == expected


def test_a_summary_without_its_split_is_not_worded_validation():
    older = {"selected_on": None, "checkpoint": "x.pt"}  # evaluate's record_of: a summary before recorded splits
    assert study.selection_split([older]) == study.UNRECORDED
    assert study.selection_split([older, {"selected_on": "validation"}]) == study.UNRECORDED
    assert "validation split" not in f"On the {study.selection_split([older])} split"
    picked, crashed = {"selected_on": "validation", "checkpoint": "y.pt"}, {"selected_on": None, "trial_results": []}
    assert study.selection_split([picked, crashed]) == "validation"  # a variant that scored nothing says nothing
    assert study.selection_split([picked, {"selected_on": "test", "checkpoint": "z.pt"}]) == "validation and test"
