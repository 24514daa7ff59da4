#!/usr/bin/env python
"""`python bench/instrumented.py STAMPS [aetune.search arguments]`: the search, unchanged, with timestamps.

Appends JSON lines {"event", "t", ...} to STAMPS: the driver's first line, the start and end of the imports of
torch and ray (whenever the driver first imports them: nothing is imported early), ray.init, every Tuner.fit and
ray.shutdown (start and done), every run of the trainable in a Ray worker (trial_start/trial_end with the trial id,
pid and node), and main()'s return. The bench scripts turn them into phases, spans and busy fractions.
"""
from __future__ import annotations

import time

LAUNCHED = time.time()  # before any import of note

import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def stamp(path: str, event: str, **extra: object) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **extra}) + "\n")


def stamping(path: str):
    """The real trainable, stamped; imported in the worker, so the driver imports no more than it would."""
    def trial(config, **kwargs):
        import ray
        from ray import tune

        ids = {"trial": tune.get_context().get_trial_id(), "node": ray.get_runtime_context().get_node_id()}
        stamp(path, "trial_start", **ids)
        try:
            from aetune.search.trainable import train_trial

            train_trial(config, **kwargs)
        finally:
            stamp(path, "trial_end", **ids)

    return trial


def timed(path: str, owner: object, name: str, event: str) -> None:
    """Wrap owner.name so that each call stamps event_start and event_done."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        stamp(path, f"{event}_start")
        try:
            return real(*args, **kwargs)
        finally:
            stamp(path, f"{event}_done")

    setattr(owner, name, wrapper)


class ImportStamps(importlib.abc.MetaPathFinder):
    """Stamps the start and end of the first import of each module in `hooks`, then runs its hook on it."""

    def __init__(self, path: str, hooks: dict):
        self.path, self.hooks = path, hooks

    def find_spec(self, name, import_path=None, target=None):
        if name not in self.hooks:
            return None
        hook = self.hooks.pop(name)
        stamp(self.path, f"import_{name}_start")
        spec = importlib.util.find_spec(name)  # the real one (this finder no longer knows `name`)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            hook(module)
            stamp(self.path, f"import_{name}_done")

        spec.loader.exec_module = exec_module
        return spec


def main(path: str, argv: list[str]) -> int:
    stamp(path, "driver_start", t_launch=LAUNCHED)

    def on_ray(ray) -> None:
        timed(path, ray, "init", "ray_init")
        timed(path, ray, "shutdown", "ray_shutdown")

    def on_tuner(module) -> None:
        timed(path, module.Tuner, "fit", "tuner_fit")

    sys.meta_path.insert(0, ImportStamps(path, {"torch": lambda m: None, "ray": on_ray,
                                                "ray.tune.tuner": on_tuner}))
    import aetune.search.__main__ as search

    stamp(path, "aetune_search_imported")
    try:
        return search.main(argv, trainable=stamping(str(Path(path).resolve())))
    finally:
        stamp(path, "main_done")


if __name__ == "__main__":
    from aetune.errors import exit_now  # as python -m aetune.search ends

    exit_now(main(sys.argv[1], sys.argv[2:]))
