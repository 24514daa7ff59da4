"""The families beyond the classics: stacked SELU, linear (= PCA), tanh, transposed conv, LSTM, conv VAE, beta-VAE.

Each is checked the same way: its Keras parameter counts, shapes on grey and colour images, learning on real MNIST,
checkpoints and resume, config errors that name the key, and the evaluation's figures.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aetune.config import ConfigError, TrialConfig
from aetune.evaluate.baselines import PCA
from aetune.models import build_model
from aetune.search.space_file import load_space
from aetune.train.__main__ import _parser
from aetune.train.checkpoint import load_checkpoint, model_from_checkpoint
from aetune.train.data import ImageData, to_float
from aetune.train.trainer import Trainer

COURSE = {  # the course notebook's models
    "stacked_selu": {"model": "dense", "hidden_layers": [100], "code_size": 30, "activation": "selu"},
    "conv_transpose": {"model": "conv", "filters": [16, 32, 64], "activation": "selu", "decoder": "transpose"},
    "lstm": {"model": "lstm", "hidden_layers": [100], "code_size": 30},
}
VARIANTS = {
    **COURSE,
    "dense_tanh": {"model": "dense", "hidden_layers": [64], "code_size": 16, "activation": "tanh"},
    "linear": {"model": "dense", "code_size": 16, "activation": "linear", "loss": "mse"},
    "conv_linear": {"model": "conv", "filters": [8, 8], "activation": "linear", "loss": "mse"},
    "conv_vae": {"model": "conv_vae", "filters": [16, 32], "code_size": 2},
    "conv_vae_transpose": {"model": "conv_vae", "filters": [16, 32], "code_size": 8, "activation": "selu",
                           "decoder": "transpose"},
    "beta_vae": {"model": "vae", "hidden_layers": [256], "code_size": 8, "beta": 4.0},
}
LINEAR_HEAD = {"linear", "conv_linear"}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def make_trainer(data: ImageData, variant: str, **overrides) -> Trainer:
    config = TrialConfig.from_dict({**VARIANTS[variant], "batch_size": 64, "epochs": 2, **overrides})
    return Trainer(config, data, device="cpu")


@pytest.fixture(scope="module")
def small(mnist) -> ImageData:
    """600 training, 300 validation and 300 test images: every class in the figures, cheap to train on."""
    return ImageData(mnist.name, mnist.train_x[:600], mnist.train_y[:600], mnist.val_x, mnist.val_y,
                     mnist.test_x[:300], mnist.test_y[:300])


# --- architectures -----------------------------------------------------------------------------------------------

def test_stacked_selu_has_the_course_parameter_count_and_lecun_init():
    model = build_model(COURSE["stacked_selu"])
    assert n_params(model) == 163_814  # 784-100-30-100-784
    hidden, head = model.encoder[1][0], model.decoder[0][2]
    assert isinstance(model.encoder[1][1], torch.nn.SELU)
    assert abs(float(hidden.weight.detach().std()) * math.sqrt(784) - 1) < 0.03  # LeCun normal: std 1 / sqrt(fan_in)
    bound = math.sqrt(6 / (100 + 784))  # the sigmoid head stays Glorot-uniform
    assert 0.9 * bound < float(head.weight.detach().abs().max()) <= bound


def test_transposed_conv_has_the_course_layout_and_parameter_counts():
    model = build_model(COURSE["conv_transpose"])
    assert (n_params(model.encoder), n_params(model.decoder)) == (23_296, 23_233)
    assert model.code_shape == (64, 3, 3)  # floor pooling: 28 -> 14 -> 7 -> 3
    sizes, z = [], torch.zeros(1, 64, 3, 3)
    for layer in model.decoder:
        z = layer(z)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            sizes.append(z.shape[-1])
    assert sizes == [7, 14, 28]  # 'valid', then 'same', 'same'


def test_lstm_has_the_keras_parameter_counts_with_one_bias_per_gate():
    model = build_model(COURSE["lstm"])
    assert (n_params(model.encoder), n_params(model.decoder)) == (67_320, 55_228)  # Keras' counts
    # torch's second bias per gate is frozen at zero: 4 x units more in the total, none of them trained
    total = sum(p.numel() for p in model.parameters())
    assert total == 67_320 + 55_228 + 4 * (100 + 30 + 100)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert len(frozen) == 3 and all(torch.all(p == 0) for p in frozen)
    forget = model.encoder[0].bias_ih_l0[100:200]
    assert torch.all(forget == 1) and torch.all(model.encoder[0].bias_ih_l0[:100] == 0)  # Keras unit_forget_bias


def test_conv_vae_shares_the_conv_layers_around_a_gaussian_latent():
    model = build_model({"model": "conv_vae", "filters": [16, 32, 64], "activation": "selu", "decoder": "transpose",
                         "code_size": 2})
    conv = build_model(COURSE["conv_transpose"])
    heads = 2 * (64 * 3 * 3 * 2 + 2)  # mean and log-variance from the 576 features
    assert n_params(model.encoder) == n_params(conv.encoder) + heads == 25_604
    assert n_params(model.decoder) == (2 * 576 + 576) + n_params(conv.decoder) == 24_961
    assert model.generative and model.extra_metrics == ("kl",) and model.code_shape == (2,)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_code_and_output_range(variant, shape):
    model = build_model(VARIANTS[variant], shape).eval()
    x = torch.rand(4, *shape)
    code = model.encode(x)
    assert isinstance(code, torch.Tensor) and code.shape == (4, *model.code_shape)
    y = model(x)
    assert y.shape == x.shape
    if variant in LINEAR_HEAD:  # the decoder's output is the reconstruction: no sigmoid
        assert torch.equal(y, model.decode_logits(code))
    else:
        assert y.min() >= 0 and y.max() <= 1
    out = model.objective(x, x)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.recon.shape == x.shape
    assert set(out.extras) == set(model.extra_metrics)


@pytest.mark.parametrize("model", ["conv", "conv_vae"])
@pytest.mark.parametrize("filters", [[8], [4, 4], [16, 8, 8], [2, 2, 2, 2]])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 27, 19), (2, 5, 9)])
def test_transposed_decoder_round_trips_any_filter_list(model, filters, shape):
    try:
        ae = build_model({"model": model, "filters": filters, "decoder": "transpose"}, shape)
    except ConfigError as err:  # only when floor pooling runs out of pixels
        assert "filters" in str(err) and 2 ** len(filters) > min(shape[1:])
        return
    assert ae(torch.rand(2, *shape)).shape == (2, *shape)


def test_beta_weights_the_kl_term_only():
    x = torch.rand(5, 1, 28, 28)

    def objective(beta: float):
        torch.manual_seed(0)  # the same weights for every beta
        return build_model({**VARIANTS["beta_vae"], "beta": beta}).eval().objective(x, x)

    plain, zero, strong = objective(1.0), objective(0.0), objective(4.0)
    assert torch.equal(plain.recon_loss, strong.recon_loss) and torch.equal(plain.extras["kl"], strong.extras["kl"])
    assert torch.allclose(strong.loss, strong.recon_loss + 4.0 * strong.extras["kl"])
    assert torch.allclose(plain.loss, plain.recon_loss + plain.extras["kl"])
    assert zero.reg_loss == 0 and torch.equal(zero.loss, zero.recon_loss) and zero.extras["kl"] > 0


# --- learning on real MNIST --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_falls_within_two_epochs(mnist, variant):
    trainer = make_trainer(mnist, variant)
    before = trainer.evaluate()["val_loss"]
    history = [trainer.run_epoch() for _ in range(2)]
    assert history[1]["val_loss"] < history[0]["val_loss"] < before
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert set(trainer.model.extra_metrics) <= set(history[-1])
    assert history[-1]["params"] == n_params(trainer.model)  # trainable only: Keras' count for the LSTM too


def test_linear_autoencoder_finds_the_pca_subspace(mnist):
    """Trained with MSE, a linear autoencoder's optimum is PCA's: the same error, the same subspace (not the same
    basis). k = 16 sits on a clear gap of MNIST's spectrum, so the subspace is well defined."""
    k = 16
    trainer = make_trainer(mnist, "linear", code_size=k, lr=0.001, epochs=80)  # seeds 0-3: within 0.2%, 2 degrees
    while trainer.epoch < 80:
        trainer.run_epoch()
    train, test = to_float(mnist.train_x), to_float(mnist.test_x)
    pca = PCA.fit(train, k)
    model = trainer.model.eval()
    with torch.no_grad():
        for images in (train, test):  # fitted on the training images; the test images as a check
            ae_mse = float((model(images) - images).pow(2).mean())
            pca_mse = float((pca.project(images) - images).pow(2).mean())
            assert ae_mse < 1.02 * pca_mse, (ae_mse, pca_mse)
    decoder = model.decoder[0][0].weight.detach().double()  # 784 x k: its columns span the reconstructions
    cosines = torch.linalg.svdvals(torch.linalg.qr(decoder).Q.T @ pca.components.double().T)
    largest_angle = math.degrees(math.acos(min(1.0, float(cosines.min()))))
    assert largest_angle < 10, largest_angle


