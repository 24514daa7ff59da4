"""Search space files: YAML -> a validated SearchSpace -> Ray Tune domains or an Optuna define-by-run sampler.

Everything is checked before Ray starts; an error names the file, the variant, the key and the fix.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aetune.config import TrialConfig
from aetune.data import DATASETS
from aetune.errors import UsageError, first_line
from aetune.models import build_model

SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "fifo")
DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
METRICS = ("val_loss", "val_bce", "val_mse", "train_loss", "code_l1")
NOT_SEARCHABLE = ("epochs", "dataset")  # set once for the whole space: `epochs` and `dataset` at the top


class SpaceError(UsageError):
    """A search space file is invalid."""


@dataclass(frozen=True)
class Domain:
    """One searched key: `choice`/`grid` over values, `uniform`/`loguniform` over [low, high], `randint` over
    the integers low..high inclusive."""

    kind: str
    values: tuple  # the options, or (low, high)


@dataclass(frozen=True)
class Variant:
    name: str
    fixed: dict[str, Any]
    domains: dict[str, Domain]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    dataset: str = "mnist"
    metric: str = "val_loss"
    mode: str = "min"
    epochs: int = 10
    samples: int = 8
    searcher: str = "optuna"
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    seed: int = 0
    defaults: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)

    def base_config(self, variant: Variant) -> dict[str, Any]:
        """The fixed part of every trial config of a variant."""
        return {"seed": self.seed, **self.defaults, **variant.fixed, "epochs": self.epochs, "dataset": self.dataset}

    def trial_count(self, variant: Variant) -> int:
        """Trials a finished run of the variant has: samples, times the grid's size where there is a grid."""
        grid = [len(d.values) for d in variant.domains.values()
                if d.kind == "grid" or (self.searcher == "grid" and d.kind == "choice")]
        return self.samples * math.prod(grid) if self.searcher != "optuna" else self.samples

    def replace(self, **changes: Any) -> "SearchSpace":
        """A copy with CLI overrides; `train_size`, `test_size` and `seed` land in every trial's defaults."""
        config_keys = {k: changes.pop(k) for k in ("train_size", "test_size") if changes.get(k) is not None}
        changes = {k: v for k, v in changes.items() if v is not None}
        if "seed" in changes:
            config_keys["seed"] = changes["seed"]
        space = dataclasses.replace(self, defaults={**self.defaults, **config_keys}, **changes)
        space.validate(source="command line")
        return space

    def validate(self, source: str) -> None:
        _check(self.searcher in SEARCHERS, source, "searcher",
               f"unknown {self.searcher!r}; use one of {SEARCHERS}")
        _check(self.scheduler in SCHEDULERS, source, "scheduler",
               f"unknown {self.scheduler!r}; use one of {SCHEDULERS}")
        _check(self.mode in ("min", "max"), source, "mode", "use min or max")
        _check(self.metric in METRICS, source, "metric",
               f"unknown {self.metric!r}; use one of {', '.join(METRICS)}")
        _check(self.dataset in DATASETS, source, "dataset",
               f"unknown {self.dataset!r}; use one of {', '.join(DATASETS)}")
        for key in ("epochs", "samples", "grace_period"):
            _check(_is_int(getattr(self, key)) and getattr(self, key) > 0, source, key, "must be a positive integer")
        _check(_is_int(self.reduction_factor) and self.reduction_factor >= 2, source, "reduction_factor",
               "must be an integer >= 2")
        _check(_is_number(self.cpus) and self.cpus > 0, source, "resources.cpus", "must be a number > 0")
        _check(_is_number(self.gpus) and self.gpus >= 0, source, "resources.gpus", "must be a number >= 0")
        _check(bool(self.variants), source, "variants", "no variants; name at least one, e.g. dense: {model: dense}")
        for variant in self.variants.values():
            self._validate_variant(variant, source)

    def _validate_variant(self, variant: Variant, source: str) -> None:
        where = f"variants.{variant.name}"
        base = self.base_config(variant)
        if self.searcher == "grid":
            for key, domain in variant.domains.items():
                _check(domain.kind in ("grid", "choice"), source, f"{where}.{key}",
                       f"searcher grid takes grid/choice domains only, not {domain.kind}")
        # Try each option of each domain with the first option of the others: catches types, ranges and
        # architectures that do not fit the images (e.g. too many conv filters).
        first = {key: domain.values[0] for key, domain in variant.domains.items()}
        trials = [first] + [{**first, key: option} for key, domain in variant.domains.items()
                            for option in domain.values]
        for values in trials:
            try:
                build_model(TrialConfig.from_dict({**base, **values}), (1, 28, 28))
            except UsageError as err:  # its message starts with the config key
                raise SpaceError(f"{source}: {where}.{err}") from None


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and completely validate a search space file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SpaceError(f"cannot read search space {path}: {err.strerror}; pass an existing --space file "
                         "(e.g. search_spaces/quick.yaml)") from None
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML ({first_line(err)}); fix the syntax") from None
    return parse_space(raw, source=str(path))


