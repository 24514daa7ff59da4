"""Search space files: YAML -> a validated SearchSpace (its variants, their searched domains and search settings).

Everything is checked before Ray starts; an error names the file, the variant, the key and the fix.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from aetune.config import TrialConfig
from aetune.errors import UsageError, quote
from aetune.metrics import BIASED, METRICS, for_family
from aetune.models import build_model  # imports torch only when called: structural validation never does
from aetune.numbers import is_int, is_number
from aetune.search.domains import Domain
from aetune.search.guard import bias_refusal, code_size_refusal, units_refusal

SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "fifo")
MODES = ("min", "max")
DATA_KEYS = ("channels", "image_size", "layout")  # how the dataset's images are read: top level, beside `dataset`
NOT_SEARCHABLE = ("epochs", "dataset", "eval_noise", *DATA_KEYS)  # set once for the whole space, at the top level
SEARCH_KEYS = ("metric", "mode", "samples", "repeats", "scheduler", "asha", "sweep")  # a variant's own settings
ASHA_KEYS = ("grace_period", "reduction_factor", "metric")
SAMPLER_KEYS = {"n_startup_trials": "a non-negative integer", "multivariate": "true or false"}  # TPESampler's

JOINT_CHECK_LIMIT = 256  # option combinations whose code sizes are checked together (models built: milliseconds each)
ARCHITECTURE_KEYS = ("model", "filters", "decoder", "hidden_layers")  # may change the code's shape with another key
SPACE_WIDE = ("train_size", "val_size", "val_split", "test_size")  # the split: one for every trial, in `defaults`
RESOURCE_STEP = 0.0001  # Ray counts resources in these units: a smaller share is refused by Ray itself


class SpaceError(UsageError):
    """A search space file is invalid."""


@dataclass(frozen=True)
class Variant:
    """A named preset: fixed config keys, searched ones, and its own search settings (over the space's)."""

    name: str
    fixed: dict[str, Any]
    domains: dict[str, Domain]
    settings: dict[str, Any] = field(default_factory=dict)  # SEARCH_KEYS given in the variant
    base: str = ""  # the YAML variant a sweep member came from ("" for the YAML variant itself)
    swept: dict[str, Any] = field(default_factory=dict)  # a sweep member's values of the swept keys

    @property
    def sweep(self) -> dict[str, list]:
        return self.settings.get("sweep") or {}


@dataclass(frozen=True)
class Search:
    """How one variant is searched: its objective(s), trial budget and scheduler."""

    metric: tuple[str, ...]
    mode: tuple[str, ...]
    samples: int
    scheduler: str
    grace_period: int
    reduction_factor: int
    asha_metric: str | None  # the one metric ASHA stops on
    repeats: int = 0  # the pick's config trained again under this many new seeds, once the search has picked

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def asha_mode(self) -> str:
        return self.mode[self.metric.index(self.asha_metric)]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    dataset: str = "mnist"  # a name, or a path: relative ones are made absolute (from the working directory)
    channels: int | None = None
    image_size: int | list[int] | None = None
    layout: str = "auto"
    metric: str | list[str] = "val_loss"
    mode: str | list[str] = "min"
    epochs: int = 10
    samples: int = 8
    repeats: int = 0  # per variant (sweep member): its pick trained again under this many new seeds
    searcher: str = "optuna"
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2
    asha_metric: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    seed: int = 0
    eval_noise: float = 0.5
    sampler: dict[str, Any] = field(default_factory=dict)  # TPESampler settings of the optuna searcher
    defaults: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)

    def first_config(self, variant: Variant) -> dict[str, Any]:
        """A trial config of the variant: the first option of every searched key."""
        return _option_configs(self, variant)[0][1]

    def base_config(self, variant: Variant) -> dict[str, Any]:
        """The fixed part of every trial config of a variant."""
        return {"seed": self.seed, **self.defaults, **variant.fixed, "epochs": self.epochs, "dataset": self.dataset,
                "eval_noise": self.eval_noise, **{key: getattr(self, key) for key in DATA_KEYS}}

    def image_shape(self) -> tuple[int, int, int]:
        """C x H x W of the images every trial reads: a named dataset's known shape with `channels` and
        `image_size` applied; a file or folder is read for it (once per process: aetune.train.data caches it)."""
        config = TrialConfig.from_dict(self.base_config(next(iter(self.variants.values()))))
        from aetune.train.sources.torchvision import NAMED

        if config.dataset in NAMED:
            channels, height, width = NAMED[config.dataset].shape
            return (config.channels or channels, *(config.image_size or (height, width)))
        from aetune.train.data import trial_data

        return trial_data(config).shape

    def search(self, variant: Variant) -> Search:
        """The variant's search settings: its own where it gives them, else the space's."""
        own, asha = variant.settings, variant.settings.get("asha") or {}
        metric = _as_tuple(own.get("metric", self.metric))
        mode = _as_tuple(own.get("mode", self.mode if "metric" not in own or "mode" in own else "min"))
        mode = mode * len(metric) if len(mode) == 1 else mode
        asha_metric = asha.get("metric", self.asha_metric if "metric" not in own else None)
        return Search(metric, mode, own.get("samples", self.samples), own.get("scheduler", self.scheduler),
                      asha.get("grace_period", self.grace_period),
                      asha.get("reduction_factor", self.reduction_factor),
                      asha_metric or (metric[0] if len(metric) == 1 else None), own.get("repeats", self.repeats))

    def runs(self) -> list[Variant]:
        """The variants as they run: a variant with a sweep becomes one variant per value (its own study, ASHA
        brackets and best), named e.g. dense@code_size=8."""
        return [member for variant in self.variants.values() for member in _expand(variant)]

    def trial_count(self, variant: Variant) -> int:
        """Trials a finished run of the variant has: samples, times the grid's size where there is a grid."""
        grid = [len(d.values) for d in variant.domains.values()
                if d.kind == "grid" or (self.searcher == "grid" and d.kind == "choice")]
        samples = self.search(variant).samples
        return samples * math.prod(grid) if self.searcher != "optuna" else samples

    def replace(self, **changes: Any) -> "SearchSpace":
        """A copy with CLI overrides; `train_size`, `val_size`, `test_size` and `seed` land in every trial's
        defaults."""
        config_keys = {k: changes.pop(k) for k in ("train_size", "val_size", "test_size")
                       if changes.get(k) is not None}
        changes = {k: v for k, v in changes.items() if v is not None}
        if "seed" in changes:
            config_keys["seed"] = changes["seed"]
        for budget in ("samples", "repeats"):
            if budget in changes:  # the command line wins over every variant's own budget
                changes["variants"] = {n: dataclasses.replace(v, settings={k: x for k, x in v.settings.items()
                                                                           if k != budget})
                                       for n, v in changes.get("variants", self.variants).items()}
        space = dataclasses.replace(self, defaults={**self.defaults, **config_keys}, **changes)
        space.validate(source="command line")
        return space

    def only(self, names: list[str]) -> "SearchSpace":
        """The space with only the named variants, by the names the experiment and the evaluation use: a space
        variant (every member of its sweep) or a sweep member (dense@code_size=8)."""
        members = {v.name: v for v in self.runs()}
        unknown = [n for n in names if n not in self.variants and n not in members]
        if unknown:
            raise UsageError(f"--variants: {unknown[0]!r} is not in the space; choose from "
                             f"{', '.join(dict.fromkeys([*self.variants, *members]))}")
        kept = {}
        for name, variant in self.variants.items():
            chosen = {n: members[n] for n in names if n in members and members[n].base == name}
            if name in names:
                kept[name] = variant
            if name in names or not chosen:
                continue
            sweep = {key: [v for v in values if any(m.swept[key] == v for m in chosen.values())]
                     for key, values in variant.sweep.items()}
            if math.prod(map(len, sweep.values())) != len(chosen):
                raise UsageError(f"--variants: {', '.join(chosen)} do not make a whole grid of {name}'s sweep; "
                                 f"name them all, or {name} for every member")
            kept[name] = dataclasses.replace(variant, settings={**variant.settings, "sweep": sweep})
        return dataclasses.replace(self, variants=kept)

    def validate(self, source: str) -> None:
        check_key(self.searcher in SEARCHERS, source, "searcher",
               f"unknown {self.searcher!r}; use one of {SEARCHERS}")
        try:  # the dataset and its keys, checked as every trial config is
            TrialConfig.from_dict({key: getattr(self, key) for key in ("dataset", *DATA_KEYS)})
        except UsageError as err:  # its message starts with the key
            raise SpaceError(f"{source}: {err}") from None
        for key in ("epochs", "samples", "grace_period"):
            check_key(is_int(getattr(self, key)) and getattr(self, key) > 0, source, key, "must be a positive integer")
        check_key(repeats_ok(self.repeats), source, "repeats", REPEATS_FIX)
        check_key(is_int(self.reduction_factor) and self.reduction_factor >= 2, source, "reduction_factor",
               "must be an integer >= 2")
        check_key(is_number(self.cpus) and RESOURCE_STEP <= self.cpus < math.inf, source, "resources.cpus",
               f"must be a finite number >= {RESOURCE_STEP} (Ray's smallest share), got {quote(self.cpus)}")
        check_key(is_number(self.gpus) and (self.gpus == 0 or RESOURCE_STEP <= self.gpus < math.inf), source,
               "resources.gpus", f"must be 0 or a finite number >= {RESOURCE_STEP}, got {quote(self.gpus)}")
        check_key(is_number(self.eval_noise) and self.eval_noise >= 0, source, "eval_noise", "must be a number >= 0")
        check_key(not self.sampler or self.searcher == "optuna", source, "sampler",
               f"sets Optuna's TPE sampler; drop it, or use searcher: optuna (not {self.searcher})")
        check_key(bool(self.variants), source, "variants", "no variants; name at least one, e.g. dense: {model: dense}")
        for variant in self.variants.values():
            self._validate_variant(variant, source)

    def _validate_variant(self, variant: Variant, source: str) -> None:
        where = f"variants.{variant.name}"
        search = self._validate_search(variant, source, where)
        if self.searcher == "grid":
            for key, domain in variant.domains.items():
                check_key(domain.kind in ("grid", "choice"), source, f"{where}.{key}",
                       f"searcher grid takes grid/choice domains only, not {domain.kind}")
        for knob, bias in BIASED.items():
            if knob in variant.domains and knob != "code_size":  # code_size: with the models (check_models)
                _refuse(bias_refusal(bias, search), source, f"{where}.{knob}")
        if "loss" in variant.domains and len(set(variant.domains["loss"].values)) > 1:
            _refuse(units_refusal(search, "loss: bce and mse measure the loss in different units (cross-entropy, "
                                  "squared error)"), source, f"{where}.loss")
        for member in _expand(variant):
            for _, values in _option_configs(self, member):
                try:
                    TrialConfig.from_dict(values)
                except UsageError as err:  # its message starts with the config key
                    raise SpaceError(f"{source}: {self._set_in(variant, str(err))}{err}") from None

    def _set_in(self, variant: Variant, message: str) -> str:
        """Where the key an error names is set: in the variant, at the top level, or in `defaults`."""
        key = message.split(":", 1)[0]
        if key in variant.fixed or key in variant.domains or key in variant.sweep:
            return f"variants.{variant.name}."
        return "" if key in {f.name for f in dataclasses.fields(self)} else "defaults."

    def check_models(self, source: str) -> None:
        """The part of validation that needs PyTorch: every option builds a model that fits the images, and each
        metric is one its family reports (the space's own metric, even where every variant sets its own)."""
        from aetune.models import families

        known = (*METRICS, *sorted({m for cls in families().values() for m in cls.extra_metrics}))
        for metric in _as_tuple(self.metric):
            check_key(metric in known, source, "metric", f"unknown {metric!r}; use one of {', '.join(known)}")
        shape = self.image_shape()
        for variant in self.variants.values():
            for member in _expand(variant):
                self._check_models(member, self.search(member), source, f"variants.{variant.name}", shape)

    def _validate_search(self, variant: Variant, source: str, where: str) -> Search:
        search = self.search(variant)
        prefix = where if "metric" in variant.settings else ""
        metric_key = f"{prefix}.metric" if prefix else "metric"
        check_key(len(set(search.metric)) == len(search.metric), source, metric_key, "a metric is listed twice")
        check_key(len(search.mode) == len(search.metric) and all(m in MODES for m in search.mode), source,
               f"{prefix}.mode" if prefix else "mode", f"use min or max, one per metric ({len(search.metric)})")
        check_key(search.scheduler in SCHEDULERS, source, f"{where}.scheduler",
               f"unknown {search.scheduler!r}; use one of {SCHEDULERS}")
        check_key(is_int(search.samples) and search.samples > 0, source, f"{where}.samples",
               "must be a positive integer")
        if search.scheduler == "asha":
            check_key(search.asha_metric in search.metric, source, f"{where}.asha.metric",
                   f"ASHA stops trials on one metric: name one of {list(search.metric)} in asha: {{metric: ...}}, "
                   "or use scheduler: fifo")
        return search

    def _check_models(self, variant: Variant, search: Search, source: str, where: str,
                      shape: tuple[int, int, int]) -> None:
        code_sizes: dict[str, set[int]] = {}  # per searched key: the code sizes its options give
        per_image: dict[str, set[bool]] = {}  # per searched key: whether its options' losses sum over an image
        bounds: set[bool] = set()  # whether the options' own losses are likelihood bounds (a VAE's negative ELBO)
        extras: set[str] | None = None  # the family metrics every option reports (kl: only if every one is a VAE)
        for key, values in _option_configs(self, variant):
            model = _build(values, shape, source, where)
            extras = set(model.extra_metrics) if extras is None else extras & set(model.extra_metrics)
            code_sizes.setdefault(key, set()).add(math.prod(model.code_shape))
            per_image.setdefault(key, set()).add(model.loss_per_image)
            bounds.add(model.likelihood)
        likelihood = bounds == {True}
        if "code_size" in variant.domains:
            _refuse(bias_refusal(for_family(BIASED["code_size"], likelihood), search), source, f"{where}.code_size")
        for key, sizes in code_sizes.items():  # e.g. conv filters: the last filter count sets the code size
            if key and key != "code_size":
                _refuse(code_size_refusal(search, sizes, likelihood), source, f"{where}.{key}")
            if len(per_image[key]) > 1:
                _refuse(units_refusal(search, f"{key}: its options' losses are a per-pixel mean and a sum per image "
                                      "(nats)"), source, f"{where}.{key}")
        moving = {key for key, sizes in code_sizes.items() if key and len(sizes) > 1}
        keys, sizes = _joint_code_sizes(self, variant, shape, source, where, moving)
        _refuse(code_size_refusal(search, sizes, likelihood), source, f"{where}.{' and '.join(keys)} (together)")
        known = (*METRICS, *sorted(extras))
        models = " or ".join(dict.fromkeys(values["model"] for _, values in _option_configs(self, variant)))
        for metric in search.metric:
            check_key(metric in known, source, f"{where}.metric" if "metric" in variant.settings else "metric",
                   f"unknown {metric!r} for a {models} model (every option must report it); use one of "
                   f"{', '.join(known)}")


