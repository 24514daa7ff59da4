"""The guard's holes, each closed: modes, objectives the knob does not move, units that change with a searched key,
parameters standing in for code size, and keys that change the code size only together. Each refusal is checked
beside the space it must still accept, so a guard that refuses everything fails too."""
from __future__ import annotations

import re

import pytest

from aetune.search.spaces import SpaceError
from aetune.search.space_file import parse_space

L1 = {"model": "dense", "hidden_layers": [64], "code_size": 16, "l1": {"loguniform": [1.0e-6, 1.0e-3]}}
FILTERS = {"model": "conv", "filters": {"choice": [[16, 8, 8], [8, 8]]}}  # codes of 128 and 392 numbers
JOINT = {"model": {"choice": ["dense", "conv"]}, "code_size": 128,  # dense 128 = conv [16, 8, 8]'s 8 x 4 x 4
         "filters": {"choice": [[16, 8, 8], [16, 16]]}}  # conv [16, 16]: 16 x 7 x 7 = 784


def space(variant: dict, **search) -> dict:
    return {"name": "guard", "epochs": 1, "samples": 2, "scheduler": "fifo", "variants": {"v": {**variant, **search}}}


def refusal(raw: dict) -> str | None:
    try:
        parse_space(raw, "guard.yaml")
    except SpaceError as err:
        return str(err)
    return None


def assert_refused(raw: dict, message: str) -> None:
    text = refusal(raw)
    assert text is not None, "accepted"
    assert re.search(message, text), text


@pytest.mark.parametrize("variant, metric, knob", [
    (L1, ["val_bce", "code_l1"], "l1"),  # both reward the lowest l1: code_l1 is largest there
    ({"model": "dense", "code_size": {"choice": [8, 32]}}, ["val_bce", "code_size"], "code_size"),
])
def test_maximising_an_objective_rewards_the_other_end(variant, metric, knob):
    assert refusal(space(variant, metric=metric, mode=["min", "min"])) is None
    assert_refused(space(variant, metric=metric, mode=["min", "max"]),
                   rf"variants\.v\.{knob}: searched on {', '.join(metric)} \(min, max\)")


@pytest.mark.parametrize("variant, knob", [
    (L1, "l1"),
    ({"model": "dense", "noise_factor": {"uniform": [0.0, 0.6]}}, "noise_factor"),
    ({"model": "vae", "beta": {"loguniform": [0.25, 4.0]}}, "beta"),
])
@pytest.mark.parametrize("constant", ["params", "code_size"])
def test_an_objective_the_knob_does_not_move_balances_nothing(variant, knob, constant):
    assert_refused(space(variant, metric=["val_bce", constant]),
                   rf"variants\.v\.{knob}: .*{constant} does not move with it, so it balances nothing")


def test_the_loss_kind_changes_val_loss_units():
    variant = {"model": "dense", "loss": {"choice": ["bce", "mse"]}}
    assert refusal(space(variant, metric="val_bce")) is None
    assert_refused(space(variant, metric="val_loss"), r"variants\.v\.loss: .*different units.*metric: val_bce")
    assert_refused(space(variant, metric=["val_bce", "train_loss"]), r"variants\.v\.loss: .*train_loss of one")


def test_the_family_changes_val_loss_units():
    """A per-pixel mean (dense) against a sum per image (vae): the registry's classes say which, not their names."""
    assert refusal(space({"model": {"choice": ["dense", "lstm"]}, "hidden_layers": [64]}, metric="val_loss")) is None
    assert refusal(space({"model": {"choice": ["dense", "vae"]}, "hidden_layers": [64]}, metric="val_bce")) is None
    assert_refused(space({"model": {"choice": ["dense", "vae"]}, "hidden_layers": [64]}, metric="val_loss"),
                   r"variants\.v\.model: .*per-pixel mean and a sum per image")


def test_parameters_do_not_stand_in_for_the_code_size_of_filter_lists():
    assert refusal(space(FILTERS, metric=["val_bce", "code_size"])) is None
    assert refusal(space(FILTERS, metric=["val_bce", "code_size", "params"])) is None
    assert_refused(space(FILTERS, metric=["val_bce", "params"]),
                   r"variants\.v\.filters: .*codes of 128 to 392 numbers.*metric: \[val_bce, code_size\]")


