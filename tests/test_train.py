"""The trainer: learning for every variant, sparsity, determinism, checkpoints and resume."""
from __future__ import annotations

import copy

import pytest
import torch

from aetune.config import TrialConfig
from aetune.models import build_model
from aetune.models.conv import UpsampledConv2d
from aetune.train.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from aetune.train.trainer import Trainer

VARIANTS = {
    "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
    "sparse": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32, "l1": 1e-3},
    "denoising_dense": {"model": "dense", "hidden_layers": [128], "code_size": 32, "noise_factor": 0.5},
    "conv": {"model": "conv", "filters": [16, 8, 8]},
    "denoising_conv": {"model": "conv", "filters": [16, 16], "noise_factor": 0.5},
    "vae": {"model": "vae", "hidden_layers": [256], "code_size": 2},
}
METRICS = {"epoch", "train_loss", "val_loss", "val_bce", "val_mse", "val_denoise_bce", "code_l1", "code_size", "params",
           "samples_per_s"}


def make_trainer(mnist, variant: str, **overrides) -> Trainer:
    config = TrialConfig.from_dict({**VARIANTS[variant], "batch_size": 64, "epochs": 2, **overrides})
    return Trainer(config, mnist, device="cpu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_falls_within_two_epochs(mnist, variant):
    trainer = make_trainer(mnist, variant)
    before = trainer.evaluate()["val_loss"]
    history = [trainer.run_epoch() for _ in range(2)]
    assert set(history[0]) == METRICS | ({"kl"} if variant == "vae" else set())
    assert history[1]["val_loss"] < history[0]["val_loss"] < before
    assert history[1]["train_loss"] < history[0]["train_loss"]


def test_sparse_code_is_less_active_than_unregularised(mnist):
    dense, sparse = make_trainer(mnist, "dense"), make_trainer(mnist, "sparse")
    for _ in range(2):
        dense_metrics, sparse_metrics = dense.run_epoch(), sparse.run_epoch()
    assert sparse_metrics["code_l1"] < 0.5 * dense_metrics["code_l1"]


def test_val_metrics_use_clean_inputs_and_denoising_objective_uses_noise(mnist):
    trainer = make_trainer(mnist, "denoising_dense", loss="bce")
    metrics = trainer.evaluate()
    assert metrics["val_loss"] > metrics["val_bce"]  # noisy inputs reconstruct worse than clean ones
    assert trainer.evaluate() == metrics  # fixed validation noise: same numbers every time


def test_denoising_score_uses_the_same_corrupted_inputs_for_every_trial(mnist):
    plain, denoiser = make_trainer(mnist, "dense", seed=1), make_trainer(mnist, "denoising_dense", seed=2)
    assert torch.equal(plain.val_noisy, denoiser.val_noisy)  # whatever the trial's seed and training noise
    assert not torch.equal(make_trainer(mnist, "dense", eval_noise=0.3).val_noisy, plain.val_noisy)
    metrics = plain.evaluate()
    assert metrics["val_denoise_bce"] > metrics["val_bce"]  # sigma-0.5 inputs reconstruct worse than clean ones
    with torch.no_grad():
        denoised = torch.nn.functional.binary_cross_entropy(plain.model.eval()(plain.val_noisy),
                                                            plain.data.val_x.float() / 255)
    assert metrics["val_denoise_bce"] == pytest.approx(float(denoised), rel=1e-4)


@pytest.mark.parametrize("variant, code_size, params", [("dense", 32, 222_384), ("conv", 128, 4_385),
                                                        ("vae", 2, 404_244)])
def test_code_size_and_parameter_count_are_reported(mnist, variant, code_size, params):
    metrics = make_trainer(mnist, variant).evaluate()
    assert (metrics["code_size"], metrics["params"]) == (code_size, params)


@pytest.mark.parametrize("variant", ["dense", "conv", "vae"])
def test_train_step_changes_weights_and_evaluation_does_not(mnist, variant):
    trainer = make_trainer(mnist, variant, train_size=256)
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.evaluate()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    trainer.train_epoch()
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)]
    assert len(changed) == len(before)