# --- checkpoints and resume --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["lstm", "conv_vae_transpose", "conv_transpose"])
def test_checkpoint_round_trip_and_resume_parity(small, variant, tmp_path):
    straight = make_trainer(small, variant, epochs=3)
    final = [straight.run_epoch() for _ in range(3)][-1]

    first = make_trainer(small, variant, epochs=2)
    while first.epoch < 2:
        first.run_epoch()
    path = first.save(tmp_path / "checkpoint.pt")
    bundle = load_checkpoint(path)
    model = model_from_checkpoint(bundle, path)
    x = to_float(small.test_x[:16])
    assert torch.equal(model.to(memory_format=first.memory_format)(x), first.model.eval()(x))

    torch.manual_seed(12345)  # a fresh process would have different global RNG state
    resumed = make_trainer(small, variant, epochs=3)
    resumed.load_state_dict(bundle)
    last = resumed.run_epoch()
    for key in ("train_loss", "val_loss", "val_bce", "code_l1"):
        assert last[key] == final[key], key
    ours, theirs = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


# --- configuration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, key", [
    ({"activation": "gelu"}, "activation"),
    ({"activation": "linear"}, "activation"),  # a linear AE is trained with MSE
    ({"model": "conv", "activation": "linear", "loss": "bce"}, "activation"),
    ({"model": "conv_vae", "activation": "linear"}, "activation"),
    ({"model": "conv", "decoder": "pixelshuffle"}, "decoder"),
    ({"model": "vae", "beta": -0.5}, "beta"),
    ({"model": "vae", "beta": "high"}, "beta"),
    ({"model": "vae", "beta": float("inf")}, "beta"),
    ({"model": "lstm", "hidden_layers": []}, "hidden_layers"),
    ({"model": "conv_vae", "l1": 1e-4}, "l1"),
    ({"model": "conv_vae", "filters": []}, "filters"),
    ({"model": "conv", "decoder": "transpose", "filters": [4] * 5}, "filters"),  # 28 -> 14 -> 7 -> 3 -> 1 -> 0
])
def test_invalid_config_names_the_key(config, key):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        build_model(config)


