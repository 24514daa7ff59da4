"""The contract every autoencoder keeps, and the one output type the trainer and evaluator read."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aetune.config import ConfigError, TrialConfig


@dataclass
class Output:
    """One forward pass through a variant's objective. Scalars are means over the batch."""

    logits: torch.Tensor  # decoder pre-activation; sigmoid(logits) is the reconstruction (identity if linear_head)
    code: torch.Tensor  # the deterministic code (the VAE's mean)
    loss: torch.Tensor  # the variant's own objective: recon_loss + reg_loss
    recon_loss: torch.Tensor
    reg_loss: torch.Tensor  # L1 activity penalty, or the VAE's KL term
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # the family's extra_metrics, means over the batch
    linear_head: bool = False  # the decoder's output is the reconstruction itself (a linear autoencoder)

    @property
    def recon(self) -> torch.Tensor:
        return self.logits if self.linear_head else torch.sigmoid(self.logits)

    def pixel_bce(self, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel BCE of the reconstruction against target, unreduced: from logits where there is a sigmoid
        (exact where it saturates, safe under autocast), else of the output clipped into (0, 1) like Keras."""
        return pixel_bce(self.logits, target, self.linear_head)

    def pixel_mse(self, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.recon, target, reduction="none")


EPSILON = 1e-7  # Keras' clip for BCE of probabilities


def pixel_bce(logits: torch.Tensor, target: torch.Tensor, linear_head: bool = False) -> torch.Tensor:
    if linear_head:
        return F.binary_cross_entropy(logits.float().clamp(EPSILON, 1 - EPSILON), target.float(), reduction="none")
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, per_image_sum: bool,
                        linear_head: bool = False) -> torch.Tensor:
    """BCE or MSE of the reconstruction: Keras-style per-pixel mean, or per-image sum (the VAE's)."""
    if kind == "bce":
        pixel = pixel_bce(logits, target, linear_head)
    else:
        pixel = F.mse_loss(logits if linear_head else torch.sigmoid(logits), target, reduction="none")
    return pixel.flatten(1).sum(1).mean() if per_image_sum else pixel.mean()


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "selu": nn.SELU, "tanh": nn.Tanh, "linear": nn.Identity}
WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def keras_init(module: nn.Module) -> None:
    """Keras' initialisers (PyTorch's defaults end ~8% worse): Glorot-uniform weights and zero biases, and
    LeCun-normal weights for a layer that feeds a SELU (what self-normalisation assumes). Module.apply visits a
    Sequential after its children, so it re-initialises the layers it sees followed by a SELU."""
    if isinstance(module, WEIGHTED):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Sequential):
        layers = [m for m in module if not isinstance(m, nn.MaxPool2d)]  # conv stages pool before the activation
        for layer, after in zip(layers, layers[1:]):
            if isinstance(layer, WEIGHTED) and isinstance(after, nn.SELU):
                lecun_normal_(layer.weight)


