"""The autoencoder family: architectures, parameter counts, shapes, losses and config validation."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aetune.config import ConfigError
from aetune.models import REGISTRY, build_model
from aetune.models.base import ACTIVATIONS
from aetune.models.conv import UpsampledConv2d
from aetune.models.gaussian import kl_divergence

VARIANTS = {
    "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
    "sparse": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32, "l1": 1e-4},
    "denoising_dense": {"model": "dense", "hidden_layers": [128], "code_size": 32, "noise_factor": 0.5},
    "conv": {"model": "conv", "filters": [16, 8, 8]},
    "denoising_conv": {"model": "conv", "filters": [32, 32], "noise_factor": 0.5},
    "vae": {"model": "vae", "hidden_layers": [512], "code_size": 2},
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config, expected", [
    ({"model": "dense", "code_size": 32}, 50_992),
    ({"model": "dense", "hidden_layers": [128], "code_size": 32}, 209_968),
    ({"model": "conv", "filters": [16, 8, 8]}, 4_385),
    ({"model": "conv", "filters": [32, 32]}, 28_353),
])
def test_classic_parameter_counts(config, expected):
    assert n_params(build_model(config)) == expected


def test_vae_encoder_and_decoder_parameter_counts():
    vae = build_model(VARIANTS["vae"])
    assert (n_params(vae.encoder), n_params(vae.decoder)) == (403_972, 403_728)


def test_keras_initialisation_zero_biases_glorot_weights():
    model = build_model(VARIANTS["dense"])
    first = model.encoder[1][0]
    bound = (6 / (first.in_features + first.out_features)) ** 0.5
    assert torch.all(first.bias == 0)
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_output_range(variant, shape):
    model = build_model(VARIANTS[variant], shape).eval()
    x = torch.rand(4, *shape)
    y = model(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    out = model.objective(x, x)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


@pytest.mark.parametrize("filters", [[8], [4, 4], [16, 8, 8], [8, 8, 8, 8], [2, 2, 2, 2, 2]])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 27, 19), (2, 5, 9)])
def test_any_valid_filter_list_round_trips(filters, shape):
    try:
        model = build_model({"model": "conv", "filters": filters}, shape)
    except ConfigError as err:  # only when the pooling runs out of pixels
        assert "filters" in str(err) and len(filters) > 3
        return
    assert model(torch.rand(2, *shape)).shape == (2, *shape)


@pytest.mark.parametrize("in_channels, out_channels, size, layout", [
    (16, 1, (14, 14), torch.contiguous_format), (16, 1, (14, 14), torch.channels_last),
    (8, 3, (7, 5), torch.channels_last), (4, 2, (1, 2), torch.contiguous_format)])
def test_upsampled_conv_is_the_conv_of_the_upsampled_input(in_channels, out_channels, size, layout):
    """The output conv's low-resolution form gives the numbers and gradients of upsample-then-conv."""
    fused = UpsampledConv2d(in_channels, out_channels).to(memory_format=layout)
    torch.nn.init.normal_(fused.bias)
    x = torch.rand(3, in_channels, *size).contiguous(memory_format=layout).requires_grad_()
    grad = torch.randn(3, out_channels, 2 * size[0], 2 * size[1])
    results = []
    for forward in (fused, lambda t: F.conv2d(F.interpolate(t, scale_factor=2), fused.weight, fused.bias, padding=1)):
        out = forward(x)
        out.backward(grad)
        results.append([out, x.grad, fused.weight.grad, fused.bias.grad])
        x.grad = fused.weight.grad = fused.bias.grad = None
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-4)  # sums over 3 x 28 x 28 pixels


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_is_non_decreasing_so_conv_stages_may_pool_first(name):
    """The conv stages pool before their activation: the same function only for a non-decreasing one (a GELU or
    SiLU added to ACTIVATIONS would change the models silently)."""
    x = torch.linspace(-6, 6, 10_001)
    assert torch.all(torch.diff(ACTIVATIONS[name]()(x)) >= 0)


def test_conv_stages_start_lecun_normal_before_a_selu():
    """The encoder pools before its activation: the SELU still makes the conv before it start LeCun-normal."""
    torch.manual_seed(0)
    model = build_model({"model": "conv", "filters": [16, 64], "activation": "selu", "decoder": "transpose"})
    assert isinstance(model.encoder[1], torch.nn.MaxPool2d) and isinstance(model.encoder[2], torch.nn.SELU)
    second = model.encoder[3].weight  # 16 -> 64: Glorot's std would be 0.63 / sqrt(fan_in)
    assert float(second.std()) * math.sqrt(second[0].numel()) == pytest.approx(1, abs=0.05)