def test_keys_that_change_the_code_size_together_are_checked_together():
    alone = [space({**JOINT, "filters": [16, 8, 8]}), space({**JOINT, "model": "dense"})]
    assert [refusal(raw) for raw in alone] == [None, None]  # neither key alone changes the code size here
    assert refusal(space(JOINT, metric=["val_bce", "code_size"])) is None
    assert_refused(space(JOINT), r"variants\.v\.model and filters \(together\): .*codes of 128 to 784 numbers")


def test_the_joint_check_combines_only_architecture_keys_and_refuses_past_its_limit():
    """Training knobs (lr, batch_size, activation) never change the code: leaving them out keeps the joint check
    small; too many architectures is refused, never skipped."""
    knobs = {"lr": {"choice": [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]},
             "batch_size": {"choice": [32, 64, 128, 256]}, "activation": {"choice": ["relu", "selu", "tanh"]}}
    assert_refused(space({**JOINT, **knobs}),  # 384 combinations, 4 architectures
                   r"variants\.v\.model and filters \(together\): .*codes of 128 to 784 numbers")
    assert refusal(space({**JOINT, **knobs}, metric=["val_bce", "code_size"])) is None
    many = {"model": {"choice": ["dense", "conv"]}, "code_size": 128,
            "filters": {"choice": [[16, 8, 8]] * 12}, "hidden_layers": {"choice": [[n] for n in range(20, 31)]}}
    assert_refused(space(many), r"variants\.v\.model and filters and hidden_layers: their options make 264 "
                                r"architectures, more than the 256")


def test_a_vaes_code_size_may_be_searched_on_its_negative_elbo():
    """The ELBO charges every latent dimension its KL: the standard criterion for a latent size. The model says its
    loss is a likelihood bound (loss: bce); a dense model's, or a VAE's summed squared error, is not."""
    assert refusal(space({"model": "vae", "code_size": {"randint": [2, 32]}}, metric="val_loss")) is None
    assert refusal(space({"model": "conv_vae", "code_size": {"choice": [2, 16]}}, metric="train_loss")) is None
    assert_refused(space({"model": "vae", "code_size": {"randint": [2, 32]}}, metric="val_bce"),
                   r"variants\.v\.code_size: searched alone on val_bce")
    assert_refused(space({"model": "vae", "loss": "mse", "code_size": {"randint": [2, 32]}}, metric="val_loss"),
                   r"variants\.v\.code_size: searched alone on val_loss")
    assert_refused(space({"model": "dense", "code_size": {"randint": [2, 32]}}, metric="val_loss"),
                   r"variants\.v\.code_size: searched alone on val_loss")


@pytest.mark.parametrize("models", [["dense", "vae"], ["vae", "dense"]])
def test_a_metric_only_some_options_report_is_refused_in_either_order(models):
    """kl is the VAEs' own: a dense option never reports it, whichever option is listed last."""
    variant = {"model": {"choice": models}, "code_size": 8}
    assert_refused(space(variant, metric=["val_bce", "kl"], mode=["min", "min"]),
                   r"variants\.v\.metric: unknown 'kl' for a (dense or vae|vae or dense) model")
    assert refusal(space({"model": {"choice": ["vae", "conv_vae"]}, "code_size": 8}, metric=["val_bce", "kl"],
                         mode=["min", "min"])) is None


@pytest.mark.parametrize("spec", [{"seed": {"choice": [0, 1, 2]}}, {"sweep": {"seed": [0, 1]}}], ids=["searched", "swept"])
def test_the_seed_is_not_a_knob(spec):
    """Searching the seed keeps the luckiest draw; repeats measure a config over seeds instead."""
    with pytest.raises(SpaceError, match="the seed is not a knob"):
        parse_space({"variants": {"d": {"model": "dense", **spec}}}, "s.yaml", models=False)
    parse_space({"variants": {"d": {"model": "dense", "seed": 3}}}, "s.yaml", models=False)  # a fixed seed is fine
