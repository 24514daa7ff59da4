"""Pareto fronts and the knee rule: the numbers the leaderboard's pick of a multi-objective variant rests on."""
from __future__ import annotations

import math

from aetune.pareto import KNEE_RULE, dominates, front, knee, pick


def test_front_keeps_exactly_the_non_dominated_points_sorted():
    points = [(0.10, 0.9), (0.12, 0.5), (0.11, 0.95), (0.20, 0.1), (0.15, 0.6), (0.12, 0.5), (math.nan, 0.0)]
    assert front(points, ["min", "min"]) == [0, 1, 3]  # 2 and 4 are dominated, 5 duplicates 1, 6 is not finite


def test_modes_turn_the_front_around():
    points = [(0.9, 0.1), (0.8, 0.5), (0.95, 0.05)]
    assert front(points, ["max", "max"]) == [2, 0, 1]
    assert dominates((0.9, 0.5), (0.8, 0.5), ["max", "min"]) and not dominates((0.8, 0.5), (0.8, 0.5), ["min", "min"])


def test_knee_is_the_balanced_member_whatever_the_units():
    points = [(0.10, 900.0), (0.11, 300.0), (0.13, 250.0), (0.30, 10.0)]
    assert knee(points, ["min", "min"]) == 2  # scaled: (0.15, 0.27) is nearest (0, 0)
    scaled = [(a * 1000, b / 1000) for a, b in points]  # the rule does not depend on the objectives' units
    assert knee(scaled, ["min", "min"]) == 2
    assert knee([(0.5, 0.5)], ["min", "min"]) == 0


def test_a_front_of_one_or_two_has_no_knee_and_says_so():
    points = [(0.10, 0.9), (0.14, 0.2)]
    assert knee(points, ["min", "min"]) == 0  # both scaled points are 1 from the ideal: the rule is undefined
    assert pick(points, ["min", "min"], ["val_bce", "code_l1"]) == (0, "a front of 2 has no knee: its best val_bce")
    assert pick([], ["min", "min"], ["val_bce", "code_l1"]) == (None, "no trial completed: no front")
    three = [(0.10, 0.9), (0.11, 0.3), (0.20, 0.1)]
    assert pick(three, ["min", "min"], ["val_bce", "code_l1"]) == (1, KNEE_RULE)