def test_vae_encodes_the_mean_and_samples_its_loss_in_eval_mode_too():
    """The code is the posterior mean; the loss decodes a sampled code (given noise: that draw), and an eval pass's
    reconstruction is the mean-decoded one."""
    vae = build_model(VARIANTS["vae"]).eval()
    x = torch.rand(3, 1, 28, 28)
    mean, log_var = vae.encoder(x)
    assert torch.equal(vae.encode(x), mean) and vae.code_shape == (2,) and log_var.shape == (3, 2)
    noise = vae.latent_noise(3, torch.Generator().manual_seed(0))
    out = vae.objective(x, x, noise)
    assert torch.equal(out.code, mean) and torch.equal(out.logits, vae.decode_logits(mean))
    sampled = vae.decode_logits(mean + noise * torch.exp(0.5 * log_var))
    bce = F.binary_cross_entropy_with_logits(sampled, x, reduction="none").flatten(1).sum(1).mean()
    assert torch.allclose(out.recon_loss, bce, rtol=1e-5)
    assert torch.equal(vae.objective(x, x, noise).loss, out.loss)  # the same draw, the same loss
    mean_decoded = F.binary_cross_entropy(vae(x), x, reduction="none").flatten(1).sum(1).mean()
    assert not torch.allclose(out.recon_loss, mean_decoded, rtol=1e-5)  # an untrained decoder: close, not equal
    assert build_model(VARIANTS["dense"]).latent_noise(3, torch.Generator()) is None


def test_kl_matches_closed_form():
    mean = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.2, -0.3], [0.0, 0.0]])
    var = log_var.exp()
    expected = 0.5 * (var + mean**2 - 1 - log_var).sum(1)
    assert torch.allclose(kl_divergence(mean, log_var), expected)
    assert kl_divergence(mean, log_var)[1] == 0  # N(0, I) against itself


def test_vae_objective_is_summed_bce_plus_kl():
    vae = build_model(VARIANTS["vae"]).eval()
    x = torch.rand(5, 1, 28, 28)
    noise = torch.zeros(5, 2)  # z = the mean: the sampled loss reduces to the mean-decoded one
    out = vae.objective(x, x, noise)
    bce = torch.nn.functional.binary_cross_entropy(vae(x), x, reduction="none").flatten(1).sum(1).mean()
    assert torch.allclose(out.recon_loss, bce, rtol=1e-4)
    assert torch.allclose(out.loss, out.recon_loss + out.reg_loss)


def test_l1_penalty_has_keras_activity_regularizer_meaning():
    model = build_model({**VARIANTS["sparse"], "l1": 0.01}).eval()
    x = torch.rand(6, 1, 28, 28)
    out = model.objective(x, x)
    assert torch.allclose(out.reg_loss, 0.01 * model.encode(x).abs().sum(1).mean())
    assert torch.allclose(out.loss, out.recon_loss + out.reg_loss)


def test_bce_is_keras_per_pixel_mean():
    model = build_model(VARIANTS["dense"]).eval()
    x = torch.rand(4, 1, 28, 28)
    expected = torch.nn.functional.binary_cross_entropy(model(x), x)
    assert torch.allclose(model.objective(x, x).recon_loss, expected, rtol=1e-4)


@pytest.mark.parametrize("config, key", [
    ({"model": "transformer"}, "model"),
    ({"code_size": 0}, "code_size"),
    ({"code_size": -3}, "code_size"),
    ({"hidden_layers": [128, "64"]}, "hidden_layers"),
    ({"hidden_layers": [128.5]}, "hidden_layers"),
    ({"hidden_layers": 128}, "hidden_layers"),
    ({"hidden_layers": [0]}, "hidden_layers"),
    ({"model": "conv", "filters": []}, "filters"),
    ({"model": "conv", "filters": [8, "x"]}, "filters"),
    ({"model": "conv", "filters": [4] * 6}, "filters"),  # 28 -> 14 -> 7 -> 4 -> 2 -> 1 -> below a pixel
    ({"noise_factor": -0.1}, "noise_factor"),
    ({"l1": -1e-5}, "l1"),
    ({"loss": "hinge"}, "loss"),
    ({"lr": 0}, "lr"),
    ({"code_sise": 32}, "code_sise"),
])
def test_invalid_config_names_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        build_model(config)


def test_only_the_models_package_knows_family_names():
    """The rest of the package asks the model (config_keys, generative, extra_metrics, code_shape), never its name."""
    names = "|".join(REGISTRY)
    asks_name = re.compile(rf"""model\s*(==|!=|in)\s*[(\[{{]?\s*["']|["']({names})["']\s*(==|!=)""")
    package = Path(__file__).resolve().parents[1] / "aetune"
    offenders = [f"{path.relative_to(package)}:{number}: {line.strip()}"
                 for path in package.rglob("*.py") if path.parent.name != "models"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if asks_name.search(line)]
    assert offenders == []
