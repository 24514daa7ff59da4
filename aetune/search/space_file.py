"""Search space files: YAML text -> a validated SearchSpace (load_space, parse_space) and back (space_to_yaml).

The structure of a space and its checks live in aetune.search.spaces; this module reads and writes the file: every
key known, every value typed, each error naming the file, the key and the fix.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from aetune import yamlfile
from aetune.config import DATASETS, TrialConfig, is_dataset_path
from aetune.errors import first_line, quote
from aetune.numbers import is_int
from aetune.search.domains import Domain
from aetune.search.spaces import (
    ASHA_KEYS,
    DATA_KEYS,
    MODES,
    NOT_SEARCHABLE,
    REPEATS_FIX,
    SAMPLER_KEYS,
    SEARCH_KEYS,
    SPACE_WIDE,
    SearchSpace,
    SpaceError,
    Variant,
    check_key,
    fail_key,
    repeats_ok,
    sweep_label,
)


def load_space(path: str | os.PathLike, models: bool = True) -> SearchSpace:
    """Read and validate a search space file; `models=False` leaves out the checks that need PyTorch
    (SearchSpace.check_models), so a mistyped file fails in a fraction of a second."""
    path = Path(path)
    try:
        raw = yamlfile.load(path.read_text())
    except OSError as err:
        raise SpaceError(f"cannot read search space {path}: {err.strerror}; pass an existing --space file "
                         "(e.g. search_spaces/quick.yaml)") from None
    except UnicodeDecodeError:
        raise SpaceError(f"cannot read search space {path}: not UTF-8 text; save it as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML ({first_line(err)}); fix the syntax") from None
    return parse_space(raw, source=str(path), models=models)


def parse_space(raw: Any, source: str, models: bool = True) -> SearchSpace:
    check_key(isinstance(raw, dict), source, "(top level)", "a search space is a mapping with a `variants` key")
    top = {f.name for f in dataclasses.fields(SearchSpace)} - {"grace_period", "reduction_factor", "asha_metric",
                                                                 "cpus", "gpus", "sampler"}
    known = top | {"asha", "resources", "sampler"}
    for key in raw:
        check_key(key in known, source, key, f"unknown key; valid keys are {', '.join(sorted(known))}")
    values = {k: v for k, v in raw.items() if k in top and k not in ("variants", "defaults")}
    values.setdefault("name", Path(source).stem)
    check_key(isinstance(values["name"], str) and bool(values["name"]), source, "name",
           f"must be a text (it names the experiment folder), e.g. name: study, not {quote(values['name'])}")
    dataset = values.get("dataset")
    if isinstance(dataset, str) and dataset not in DATASETS and is_dataset_path(dataset):
        values["dataset"] = str(Path(dataset).expanduser().resolve())  # relative to the working directory
    _check_objectives(values, source, "")
    asha = _section(raw, "asha", source, set(ASHA_KEYS))
    values |= {("asha_metric" if k == "metric" else k): v for k, v in asha.items()}
    values |= {k: v for k, v in _section(raw, "resources", source, {"cpus", "gpus"}).items()}
    values["sampler"] = _section(raw, "sampler", source, set(SAMPLER_KEYS))
    for key, value in values["sampler"].items():
        ok = isinstance(value, bool) if key == "multivariate" else is_int(value) and value >= 0
        check_key(ok, source, f"sampler.{key}", f"must be {SAMPLER_KEYS[key]}")
    defaults = raw.get("defaults") or {}
    check_key(isinstance(defaults, dict), source, "defaults", "must be a mapping of trial config keys")
    _check_config_keys(defaults, source, "defaults")
    variants = raw.get("variants")
    check_key(isinstance(variants, dict) and variants, source, "variants",
           "no variants; name at least one, e.g. `dense: {model: dense}`")
    space = SearchSpace(defaults=dict(defaults), variants={name: _parse_variant(name, spec, source)
                                                            for name, spec in variants.items()}, **values)
    space.validate(source)
    if models:
        space.check_models(source)
    return space


def _section(raw: dict, name: str, source: str, keys: set[str], where: str = "") -> dict[str, Any]:
    section = raw.get(name) or {}
    check_key(isinstance(section, dict), source, f"{where}{name}",
           f"must be a mapping with keys {', '.join(sorted(keys))}")
    for key in section:
        check_key(key in keys, source, f"{where}{name}.{key}", f"unknown key; valid keys are {', '.join(sorted(keys))}")
    return dict(section)


def _parse_variant(name: Any, spec: Any, source: str) -> Variant:
    where = f"variants.{name}"
    check_key(isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum(), source, where,
           "variant names are letters, digits, '-' and '_' (they name folders)")
    check_key(isinstance(spec, dict) and spec, source, where, "empty variant; give at least `model: dense|conv|vae`")
    settings = {k: v for k, v in spec.items() if k in SEARCH_KEYS}
    config = {k: v for k, v in spec.items() if k not in SEARCH_KEYS}
    _check_config_keys(config, source, where)
    _check_objectives(settings, source, f"{where}.")
    if "asha" in settings:
        settings["asha"] = _section(settings, "asha", source, set(ASHA_KEYS), f"{where}.")
    fixed, domains = {}, {}
    for key, value in config.items():
        if isinstance(value, dict):
            domains[key] = _parse_domain(value, source, f"{where}.{key}")
        else:
            fixed[key] = value
    _check_sweep(settings.get("sweep"), config, source, f"{where}.sweep")
    for key, how in (("seed", domains), ("sweep.seed", settings.get("sweep") or {})):
        check_key("seed" not in how, source, f"{where}.{key}", NOT_A_KNOB)
    return Variant(name, fixed, domains, settings)


NOT_A_KNOB = ("the seed is not a knob: searching or sweeping it keeps the luckiest draw (an optimistic pick) and "
              "its values can collide with the repeats' seeds; fix one seed and use repeats: K to measure a config "
              "over K seeds")


def _check_objectives(values: dict, source: str, where: str) -> None:
    """Types only; whether each metric exists is checked against the variant's model."""
    for key, ok in (("metric", lambda m: isinstance(m, str)), ("mode", lambda m: m in MODES)):
        if key in values:
            value = values[key]
            items = value if isinstance(value, list) else [value]
            check_key(bool(items) and all(ok(m) for m in items), source, f"{where}{key}",
                   "a metric name or a list of them, e.g. [val_bce, code_l1]" if key == "metric" else
                   "min or max, or a list of them (one per metric)")
    if "samples" in values:
        check_key(is_int(values["samples"]) and values["samples"] > 0, source, f"{where}samples",
               "must be a positive integer")
    if "repeats" in values:
        check_key(repeats_ok(values["repeats"]), source, f"{where}repeats", REPEATS_FIX)