def parse_space(raw: Any, source: str) -> SearchSpace:
    _check(isinstance(raw, dict), source, "(top level)", "a search space is a mapping with a `variants` key")
    top = {f.name for f in dataclasses.fields(SearchSpace)} - {"grace_period", "reduction_factor", "cpus", "gpus"}
    known = top | {"asha", "resources"}
    for key in raw:
        _check(key in known, source, key, f"unknown key; valid keys are {', '.join(sorted(known))}")
    values = {k: v for k, v in raw.items() if k in top and k not in ("variants", "defaults")}
    values.setdefault("name", Path(source).stem)
    values |= _section(raw, "asha", source, {"grace_period", "reduction_factor"})
    values |= {k: v for k, v in _section(raw, "resources", source, {"cpus", "gpus"}).items()}
    defaults = raw.get("defaults") or {}
    _check(isinstance(defaults, dict), source, "defaults", "must be a mapping of trial config keys")
    _check_config_keys(defaults, source, "defaults")
    variants = raw.get("variants")
    _check(isinstance(variants, dict) and variants, source, "variants",
           "no variants; name at least one, e.g. `dense: {model: dense}`")
    space = SearchSpace(defaults=dict(defaults), variants={name: _parse_variant(name, spec, source)
                                                            for name, spec in variants.items()}, **values)
    space.validate(source)
    return space


def _section(raw: dict, name: str, source: str, keys: set[str]) -> dict[str, Any]:
    section = raw.get(name) or {}
    _check(isinstance(section, dict), source, name, f"must be a mapping with keys {', '.join(sorted(keys))}")
    for key in section:
        _check(key in keys, source, f"{name}.{key}", f"unknown key; valid keys are {', '.join(sorted(keys))}")
    return dict(section)


def _parse_variant(name: Any, spec: Any, source: str) -> Variant:
    where = f"variants.{name}"
    _check(isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum(), source, where,
           "variant names are letters, digits, '-' and '_' (they name folders)")
    _check(isinstance(spec, dict) and spec, source, where, "empty variant; give at least `model: dense|conv|vae`")
    _check_config_keys(spec, source, where)
    fixed, domains = {}, {}
    for key, value in spec.items():
        if isinstance(value, dict):
            domains[key] = _parse_domain(value, source, f"{where}.{key}")
        else:
            fixed[key] = value
    return Variant(name, fixed, domains)


def _check_config_keys(values: dict, source: str, where: str) -> None:
    keys = {f.name for f in dataclasses.fields(TrialConfig)}
    for key in values:
        _check(key in keys, source, f"{where}.{key}", f"unknown config key; valid keys are {', '.join(sorted(keys))}")
        _check(key not in NOT_SEARCHABLE, source, f"{where}.{key}",
               f"`{key}` is set once for the whole space: move it to the top level")


