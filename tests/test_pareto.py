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


def test_the_knee_under_mode_max_is_the_mirror_of_the_knee_under_min():
    """Maximising an objective is minimising its negative: the same member is the knee, never the far end."""
    points = [(0.10, 900.0), (0.11, 300.0), (0.13, 250.0), (0.30, 10.0)]
    mirrored = [(a, -b) for a, b in points]  # the second objective now to be maximised
    assert front(mirrored, ["min", "max"]) == [0, 1, 2, 3]
    assert knee(mirrored, ["min", "max"]) == 2
    assert pick(mirrored, ["min", "max"], ["val_bce", "code_l1"]) == (2, KNEE_RULE)


def told(repeats, trial_id, config, results, error=False):
    repeats.asked("sparse", trial_id, config)
    for result in results:
        repeats.on_result("sparse", trial_id, result)
    repeats.on_complete("sparse", trial_id, None, error)


def test_the_router_picks_the_knee_of_the_trials_that_ran_every_epoch():
    """A trial stopped early (ASHA) is not on the front, however good its partial values look; an errored or
    diverged trial neither. The repeats then train the knee's config under the next seeds."""
    from aetune.experiment import REPEAT_KEY, REPEAT_OF_KEY
    from aetune.search.repeats import Repeats

    repeats = Repeats({"sparse": 2}, {"sparse": (("val_bce", "code_l1"), ("min", "min"))}, epochs=3)
    last = [(0.10, 900.0), (0.11, 300.0), (0.13, 250.0), (0.30, 10.0)]
    for i, (bce, l1) in enumerate(last):
        told(repeats, f"t{i}", {"seed": 0, "l1": i}, [{"epoch": e, "val_bce": bce, "code_l1": l1} for e in (1, 2, 3)])
    told(repeats, "stopped", {"seed": 0, "l1": 9}, [{"epoch": 1, "val_bce": 0.01, "code_l1": 1.0}])  # dominates all
    told(repeats, "errored", {"seed": 0, "l1": 8}, [{"epoch": 3, "val_bce": 0.01, "code_l1": 2.0}], error=True)
    told(repeats, "diverged", {"seed": 0, "l1": 7},
         [{"epoch": 3, "val_bce": 0.02, "code_l1": 2.0, "diverged": True}])
    assert repeats.pick("sparse") == "t2"
    assert repeats.ready("sparse", search_over=True) and not repeats.ready("sparse", search_over=False)
    first, second = repeats.suggest("sparse", "r1"), repeats.suggest("sparse", "r2")
    assert (first["seed"], second["seed"]) == (1, 2) and first["l1"] == second["l1"] == 2
    assert first[REPEAT_OF_KEY] == "t2" and (first[REPEAT_KEY], second[REPEAT_KEY]) == (1, 2)
    assert not repeats.pending("sparse")