def lecun_normal_(weight: torch.Tensor) -> None:
    """Keras' lecun_normal: a normal truncated at two deviations, scaled so its std is 1 / sqrt(fan_in).
    weight[0] holds one output's inputs (for a transposed conv, PyTorch's and Keras' fan_in agree: out x k x k)."""
    std = (1 / weight[0].numel()) ** 0.5 / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class Autoencoder(nn.Module):
    """encode(x) -> code, decode(code) -> image in [0, 1]; objective(x, target) -> Output.

    The class attributes are the family's answers to what the rest of the package asks; nothing outside
    aetune/models/ tests a model's name.
    """

    config_keys: tuple[str, ...] = ()  # the architecture keys this family reads (summary, HParams, report)
    generative: bool = False  # decode(z) of z ~ N(0, I) gives samples (a prior was trained in)
    extra_metrics: tuple[str, ...] = ()  # keys of Output.extras, reported per epoch (e.g. the VAE's kl)
    loss_per_image: bool = False  # the loss sums over an image's pixels (nats per image), not Keras' per-pixel mean

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.loss_kind = config.loss
        self.l1 = config.l1
        self.linear_head = False  # True where the decoder's output is the reconstruction (no sigmoid)

    def hidden_activation(self, config: TrialConfig) -> type[nn.Module]:
        """The hidden layers' activation, for the families that read `activation`. Linear also drops the output
        sigmoid: a linear autoencoder, whose optimum under MSE spans PCA's subspace."""
        if config.activation == "linear":
            if config.loss != "mse":
                raise ConfigError(f"activation: linear makes a linear autoencoder, trained with MSE (it then spans "
                                  f"PCA's subspace); set loss: mse, not {config.loss}")
            self.linear_head = True
        return ACTIVATIONS[config.activation]

    @property
    def likelihood(self) -> bool:
        """Whether nll() gives -log p(x): a generative family trained on a log-likelihood."""
        return False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code of x, batch first (a VAE's posterior mean)."""
        raise NotImplementedError

    def latent_noise(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """A fixed draw of the noise objective() samples codes with, for n images (None: a deterministic code)."""
        return None

    def nll(self, x: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """-log p(x) per image in nats, estimated with `samples` importance samples (where `likelihood`)."""
        raise NotImplementedError(f"{type(self).__name__} has no likelihood")

    @property
    def code_shape(self) -> tuple[int, ...]:
        """The shape of one image's code (e.g. (32,) or (8, 4, 4))."""
        with torch.no_grad():
            was_training = self.training
            code = self.eval().encode(torch.zeros(1, *self.input_shape, device=next(self.parameters()).device))
            self.train(was_training)
        return tuple(code.shape[1:])

    @property
    def trainable_params(self) -> int:
        """Parameters the optimizer updates (frozen ones, such as the LSTM's second bias, left out)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(code)
        return logits if self.linear_head else torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def training_flops(self) -> int:
        """Floating-point operations of one training step on one image, forward and backward: what the search
        starts the costliest trials by. torch's FlopCounterMode counts the matrix and conv work but not its fused
        LSTM op, so each LSTM layer and direction adds its own: 8 x hidden x (inputs + hidden) per step forward,
        twice that backward. A proxy of the time: per FLOP, small convs run slower than dense layers on CPUs."""
        from torch.utils.flop_counter import FlopCounterMode

        recurrent: list[int] = []

        def count(module: nn.LSTM, inputs: tuple[torch.Tensor, ...], output: object) -> None:
            steps, hidden = inputs[0].shape[1 if module.batch_first else 0], module.hidden_size
            directions = 2 if module.bidirectional else 1
            layer_inputs = [module.input_size] + [directions * hidden] * (module.num_layers - 1)
            recurrent.append(sum(3 * 8 * hidden * (n + hidden) * steps * directions for n in layer_inputs))

        hooks = [m.register_forward_hook(count) for m in self.modules() if isinstance(m, nn.LSTM)]
        image = torch.full((1, *self.input_shape), 0.5, device=next(self.parameters()).device)
        try:
            with FlopCounterMode(display=False) as counter, torch.random.fork_rng(devices=[]):  # a VAE samples
                self.objective(image, image).loss.backward()
        finally:
            for hook in hooks:
                hook.remove()
            self.zero_grad(set_to_none=True)
        return counter.get_total_flops() + sum(recurrent)

    def objective(self, x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor | None = None) -> Output:
        """The variant's loss of reconstructing target from x; `noise`: latent_noise's draw (None here)."""
        code = self.encode(x)
        logits = self.decode_logits(code)
        recon = reconstruction_loss(logits, target, self.loss_kind, per_image_sum=False, linear_head=self.linear_head)
        # Keras activity_regularizer=l1(lambda): lambda * sum|code| per image, averaged over the batch.
        reg = self.l1 * code.abs().flatten(1).sum(1).mean() if self.l1 else recon.new_zeros(())
        return Output(logits, code, recon + reg, recon, reg, linear_head=self.linear_head)