def test_same_seed_same_result_other_seed_differs(mnist):
    runs = [make_trainer(mnist, "dense", seed=s, epochs=1).run_epoch()["val_loss"] for s in (3, 3, 4)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("variant", ["dense", "vae", "denoising_conv"])
def test_checkpoint_round_trip_gives_identical_outputs_and_optimizer(mnist, variant, tmp_path):
    trainer = make_trainer(mnist, variant, train_size=512)
    trainer.run_epoch()
    path = trainer.save(tmp_path / "checkpoint.pt")
    bundle = load_checkpoint(path)
    model = model_from_checkpoint(bundle, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trainer.model.state_dict().values()))
    x = mnist.test_x[:16].float() / 255
    trainer.model.eval()
    assert torch.equal(model.to(memory_format=trainer.memory_format)(x), trainer.model(x))
    restored = make_trainer(mnist, variant, train_size=512)
    restored.load_state_dict(bundle)
    saved, ours = restored.optimizer.state_dict(), trainer.optimizer.state_dict()
    assert saved["param_groups"] == ours["param_groups"]
    for key, state in ours["state"].items():
        assert all(torch.equal(state[k], saved["state"][key][k]) for k in state)
    assert restored.epoch == 1 and restored.history == trainer.history


@pytest.mark.parametrize("variant", ["sparse", "denoising_dense", "vae"])
def test_stop_and_resume_matches_uninterrupted_run(mnist, variant, tmp_path):
    straight = make_trainer(mnist, variant, epochs=3, train_size=1000)
    final = [straight.run_epoch() for _ in range(3)][-1]
    first = make_trainer(mnist, variant, epochs=3, train_size=1000)
    first.run_epoch()
    path = first.save(tmp_path / "checkpoint.pt")
    torch.manual_seed(12345)  # a fresh process would have different global RNG state
    resumed = make_trainer(mnist, variant, epochs=3, train_size=1000)
    resumed.load_state_dict(load_checkpoint(path))
    while resumed.epoch < 3:
        last = resumed.run_epoch()
    for key in ("train_loss", "val_loss", "val_bce", "code_l1"):
        assert last[key] == final[key], key


def test_resume_with_another_config_is_refused(mnist, tmp_path):
    trainer = make_trainer(mnist, "dense", train_size=256)
    path = trainer.save(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="code_size"):
        make_trainer(mnist, "dense", train_size=256, code_size=16).load_state_dict(load_checkpoint(path))


def test_truncated_checkpoint_names_the_file(mnist, tmp_path):
    path = make_trainer(mnist, "dense", train_size=256).save(tmp_path / "checkpoint.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{path}.*truncated"):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "nope.pt")):
        load_checkpoint(tmp_path / "nope.pt")


class _Payload:
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('ran')" % str(MARKER),))


MARKER = None


