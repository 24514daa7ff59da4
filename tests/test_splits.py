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
    older = {"selected_on": None}  # evaluate's record_of: a summary that predates recorded splits
    assert study.selection_split([older]) == study.UNRECORDED
    assert study.selection_split([older, {"selected_on": "validation"}]) == study.UNRECORDED
    assert "validation split" not in f"On the {study.selection_split([older])} split"
    assert study.selection_split([{"selected_on": "validation"}]) == "validation"
    assert study.selection_split([{"selected_on": "validation"}, {"selected_on": "test"}]) == "validation and test"
