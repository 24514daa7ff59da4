"""What the dashboards show, read back from their own files: TensorBoard's HParams and charts of a trial (event
files, tensorboard's reader) and the names optuna-dashboard shows for a search's studies (its Optuna storage)."""
from __future__ import annotations

from pathlib import Path

import optuna
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from aetune.config import TrialConfig
from aetune.experiment import read_manifest
from aetune.models import build_model
from aetune.search.space_file import load_space
from aetune.train.logger import CODE_NUMBERS, TrialLogger

DIGITS = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)


def logged(folder: Path, config: TrialConfig) -> EventAccumulator:
    model = build_model(config, (1, 28, 28))
    with TrialLogger(folder, config, DIGITS) as logger:
        logger.log_epoch({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_bce": 0.2}, model, images=False)
    return EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()


def hparams_of(events: EventAccumulator) -> dict[str, object]:
    content = events.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind")) for key, value in values.items()}


def test_a_conv_trials_hparams_hold_its_real_code_size_and_only_its_familys_keys(tmp_path):
    config = TrialConfig.from_dict({"model": "conv", "filters": [16, 16], "epochs": 1})
    values = hparams_of(logged(tmp_path, config))
    assert values[CODE_NUMBERS] == 784  # 16 maps of 7 x 7, not the code_size default of 32
    assert values["filters"] == "16-16" and values["decoder"] == "upsample"
    assert not {"code_size", "hidden_layers", "beta"} & set(values)  # keys only other families read
    assert values["lr"] == config.lr and values["noise_factor"] == 0.0  # what every family trains with


def test_a_dense_trials_hparams_keep_code_size_and_drop_the_conv_and_vae_keys(tmp_path):
    values = hparams_of(logged(tmp_path, TrialConfig.from_dict({"model": "dense", "code_size": 8, "epochs": 1})))
    assert values[CODE_NUMBERS] == 8 and values["code_size"] == 8
    assert not {"filters", "decoder", "beta"} & set(values)


def test_a_vaes_loss_in_nats_per_image_does_not_share_a_chart_with_per_pixel_losses(tmp_path):
    vae = logged(tmp_path / "vae", TrialConfig.from_dict({"model": "vae", "code_size": 2, "epochs": 1}))
    dense = logged(tmp_path / "dense", TrialConfig.from_dict({"model": "dense", "epochs": 1}))
    vae_tags, dense_tags = set(vae.Tags()["scalars"]), set(dense.Tags()["scalars"])
    assert {"loss_per_image/train", "loss_per_image/val"} <= vae_tags and not {"loss/train", "loss/val"} & vae_tags
    assert {"loss/train", "loss/val"} <= dense_tags and not {"loss_per_image/val"} & dense_tags
    assert "reconstruction/val_bce" in vae_tags & dense_tags  # the per-pixel score they share, in one chart


def test_every_study_names_its_objectives_variant_sweep_value_and_space_file(searched: Path):
    """What optuna-dashboard reads: the metric names it labels the objectives with, and the user attributes."""
    storage = f"sqlite:///{searched / 'optuna.db'}"
    space = load_space(searched / "space.yaml", models=False)
    studies = {s.user_attrs["variant"]: s for s in optuna.get_all_study_summaries(storage)}
    assert set(studies) == {v.name for v in space.runs()}
    prefix = f"small/{read_manifest(str(searched))['created']}/"  # one experiment's studies, named after it
    assert {s.study_name for s in studies.values()} == {prefix + v.name for v in space.runs()}
    for variant in space.runs():
        study = optuna.load_study(study_name=studies[variant.name].study_name, storage=storage)
        assert study.metric_names == list(space.search(variant).metric)
        attrs = study.user_attrs
        assert attrs["variant"] == variant.name and attrs["base_variant"] == (variant.base or variant.name)
        assert attrs["sweep"] == variant.swept and attrs["space_file"] == str(searched / "space.yaml")
    assert studies["dense@code_size=8"].user_attrs["sweep"] == {"code_size": 8}
    assert optuna.load_study(study_name=prefix + "sparse", storage=storage).metric_names == ["val_bce", "code_l1"]
