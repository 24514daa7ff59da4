"""Pareto fronts of multi-objective searches, and the rule that picks one member for the leaderboard."""
from __future__ import annotations

import math
from typing import Sequence

KNEE_RULE = ("knee of the Pareto front: the member closest to the ideal point after scaling each objective to "
             "[0, 1] over the front")


def _oriented(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """Every objective as one to minimise."""
    return tuple(v if mode == "min" else -v for v, mode in zip(values, modes))


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """a is at least as good as b in every objective and better in one."""
    a, b = _oriented(a, modes), _oriented(b, modes)
    return all(x <= y for x, y in zip(a, b)) and a != b


def front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points with finite values, sorted by the first objective (best first);
    of exact duplicates, the first one seen."""
    finite = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)]
    members = [i for i in finite
               if not any(dominates(points[j], points[i], modes) for j in finite)
               and not any(j < i and tuple(points[j]) == tuple(points[i]) for j in finite)]
    return sorted(members, key=lambda i: _oriented(points[i], modes))


def knee(points: Sequence[Sequence[float]], modes: Sequence[str]) -> int:
    """Index (into points, all assumed on the front) of the member nearest the ideal point once each objective is
    scaled to [0, 1] over the front: the balanced trade-off, independent of the objectives' units."""
    oriented = [_oriented(p, modes) for p in points]
    low = [min(column) for column in zip(*oriented)]
    high = [max(column) for column in zip(*oriented)]

    def distance(p: tuple[float, ...]) -> float:
        return math.hypot(*((v - lo) / (hi - lo) if hi > lo else 0.0 for v, lo, hi in zip(p, low, high)))

    return min(range(len(points)), key=lambda i: distance(oriented[i]))


def pick(points: Sequence[Sequence[float]], modes: Sequence[str], names: Sequence[str]) -> tuple[int | None, str]:
    """The leaderboard's member of a front (points: the front, best first by the first objective) and the rule that
    chose it, in words. One or two members have no knee: scaled to [0, 1], both lie at distance 1 from the ideal."""
    if len(points) >= 3:
        return knee(points, modes), KNEE_RULE
    if points:
        return 0, f"a front of {len(points)} has no knee: its best {names[0]}"
    return None, "no trial completed: no front"
