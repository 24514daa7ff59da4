"""Search space files: the shipped ones validate, every mistake gives one line naming file, key and fix."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from aetune import search
from aetune.spaces import SpaceError, load_space, parse_space, space_to_yaml
from conftest import REPO, SMALL_SPACE

SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))
VALID = yaml.safe_load(textwrap.dedent(SMALL_SPACE))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_spaces_validate_and_round_trip(path):
    space = load_space(path)
    assert space.variants
    assert parse_space(yaml.safe_load(space_to_yaml(space)), "saved") == space


def test_quick_space_has_the_five_variants():
    space = load_space(REPO / "search_spaces" / "quick.yaml")
    assert set(space.variants) == {"dense", "sparse", "denoising", "conv", "vae"}


def test_seeds_space_is_the_classic_course_grid():
    space = load_space(REPO / "search_spaces" / "seeds.yaml")
    assert (space.searcher, space.scheduler, space.epochs) == ("grid", "fifo", 50)
    configs = {name: space.base_config(v) for name, v in space.variants.items()}
    assert configs["sparse"]["l1"] == 1e-5 and configs["conv"]["filters"] == [16, 8, 8]
    assert configs["vae"]["code_size"] == 2 and configs["vae"]["hidden_layers"] == [512]


def mutate(path: str, value):
    """VALID with the dotted key set to value (None: removed)."""
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return raw


INVALID = [
    ("colour", mutate("colour", "blue"), "colour: unknown key"),
    ("variant key typo", mutate("variants.dense.code_sise", 8), "variants.dense.code_sise: unknown config key"),
    ("wrong type", mutate("variants.dense.code_size", "big"), "variants.dense.code_size"),
    ("low > high", mutate("variants.dense.lr", {"uniform": [0.1, 0.01]}), "variants.dense.lr: low 0.1 must be below"),
    ("log low <= 0", mutate("variants.dense.lr", {"loguniform": [0, 0.1]}), "loguniform needs low > 0"),
    ("unknown model", mutate("variants.dense.model", "gan"), "variants.dense.model"),
    ("unknown dataset", mutate("dataset", "imagenet"), "dataset: unknown 'imagenet'"),
    ("no variants", mutate("variants", {}), "variants: no variants"),
    ("empty variant", mutate("variants.dense", {}), "variants.dense: empty variant"),
    ("unknown domain", mutate("variants.dense.lr", {"normal": [0, 1]}), "variants.dense.lr: a domain is one of"),
    ("too many filters", mutate("variants.conv.filters", [4] * 6), "variants.conv.filters"),
    ("negative l1", mutate("variants.sparse.l1", -1), "variants.sparse.l1"),
    ("epochs in a variant", mutate("variants.dense.epochs", 5), "variants.dense.epochs: `epochs` is set once"),
    ("bad searcher", mutate("searcher", "bayes"), "searcher: unknown 'bayes'"),
    ("bad metric", mutate("metric", "accuracy"), "metric: unknown 'accuracy'"),
    ("grid with uniform", {**mutate("variants.dense.lr", {"uniform": [0.001, 0.01]}), "searcher": "grid"},
     "searcher grid takes grid/choice"),
    ("negative gpus", mutate("resources.gpus", -1), "resources.gpus"),
    ("randint floats", mutate("variants.dense.code_size", {"randint": [2.5, 8]}), "randint bounds must be integers"),
]


@pytest.mark.parametrize("name, raw, message", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_space_is_one_clear_line_and_exit_2(name, raw, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_space(path)
    assert search.main(["--space", str(path), "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aetune: error: {path}: ") and err.count("\n") == 1
    import ray

    assert not ray.is_initialized()  # rejected before Ray started
    assert not (tmp_path / "small").exists()


def test_yaml_syntax_error_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("variants: [unclosed\n")
    assert search.main(["--space", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert search.main(["--space", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_resume_of_a_non_experiment_is_a_clear_error(tmp_path, capsys):
    assert search.main(["--storage", str(tmp_path), "--name", "never-ran", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is not an aetune experiment" in err and err.count("\n") == 1


def test_command_line_overrides_are_validated(tmp_path, capsys):
    assert search.main(["--space", str(REPO / "search_spaces" / "quick.yaml"), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert search.main(["--variants", "gan"]) == 2
    assert "--variants: 'gan'" in capsys.readouterr().err


def test_overrides_reach_every_trial_config():
    space = load_space(REPO / "search_spaces" / "quick.yaml").replace(train_size=500, seed=7, epochs=2)
    config = space.base_config(space.variants["dense"])
    assert (config["train_size"], config["seed"], config["epochs"]) == (500, 7, 2)


def test_optuna_sampler_returns_list_values_and_valid_configs():
    import optuna

    from aetune.config import TrialConfig
    from aetune.spaces import OptunaSampler

    space = load_space(REPO / "search_spaces" / "quick.yaml")
    for name, variant in space.variants.items():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        sampler = OptunaSampler(space, variant)
        for _ in range(5):
            config = TrialConfig.from_dict(sampler(study.ask()))
            assert config.epochs == space.epochs and config.dataset == "mnist"
            if name == "dense":
                assert config.hidden_layers in ((128,), (128, 64))