def _check_sweep(sweep: Any, config: dict, source: str, where: str) -> None:
    if sweep is None:
        return
    check_key(isinstance(sweep, dict) and sweep, source, where, "a mapping of config keys to value lists, "
           "e.g. {code_size: [2, 8, 32]}")
    _check_config_keys(sweep, source, where)
    for key, values in sweep.items():
        check_key(isinstance(values, list) and values, source, f"{where}.{key}", "give a non-empty list of values")
        check_key(key not in config, source, f"{where}.{key}", f"{key} is both swept and set in the variant; keep one")
        labels = [sweep_label(v) for v in values]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        check_key(not twice, source, f"{where}.{key}",
               f"values {values} name the same run twice ({', '.join(twice)}); list each value once")


def _check_config_keys(values: dict, source: str, where: str) -> None:
    keys = {f.name for f in dataclasses.fields(TrialConfig)}
    for key in values:
        check_key(key in keys, source, f"{where}.{key}", f"unknown config key; valid keys are {', '.join(sorted(keys))}"
               + (f" (and the search settings {', '.join(SEARCH_KEYS)})" if where.startswith("variants.") else ""))
        check_key(key not in NOT_SEARCHABLE, source, f"{where}.{key}",
               f"`{key}` is set once for the whole space: move it to the top level")
        check_key(where == "defaults" or key not in SPACE_WIDE, source, f"{where}.{key}",
               f"`{key}` sets the split every trial and variant shares (so their validation scores compare): "
               "set it once in `defaults`")


def _parse_domain(spec: dict, source: str, where: str) -> Domain:
    try:
        return Domain.parse(spec)
    except ValueError as err:
        fail_key(source, where, str(err))


def space_to_yaml(space: SearchSpace) -> str:
    """The space as a YAML file that load_space reads back to the same SearchSpace."""
    variants = {v.name: {**v.fixed, **{k: {d.kind: list(d.values)} for k, d in v.domains.items()}, **v.settings}
                for v in space.variants.values()}
    asha = {"grace_period": space.grace_period, "reduction_factor": space.reduction_factor}
    raw = {
        "name": space.name, "dataset": space.dataset, **{key: getattr(space, key) for key in DATA_KEYS},
        "metric": space.metric, "mode": space.mode,
        "epochs": space.epochs, "samples": space.samples, "searcher": space.searcher, "scheduler": space.scheduler,
        "seed": space.seed, "eval_noise": space.eval_noise,
        "asha": asha | ({"metric": space.asha_metric} if space.asha_metric else {}),
        "resources": {"cpus": space.cpus, "gpus": space.gpus}, "defaults": space.defaults, "variants": variants,
    } | ({"sampler": space.sampler} if space.sampler else {}) | ({"repeats": space.repeats} if space.repeats else {})
    return yaml.safe_dump(raw, sort_keys=False)
