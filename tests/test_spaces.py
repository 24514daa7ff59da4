"""Search space files: the shipped ones validate, every mistake gives one line naming file, key and fix."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import REPO, SMALL_SPACE

import aetune.search.__main__ as search
from aetune.search.spaces import SpaceError
from aetune.search.space_file import load_space, parse_space, space_to_yaml

SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))
VALID = yaml.safe_load(textwrap.dedent(SMALL_SPACE))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_spaces_validate_and_round_trip(path, tmp_path, monkeypatch):
    """Every shipped space, run from a folder where its dataset is: a file of the user's own (digits.yaml) is
    written by the one-line command its header gives, run as printed."""
    monkeypatch.chdir(tmp_path)
    written = [line.strip(" #") for line in path.read_text().splitlines() if line.startswith("#   mkdir -p data")]
    for command in written:
        run = subprocess.run(["bash", "-c", command.replace("python ", f"{sys.executable} ", 1)], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert bool(written) == (path.name == "digits.yaml")  # its header's command, still found and run
    space = load_space(path)
    assert space.variants
    assert parse_space(yaml.safe_load(space_to_yaml(space)), "saved") == space


def test_quick_space_has_every_variant_scored_on_its_question():
    space = load_space(REPO / "search_spaces" / "quick.yaml")
    assert set(space.variants) == {"dense", "sparse", "denoising", "conv", "vae", "conv_vae"}
    runs = {v.name: space.search(v) for v in space.runs()}
    assert set(runs) == {"dense@code_size=8", "dense@code_size=32", "sparse", "denoising", "conv",
                         "vae@code_size=2", "vae@code_size=8", "conv_vae"}
    assert runs["sparse"].metric == ("val_bce", "code_l1") and runs["sparse"].scheduler == "fifo"
    assert runs["denoising"].metric == ("val_denoise_bce",) and runs["conv"].metric == ("val_bce", "code_size")
    assert runs["vae@code_size=2"].metric == ("val_loss",)


def test_a_sweep_runs_the_variant_once_per_value():
    space = load_space(REPO / "search_spaces" / "mnist.yaml")
    dense = [v for v in space.runs() if v.base == "dense"]
    assert [v.name for v in dense] == [f"dense@code_size={n}" for n in (2, 4, 8, 16, 32, 64, 128)]
    assert [space.base_config(v)["code_size"] for v in dense] == [2, 4, 8, 16, 32, 64, 128]
    assert all(v.domains == space.variants["dense"].domains and not v.sweep for v in dense)
    assert space.trial_count(dense[0]) == 8


def test_search_settings_of_a_variant_override_the_space():
    raw = mutate("variants.conv.asha", {"metric": "val_bce", "grace_period": 2}, "variants.conv.scheduler", "asha",
                 "asha", {"reduction_factor": 3}, "metric", ["val_bce", "val_mse"], "mode", "max",
                 "variants.dense.metric", "val_mse")
    raw["variants"]["conv"]["metric"] = "val_bce"
    space = parse_space(raw, "test")
    conv, dense, vae = (space.search(space.variants[n]) for n in ("conv", "dense", "vae"))
    assert (conv.scheduler, conv.grace_period, conv.reduction_factor, conv.asha_metric) == ("asha", 2, 3, "val_bce")
    assert conv.mode == ("min",)  # a variant's own metric does not inherit the space's mode
    assert dense.metric == ("val_mse",) and vae.metric == ("val_loss",)
    assert parse_space(yaml.safe_load(space_to_yaml(space)), "saved") == space


def test_seeds_space_is_the_classic_course_grid():
    space = load_space(REPO / "search_spaces" / "seeds.yaml")
    assert (space.searcher, space.scheduler, space.epochs) == ("grid", "fifo", 50)
    configs = {name: space.base_config(v) for name, v in space.variants.items()}
    assert configs["sparse"]["l1"] == 1e-5 and configs["conv"]["filters"] == [16, 8, 8]
    assert configs["vae"]["code_size"] == 2 and configs["vae"]["hidden_layers"] == [512]


def mutate(path: str, value, *more):
    """VALID with the dotted key set to value (None: removed); more (path, value) pairs after it."""
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    for path, value in [(path, value), *zip(more[::2], more[1::2])]:
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
    ("wrong type", mutate("variants.sparse.code_size", "big"), "variants.sparse.code_size"),
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
    ("randint floats", mutate("variants.sparse.code_size", {"randint": [2.5, 8]}), "randint bounds must be integers"),
    # objectives the searched knob cannot game (issue #9)
    ("l1 on its own penalty", mutate("variants.sparse.metric", "val_loss", "variants.sparse.mode", None),
     "variants.sparse.l1: searched alone on val_loss: the L1 penalty only costs reconstruction"),
    ("l1 on reconstruction", mutate("variants.sparse.metric", "val_bce", "variants.sparse.mode", None),
     "variants.sparse.l1: searched alone on val_bce.*metric: [val_bce, code_l1], or sweep"),
    ("noise on own noise", mutate("variants.denoising.noise_factor", {"uniform": [0.1, 0.6]},
                                  "variants.denoising.metric", "val_loss"),
     "variants.denoising.noise_factor: searched alone on val_loss.*use metric: val_denoise_bce"),
    ("noise on clean inputs", mutate("variants.denoising.noise_factor", {"uniform": [0.1, 0.6]},
                                     "variants.denoising.metric", None),
     "variants.denoising.noise_factor: searched alone on val_bce"),
    ("filters change the code size", mutate("variants.conv.filters", {"choice": [[8, 8], [8]]}),
     "variants.conv.filters: searched alone on val_bce (its options give codes of 392 to 1568 numbers)"),
    ("front under asha on a biased metric", mutate("variants.sparse.scheduler", "asha",
                                                   "variants.sparse.asha", {"metric": "val_bce"}),
     "variants.sparse.l1: ASHA stops trials on val_bce, which rewards one end"),
    ("front whose objectives agree", mutate("variants.sparse.metric", ["val_bce", "val_mse"]),
     "variants.sparse.l1: searched on val_bce, val_mse: the L1 penalty"),
    ("duplicate sweep values", mutate("variants.dense.sweep", {"code_size": [8, 8]}), "name the same run twice"),
    ("val_size in a variant", mutate("variants.dense.val_size", 100), "variants.dense.val_size: `val_size` sets"),
    ("val_size searched", mutate("variants.dense.val_size", {"choice": [0, 100]}), "`val_size` sets the split"),
    ("train_size swept", mutate("variants.dense.sweep", {"train_size": [100, 200]}),
     "variants.dense.sweep.train_size: `train_size` sets the split"),
    ("beta on its own objective", mutate("variants.vae.beta", {"loguniform": [0.25, 4.0]}),
     "variants.vae.beta: searched alone on val_loss: a smaller KL weight always reconstructs better"),
    ("code size on reconstruction", mutate("variants.vae.code_size", {"choice": [2, 8]}, "variants.vae.metric",
                                           "val_bce"),  # on val_loss, its negative ELBO, it is allowed
     "variants.vae.code_size: searched alone on val_bce: a larger code always reconstructs better"),
    ("front under asha", mutate("variants.sparse.scheduler", "asha"),
     "variants.sparse.asha.metric: ASHA stops trials on one metric: name one of ['val_bce', 'code_l1']"),
    ("asha metric not an objective", mutate("variants.conv.scheduler", "asha", "variants.conv.asha", {"metric": "kl"}),
     "variants.conv.asha.metric: ASHA stops trials on one metric"),
    ("modes do not match metrics", mutate("variants.sparse.mode", ["min", "min", "max"]),
     "variants.sparse.mode: use min or max, one per metric (2)"),
    ("bad mode", mutate("mode", "best"), "mode: min or max"),
    ("unknown metric in a front", mutate("variants.sparse.metric", ["val_bce", "sparsity"]),
     "variants.sparse.metric: unknown 'sparsity' for a dense model"),
    ("kl of a dense model", mutate("variants.conv.metric", "kl"), "variants.conv.metric: unknown 'kl' for a conv model"),
    ("metric not a name", mutate("variants.conv.metric", 3), "variants.conv.metric: a metric name or a list"),
    ("metric listed twice", mutate("variants.sparse.metric", ["val_bce", "val_bce"]), "a metric is listed twice"),
    ("sweep not a mapping", mutate("variants.dense.sweep", [8, 16]), "variants.dense.sweep: a mapping of config keys"),
    ("sweep key typo", mutate("variants.dense.sweep", {"code_sise": [8]}), "variants.dense.sweep.code_sise: unknown"),
    ("sweep empty list", mutate("variants.dense.sweep", {"code_size": []}), "variants.dense.sweep.code_size: give a"),
    ("sweep bad value", mutate("variants.dense.sweep", {"code_size": [8, 0]}), "variants.dense.code_size: must be > 0"),
    ("swept and searched", mutate("variants.dense.sweep", {"lr": [0.1]}), "variants.dense.sweep.lr: lr is both swept"),
    ("variant samples", mutate("variants.conv.samples", 0), "variants.conv.samples: must be a positive integer"),
    ("negative eval_noise", mutate("eval_noise", -0.5), "eval_noise: must be a number >= 0"),
    ("eval_noise in a variant", mutate("variants.dense.eval_noise", 0.3), "`eval_noise` is set once"),
    ("negative val_size", mutate("defaults.val_size", -1), "val_size: must be >= 0"),
    ("bad val_split", mutate("defaults.val_split", "first"), "val_split: unknown value 'first'"),
]


@pytest.mark.parametrize("name, raw, message", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_space_is_one_clear_line_and_exit_2(name, raw, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpaceError, match=re.sub(r"([()\[\]{}])", r"\\\1", message)):
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
    from aetune.search.domains import OptunaSampler

    space = load_space(REPO / "search_spaces" / "quick.yaml")
    for variant in space.runs():
        name = variant.base or variant.name
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        sampler = OptunaSampler(space, variant)
        for _ in range(5):
            config = TrialConfig.from_dict(sampler(study.ask()))
            assert config.epochs == space.epochs and config.dataset == "mnist"
            if name == "dense":
                assert config.hidden_layers in ((128,), (128, 64))


def test_help_and_a_mistyped_space_import_neither_torch_nor_ray(tmp_path):
    """Start-up is paid only once the input is good: --help and structural errors answer without PyTorch or Ray."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("variants.dense.code_sise", 8)))
    probe = ("import sys\nimport aetune.search.__main__ as search\n"
             f"assert search.main(['--space', {str(bad)!r}]) == 2\n"
             "try:\n    search.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert "variants.dense.code_sise: unknown config key" in run.stderr


def test_repeats_are_set_at_the_top_per_variant_and_on_the_command_line():
    raw = {**VALID, "repeats": 3}
    space = parse_space(raw, "space.yaml")
    counts = {v.name: space.search(v).repeats for v in space.runs()}
    assert counts["sparse"] == 2 and counts["dense@code_size=8"] == 2 and counts["conv"] == 3  # the variants' own
    none = space.replace(repeats=0)
    assert {none.search(v).repeats for v in none.runs()} == {0}  # --repeats wins
    assert parse_space(yaml.safe_load(space_to_yaml(space)), "saved") == space
    assert {load_space(REPO / "search_spaces" / "quick.yaml").search(v).repeats
            for v in load_space(REPO / "search_spaces" / "quick.yaml").runs()} == {3}
    for bad, key in (({**VALID, "repeats": 1}, "repeats"), ({**VALID, "repeats": -2}, "repeats"),
                     ({**VALID, "variants": {**VALID["variants"], "conv": {**VALID["variants"]["conv"],
                                                                           "repeats": "3"}}}, "variants.conv.repeats")):
        with pytest.raises(SpaceError, match=rf"space.yaml: {re.escape(key)}: must be 0 \(no repeats\) or an integer"):
            parse_space(bad, "space.yaml")
