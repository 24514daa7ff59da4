"""What counts as an integer, a number and a finite number: one definition for every config, space and summary
check (YAML's booleans are ints to Python, and are never a number here)."""
from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)