def _build(values: dict[str, Any], shape: tuple[int, int, int], source: str, where: str):
    try:
        return build_model(TrialConfig.from_dict(values), shape)
    except UsageError as err:  # its message starts with the config key
        raise SpaceError(f"{source}: {where}.{err}") from None


def _joint_code_sizes(space: SearchSpace, variant: Variant, shape: tuple[int, int, int], source: str,
                      where: str, moving: set[str]) -> tuple[list[str], set[int]]:
    """Keys that change the code size only together (model and filters: a dense code of 128 and conv [16, 8, 8]
    agree, conv [16, 16] does not), with the code sizes of every combination of their options; one at a time,
    each looks constant. Only listed keys that can change the architecture are combined: ARCHITECTURE_KEYS and the
    keys `moving` (their options change the code size one at a time); code_size has its own check. More than
    JOINT_CHECK_LIMIT combinations is refused, never skipped. ([], one size) where the keys change nothing
    together."""
    listed = {k: d.values for k, d in variant.domains.items() if d.kind in ("choice", "grid") and k != "code_size"
              and (k in ARCHITECTURE_KEYS or k in moving)}
    count = math.prod(len(v) for v in listed.values())
    if len(listed) < 2:
        return [], set()
    check_key(count <= JOINT_CHECK_LIMIT, source, f"{where}.{' and '.join(listed)}",
           f"their options make {count} architectures, more than the {JOINT_CHECK_LIMIT} whose code sizes are "
           "checked together (a search over code sizes must say so in its metric); list fewer options, or fix "
           "some of these keys")
    base = space.first_config(variant)
    combos = [dict(zip(listed, values)) for values in itertools.product(*listed.values())]
    sizes = [math.prod(_build({**base, **combo}, shape, source, where).code_shape) for combo in combos]
    if len(set(sizes)) < 2:
        return [], set()
    return [k for k in listed if _moves(k, combos, sizes)], set(sizes)


