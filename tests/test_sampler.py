"""The space's optional `sampler` section: Optuna TPE settings (start-up trials, multivariate), checked like the rest
of the space, saved with it (so --resume samples alike) and handed to the searcher."""
from __future__ import annotations

import textwrap

import pytest
import yaml
from conftest import SMALL_SPACE

from aetune.search.spaces import SpaceError
from aetune.search.space_file import parse_space, space_to_yaml


def small(**top) -> dict:
    return {**yaml.safe_load(textwrap.dedent(SMALL_SPACE)), **top}


def test_sampler_settings_are_parsed_saved_and_reach_the_tpe_sampler():
    from aetune.search.searchers import make_searcher

    space = parse_space(small(sampler={"n_startup_trials": 4, "multivariate": False}), "test")
    assert space.sampler == {"n_startup_trials": 4, "multivariate": False}
    assert parse_space(yaml.safe_load(space_to_yaml(space)), "saved") == space
    tuned = make_searcher(space, space.variants["conv"], None)._ot_study
    default = make_searcher(parse_space(small(), "test"), space.variants["conv"], None)._ot_study
    assert (tuned.sampler._n_startup_trials, tuned.sampler._is_multivariate(tuned)) == (4, False)
    # Optuna's defaults, as before the section existed: 10 random start-up trials, then multivariate TPE
    assert (default.sampler._n_startup_trials, default.sampler._is_multivariate(default)) == (10, True)


@pytest.mark.parametrize("sampler, searcher, message", [
    ({"n_startup_trials": -1}, "optuna", "sampler.n_startup_trials: must be a non-negative integer"),
    ({"n_startup_trials": 2.5}, "optuna", "sampler.n_startup_trials: must be a non-negative integer"),
    ({"multivariate": "yes"}, "optuna", "sampler.multivariate: must be true or false"),
    ({"n_ei_candidates": 8}, "optuna", "sampler.n_ei_candidates: unknown key"),
    ({"multivariate": True}, "random", "sampler: sets Optuna's TPE sampler"),
])
def test_bad_sampler_settings_name_the_key_and_the_fix(sampler, searcher, message):
    raw = small(sampler=sampler, searcher=searcher)
    if searcher != "optuna":  # a searcher other than optuna takes no multi-objective metric
        for variant in raw["variants"].values():
            variant.pop("metric", None), variant.pop("mode", None)
    with pytest.raises(SpaceError, match="^test: " + message):
        parse_space(raw, "test")