@pytest.mark.parametrize("config, ignored", [
    ({"model": "dense", "code_size": 32}, {"decoder": "transpose", "beta": 3.0, "filters": [4]}),
    ({"model": "vae", "code_size": 2}, {"activation": "selu", "decoder": "transpose"}),
    ({"model": "lstm", "hidden_layers": [16], "code_size": 4}, {"activation": "linear", "filters": [4]}),
])
def test_a_key_the_family_does_not_read_is_ignored(config, ignored):
    model, other = build_model(config), build_model({**config, **ignored})
    assert not set(ignored) & set(type(model).config_keys)
    assert [p.shape for p in model.parameters()] == [p.shape for p in other.parameters()]
    assert str(model) == str(other)


def test_train_command_line_reads_the_new_keys():
    args = _parser().parse_args(["--model", "conv_vae", "--activation", "selu", "--decoder", "transpose",
                                 "--beta", "0.5", "--code-size", "8"])
    assert (args.model, args.activation, args.decoder, args.beta, args.code_size) == (
        "conv_vae", "selu", "transpose", 0.5, 8)


def test_course_space_builds_the_course_models():
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "course.yaml")
    assert (space.searcher, space.scheduler, space.samples) == ("grid", "fifo", 1)
    assert (space.defaults["val_size"], space.defaults["val_split"], space.defaults.get("train_size")) == (
        5000, "last", None)  # the notebook's 55,000 / 5,000 split of the 60,000 training images
    expected = {"stacked_selu": COURSE["stacked_selu"], "conv": COURSE["conv_transpose"], "lstm": COURSE["lstm"],
                "denoising": {**COURSE["stacked_selu"], "noise_factor": 0.2}}
    assert {name: v.fixed for name, v in space.variants.items()} == expected
    assert not any(v.domains for v in space.variants.values())  # one trial each
    assert space.variants["denoising"].settings == {"metric": "val_denoise_bce"} and space.eval_noise == 0.2


# --- evaluation --------------------------------------------------------------------------------------------------

def test_evaluation_figures_render_for_every_new_family(small):
    """One short training each, the evaluation's test pass, then every figure: a manifold for the generative ones."""
    from aetune.evaluate.model_figures import figures, slug
    from aetune.evaluate.scoring import EvalImages, Variant, score_checkpoint

    shown = ["stacked_selu", "linear", "conv_transpose", "lstm", "conv_vae", "beta_vae"]
    variants, images = [], EvalImages.build(small, 0.5)
    for name in shown:
        trainer = make_trainer(small, name, epochs=1, batch_size=128)
        trainer.run_epoch()
        variant = Variant(name, {}, trainer.config, trainer.model.eval(), trainer.state_dict(), checkpoint="")
        score_checkpoint(variant, images, torch.device("cpu"))
        variants.append(variant)
    names = {artifact.name for artifact in figures(variants, {"mnist": images})}
    per_variant = {"recon", "scatter", "interpolation", "anomalies"}
    expected = {f"{kind}_{slug(name)}" for name in shown for kind in per_variant}
    expected |= {f"manifold_{name}" for name in ("conv_vae", "beta_vae")} | {"generation", "training_curves"}
    assert names == expected