def test_pickled_payload_is_refused_and_never_runs(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not MARKER.exists()


def test_checkpoint_write_is_atomic(mnist, tmp_path):
    trainer = make_trainer(mnist, "dense", train_size=256)
    trainer.save(tmp_path / "checkpoint.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp files left behind


def test_amp_bf16_trains(mnist):
    trainer = make_trainer(mnist, "dense", amp=True, train_size=1000)
    first, second = trainer.run_epoch(), trainer.run_epoch()
    assert second["val_loss"] < first["val_loss"]


@pytest.mark.parametrize("variant", ["conv", "denoising_conv", "dense", "vae"])
def test_channels_last_trains_the_same_model(mnist, variant):
    """The NHWC layout (fast conv on CPUs) changes speed, not results: the same loss curve for 3 epochs."""
    curves = []
    for channels_last in (False, True):
        config = TrialConfig.from_dict({**VARIANTS[variant], "batch_size": 128, "epochs": 3})
        trainer = Trainer(config, mnist, device="cpu", channels_last=channels_last)
        curves.append([m[key] for m in (trainer.run_epoch() for _ in range(3)) for key in ("train_loss", "val_loss")])
    assert curves[1] == pytest.approx(curves[0], abs=1e-3, rel=1e-3)


def plain_layout(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a conv model with the layers of the Keras original, as the trainer ran them before: activation
    then pool in each encoder stage, and an upsample before a plain output conv."""
    plain = copy.deepcopy(model)
    for sequence in [m for m in plain.modules() if isinstance(m, torch.nn.Sequential)]:
        layers, i = list(sequence), 0
        while i < len(layers):
            if isinstance(layers[i], torch.nn.MaxPool2d):  # conv, pool, activation -> conv, activation, pool
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
                i += 1
            elif isinstance(layers[i], UpsampledConv2d):
                conv = torch.nn.Conv2d(layers[i].in_channels, layers[i].out_channels, 3, padding=1)
                conv.load_state_dict(layers[i].state_dict())
                layers[i - 1:i + 1] = [torch.nn.Upsample(scale_factor=2), conv]
            i += 1
        for index, layer in enumerate(layers):
            sequence[index] = layer
    return plain


def pools_follow_activations(model: torch.nn.Module) -> bool:
    pairs = [(a, b) for s in model.modules() if isinstance(s, torch.nn.Sequential) for a, b in zip(s, list(s)[1:])]
    pools = [before for before, layer in pairs if isinstance(layer, torch.nn.MaxPool2d)]
    return bool(pools) and not any(isinstance(before, torch.nn.Conv2d) for before in pools)


CONV_FAMILIES = {**{k: VARIANTS[k] for k in ("conv", "denoising_conv")},
                 "selu_transpose": {"model": "conv", "filters": [16, 32], "activation": "selu", "decoder": "transpose"}}


@pytest.mark.parametrize("variant", CONV_FAMILIES)
def test_conv_layers_train_as_the_plain_layout_in_nchw(mnist, variant):
    """Pooling before the activation, the low-resolution output conv and channels_last change speed, not results:
    3 epochs give the loss curve of the plain layers in NCHW (the trainer before them)."""
    curves = []
    for plain in (True, False):
        config = TrialConfig.from_dict({**CONV_FAMILIES[variant], "batch_size": 128, "epochs": 3})
        trainer = Trainer(config, mnist, device="cpu", channels_last=not plain)
        assert not pools_follow_activations(trainer.model)
        if plain:
            trainer.model = plain_layout(trainer.model)
            trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=config.lr)
            assert pools_follow_activations(trainer.model)
            assert not any(isinstance(m, UpsampledConv2d) for m in trainer.model.modules())
        curves.append([m[key] for m in (trainer.run_epoch() for _ in range(3)) for key in ("train_loss", "val_loss")])
    assert curves[1] == pytest.approx(curves[0], abs=1e-3, rel=1e-3)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_conv_vae_layers_compute_the_plain_layout_s_loss_and_gradients(activation):
    """The conv VAE with a 2-D latent: one training step's loss and gradients are the plain layers', to float
    rounding. (Its loss curves part by about 1% within an epoch: Adam turns rounding-level differences in
    near-zero gradients into lr-sized steps, and a 2-D latent's training amplifies them.)"""
    torch.manual_seed(0)
    model = build_model({"model": "conv_vae", "filters": [8, 16], "code_size": 2, "activation": activation})
    plain = plain_layout(model)
    assert not pools_follow_activations(model) and pools_follow_activations(plain)
    images = torch.rand(64, 1, 28, 28)
    for net in (model, plain):
        torch.manual_seed(1)  # the same reparameterisation noise
        net.objective(images, images).loss.backward()
    for ours, theirs in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5)


def test_amp_bf16_trains_the_conv_layers(mnist):
    trainer = make_trainer(mnist, "conv", amp=True, train_size=1000)
    first, second = trainer.run_epoch(), trainer.run_epoch()
    assert second["val_loss"] < first["val_loss"]


# --- python -m aetune.train --resume ---------------------------------------------------------------------------------

def train_cli(data_root, out, *flags: str) -> int:
    from aetune.train.__main__ import main

    return main(["--out", str(out), "--data-root", str(data_root), "--no-download", "--device", "cpu", *flags])


def test_resume_takes_the_config_from_the_checkpoint_and_epochs_extend_it(data_root, tmp_path, capsys):
    out = tmp_path / "one"
    assert train_cli(data_root, out, "--model", "conv", "--filters", "8", "8", "--train-size", "600",
                     "--val-size", "100", "--test-size", "100", "--batch-size", "100", "--epochs", "1",
                     "--image-size", "28") == 0
    assert train_cli(data_root, out, "--resume", "--epochs", "2", "--image-size", "28") == 0  # 28 is its [28, 28]
    bundle = load_checkpoint(out)
    assert bundle["epoch"] == 2 and bundle["config"]["model"] == "conv" and bundle["config"]["filters"] == [8, 8]
    assert bundle["config"]["epochs"] == 2 and bundle["config"]["test_size"] == 100
    assert bundle["config"]["image_size"] in ([28, 28], (28, 28))
    events = sorted(out.glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert train_cli(data_root, out, "--resume", "--epochs", "1") == 2  # smaller: refused in one line
    err = capsys.readouterr().err.strip()
    assert "--epochs 1" in err and "trained 2 epochs already" in err and len(err.splitlines()) == 1
    assert train_cli(data_root, out, "--resume") == 2  # nothing left to train
    assert "trained 2 epochs already" in capsys.readouterr().err
    assert sorted(out.glob("events.out.tfevents.*")) == events and load_checkpoint(out)["epoch"] == 2
    assert train_cli(data_root, out, "--resume", "--epochs", "3", "--model", "dense") == 2  # a named change
    assert "trained with model='conv', not 'dense'" in capsys.readouterr().err