def _moves(key: str, combos: list[dict[str, Any]], sizes: list[int]) -> bool:
    """Whether two combinations that differ in `key` alone give codes of different sizes."""
    by_rest: dict[str, set[int]] = {}
    for combo, size in zip(combos, sizes):
        by_rest.setdefault(repr({k: v for k, v in combo.items() if k != key}), set()).add(size)
    return any(len(group) > 1 for group in by_rest.values())


def _option_configs(space: SearchSpace, variant: Variant) -> list[tuple[str, dict[str, Any]]]:
    """Each option of each domain with the first option of the others, with the key it varies ("" for the first
    config): catches types, ranges and architectures that do not fit the images (e.g. too many conv filters)
    without enumerating the whole space."""
    base = space.base_config(variant)
    first = {key: domain.values[0] for key, domain in variant.domains.items()}
    return [("", {**base, **first})] + [(key, {**base, **first, key: option})
                                        for key, domain in variant.domains.items() for option in domain.values]


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _expand(variant: Variant) -> list[Variant]:
    if not variant.sweep:
        return [variant]
    keys = list(variant.sweep)
    settings = {k: v for k, v in variant.settings.items() if k != "sweep"}
    return [Variant(f"{variant.name}@" + ",".join(f"{k}={sweep_label(v)}" for k, v in zip(keys, values)),
                    {**variant.fixed, **dict(zip(keys, values))}, variant.domains, settings, variant.name,
                    dict(zip(keys, values)))
            for values in itertools.product(*variant.sweep.values())]


def sweep_label(value: Any) -> str:
    """A sweep value as part of a folder name: 8, 0.0001, 16-8-8."""
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


REPEATS_FIX = "must be 0 (no repeats) or an integer >= 2 (a confidence interval needs two runs), e.g. repeats: 3"


def repeats_ok(value: Any) -> bool:
    return is_int(value) and (value == 0 or value >= 2)


def _refuse(refusal: str | None, source: str, key: str) -> None:
    if refusal:
        fail_key(source, key, refusal)


def check_key(ok: bool, source: str, key: str, fix: str) -> None:
    if not ok:
        fail_key(source, key, fix)


def fail_key(source: str, key: str, message: str) -> None:
    raise SpaceError(f"{source}: {key}: {message}")
