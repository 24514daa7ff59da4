"""Recurrent autoencoder: an image is a sequence of rows. Stacked LSTMs read the rows and the last state of the last
one is the code; the decoder feeds the code at every row to stacked LSTMs and a per-row dense layer writes the row.
The course model: hidden_layers [100], code_size 30 (LSTM(100) -> LSTM(30); repeat -> LSTM(100) -> Dense(28))."""
from __future__ import annotations

import torch
from torch import nn

from aetune.config import ConfigError, TrialConfig
from aetune.models.base import Autoencoder


class KerasLSTM(nn.LSTM):
    """One LSTM layer that returns its output sequence, initialised and biased as keras.layers.LSTM: Glorot-uniform
    input weights, orthogonal recurrent weights, zero biases but 1 for the forget gate (unit_forget_bias).

    Keras keeps one bias per gate; torch adds a second (bias_hh) that only ever appears summed with bias_ih. It is held
    at zero and frozen, so the function, the trainable parameter count (Keras': 4 x units x (inputs + units + 1)) and
    Adam's step on the gate bias are Keras'; the frozen zeros add 4 x units to the total count."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, batch_first=True)
        nn.init.xavier_uniform_(self.weight_ih_l0)
        nn.init.orthogonal_(self.weight_hh_l0)
        with torch.no_grad():  # gate order i, f, g, o in torch and Keras alike
            self.bias_ih_l0.zero_()[hidden_size:2 * hidden_size] = 1.0
            self.bias_hh_l0.zero_()
        self.bias_hh_l0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


def lstm_stack(sizes: list[int]) -> list[nn.Module]:
    return [KerasLSTM(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:])]


class LSTMAE(Autoencoder):
    config_keys = ("hidden_layers", "code_size", "l1")

    def __init__(self, config: TrialConfig, input_shape: tuple[int, int, int]):
        super().__init__(config, input_shape)
        if not config.hidden_layers:
            raise ConfigError("hidden_layers: the lstm decoder needs a recurrent layer between the code and the rows; "
                              "give at least one size, e.g. [100]")
        channels, _, width = input_shape
        row = channels * width  # one step: a row of the image, its channels side by side
        hidden = list(config.hidden_layers)
        self.encoder = nn.Sequential(*lstm_stack([row, *hidden, config.code_size]))
        self.decoder = nn.Sequential(*lstm_stack([config.code_size, *hidden[::-1]]), nn.Linear(hidden[0], row))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(n, height, channels * width)
        return self.encoder(rows)[:, -1]  # the last LSTM's state after the last row

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_shape
        rows = self.decoder(code.unsqueeze(1).repeat(1, height, 1))  # the code at every row (Keras' RepeatVector)
        return rows.view(-1, height, channels, width).permute(0, 2, 1, 3)
