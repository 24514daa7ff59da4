"""Searched keys: a domain parsed from the space file, and its values drawn for random/grid search or suggested to
Optuna's define-by-run sampler."""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetune.numbers import is_int, is_number

if TYPE_CHECKING:
    from aetune.search.spaces import SearchSpace, Variant

DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Domain:
    """One searched key: `choice`/`grid` over values, `uniform`/`loguniform` over [low, high], `randint` over
    the integers low..high inclusive."""

    kind: str
    values: tuple  # the options, or (low, high)

    @classmethod
    def parse(cls, spec: dict) -> "Domain":
        """The domain of a `{kind: [...]}` mapping; ValueError saying what is wrong and the fix."""
        if len(spec) != 1 or next(iter(spec)) not in DOMAIN_KINDS:
            raise ValueError(f"a domain is one of {{{': [...]}, {'.join(DOMAIN_KINDS)}: [...]}}, got {spec}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ValueError(f"{kind} needs a non-empty list")
        if kind in ("uniform", "loguniform", "randint"):
            if len(values) != 2 or not all(is_number(v) for v in values):
                raise ValueError(f"{kind} takes [low, high], got {values}")
            low, high = values
            if not low < high:
                raise ValueError(f"low {low} must be below high {high}")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform needs low > 0, got {low}; use uniform to include 0")
            if kind == "randint" and not (is_int(low) and is_int(high)):
                raise ValueError(f"randint bounds must be integers, got {values}")
        return cls(kind, tuple(values))

    def draw(self, rng: random.Random) -> Any:
        low, high = self.values[0], self.values[-1]
        if self.kind == "choice":
            return rng.choice(self.values)
        if self.kind == "randint":
            return rng.randint(low, high)  # inclusive, as the space says
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.uniform(low, high)


def enumerated_configs(space: SearchSpace, variant: Variant) -> list[dict[str, Any]]:
    """Every trial config of a random or grid search, in order: each combination of the enumerated domains (`grid`
    ones; `choice` ones too under the grid searcher) `samples` times, the other domains drawn at random (seeded)."""
    rng = random.Random(f"{space.seed}:{variant.name}")
    enumerated = {k: d.values for k, d in variant.domains.items()
                  if d.kind == "grid" or (space.searcher == "grid" and d.kind == "choice")}
    configs = []
    for _ in range(space.search(variant).samples):
        for values in itertools.product(*enumerated.values()):
            drawn = {k: d.draw(rng) for k, d in variant.domains.items() if k not in enumerated}
            configs.append({**space.base_config(variant), **dict(zip(enumerated, values)), **drawn})
    return configs


class OptunaSampler:
    """Define-by-run space for OptunaSearch: suggests each domain, returns the complete trial config.
    List values (hidden_layers, filters) are suggested by their JSON text (what the Optuna study stores and
    optuna-dashboard shows) and returned as lists; the others as themselves."""

    def __init__(self, space: SearchSpace, variant: Variant):
        self.base = space.base_config(variant)
        self.domains = variant.domains

    def __call__(self, trial) -> dict[str, Any]:
        config = dict(self.base)
        for key, domain in self.domains.items():
            low, high = domain.values[0], domain.values[-1]
            if domain.kind in ("choice", "grid"):
                by_choice = {json.dumps(v) if isinstance(v, list) else v: v for v in domain.values}
                config[key] = by_choice[trial.suggest_categorical(key, list(by_choice))]
            elif domain.kind == "randint":
                config[key] = trial.suggest_int(key, low, high)
            else:
                config[key] = trial.suggest_float(key, low, high, log=domain.kind == "loguniform")
        return config