def _parse_domain(spec: dict, source: str, where: str) -> Domain:
    _check(len(spec) == 1 and next(iter(spec)) in DOMAIN_KINDS, source, where,
           f"a domain is one of {{{': [...]}, {'.join(DOMAIN_KINDS)}: [...]}}, got {spec}")
    kind, values = next(iter(spec.items()))
    _check(isinstance(values, list) and values, source, where, f"{kind} needs a non-empty list")
    if kind in ("uniform", "loguniform", "randint"):
        _check(len(values) == 2 and all(_is_number(v) for v in values), source, where,
               f"{kind} takes [low, high], got {values}")
        low, high = values
        _check(low < high, source, where, f"low {low} must be below high {high}")
        if kind == "loguniform":
            _check(low > 0, source, where, f"loguniform needs low > 0, got {low}; use uniform to include 0")
        if kind == "randint":
            _check(_is_int(low) and _is_int(high), source, where, f"randint bounds must be integers, got {values}")
    return Domain(kind, tuple(values))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, source: str, key: str, fix: str) -> None:
    if not ok:
        _fail(source, key, fix)


def _fail(source: str, key: str, message: str) -> None:
    raise SpaceError(f"{source}: {key}: {message}")


# --- conversion to searchers ---------------------------------------------------------------------------------------

def ray_domain(domain: Domain):
    """A Ray Tune sampling domain (random and grid searchers)."""
    from ray import tune

    kind, values = domain.kind, list(domain.values)
    if kind == "grid":
        return tune.grid_search(values)
    if kind == "choice":
        return tune.choice(values)
    if kind == "randint":
        return tune.randint(values[0], values[1] + 1)  # Ray's upper bound is exclusive; ours is inclusive
    return getattr(tune, kind)(*values)


def ray_param_space(space: SearchSpace, variant: Variant) -> dict[str, Any]:
    """Random: sample each domain (grid ones are enumerated); grid: enumerate every choice as well."""
    def as_ray(domain: Domain):
        return ray_domain(Domain("grid", domain.values) if space.searcher == "grid" else domain)

    return {**space.base_config(variant), **{k: as_ray(d) for k, d in variant.domains.items()}}


class OptunaSampler:
    """Define-by-run space for OptunaSearch: suggests each domain, returns the complete trial config.
    List values (hidden_layers, filters) are suggested by their text and returned as lists."""

    def __init__(self, space: SearchSpace, variant: Variant):
        self.base = space.base_config(variant)
        self.domains = variant.domains

    def __call__(self, trial) -> dict[str, Any]:
        config = dict(self.base)
        for key, domain in self.domains.items():
            low, high = domain.values[0], domain.values[-1]
            if domain.kind in ("choice", "grid"):
                by_text = {yaml.safe_dump(v, default_flow_style=True).strip(): v for v in domain.values}
                config[key] = by_text[trial.suggest_categorical(key, list(by_text))]
            elif domain.kind == "randint":
                config[key] = trial.suggest_int(key, low, high)
            else:
                config[key] = trial.suggest_float(key, low, high, log=domain.kind == "loguniform")
        return config


def space_to_yaml(space: SearchSpace) -> str:
    """The space as a YAML file that load_space reads back to the same SearchSpace."""
    variants = {v.name: {**v.fixed, **{k: {d.kind: list(d.values)} for k, d in v.domains.items()}}
                for v in space.variants.values()}
    raw = {
        "name": space.name, "dataset": space.dataset, "metric": space.metric, "mode": space.mode,
        "epochs": space.epochs, "samples": space.samples, "searcher": space.searcher, "scheduler": space.scheduler,
        "seed": space.seed, "asha": {"grace_period": space.grace_period, "reduction_factor": space.reduction_factor},
        "resources": {"cpus": space.cpus, "gpus": space.gpus}, "defaults": space.defaults, "variants": variants,
    }
    return yaml.safe_dump(raw, sort_keys=False)
