"""The searcher snapshot: the router's own state as JSON (budgets, counts, which variant each trial belongs to, what
grid/random search handed out, the repeats'), read back typed. Data, never code: nothing in it is called, and the
Optuna studies it leans on live in Optuna's storage (README "Security")."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aetune.errors import quote
from aetune.numbers import is_int
from aetune.search.repeats import Told

SNAPSHOT_FORMAT = "aetune-searcher-1"


def read_snapshot(path: Path) -> dict[str, Any]:
    """A searcher snapshot, read as JSON and typed: ValueError (TypeError, KeyError) when it is damaged or is not
    one aetune wrote. Nothing in it is ever called."""
    state = json.loads(path.read_bytes())
    if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"no {SNAPSHOT_FORMAT!r} format")
    repeats = state["repeats"]
    return {"budgets": _ints(state["budgets"]), "done": _ints(state["done"]),
            "variant_of": _texts(state["variant_of"]),
            "handed": {_text(name): _ints(handed) for name, handed in _object(state["handed"]).items()},
            "repeats": {"counts": _ints(repeats["counts"]),
                        "told": {_text(name): {_text(t): Told(**_object(told)) for t, told in _object(trials).items()}
                                 for name, trials in _object(repeats["told"]).items()},
                        "handed": {_text(t): (_text(v), _int(i)) for t, (v, i) in _object(repeats["handed"]).items()},
                        "finished": {_text(t) for t in repeats["finished"]}}}


def _object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{quote(value)} is not a JSON object")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{quote(value)} is not a text")
    return value


def _int(value: Any) -> int:
    if not is_int(value):
        raise TypeError(f"{quote(value)} is not a whole number")
    return value


def _ints(value: Any) -> dict[str, int]:
    return {_text(k): _int(v) for k, v in _object(value).items()}


def _texts(value: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in _object(value).items()}
