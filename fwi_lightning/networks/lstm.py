"""A recurrent encoder over the time axis of the gathers, with a convolutional decoder."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.base import GridDecoder, Norm, VelocityNetwork, check_channels, resize
from fwi_lightning.problem import Problem

RECURRENT = {"lstm": nn.LSTM, "gru": nn.GRU}


class LSTMNet(VelocityNetwork):
    """Recurrent (LSTM or GRU) encoder reading the gathers time step by time step.

    Each time step is the vector of every shot's and receiver's amplitude (S * R
    values), embedded linearly; the gathers are first area-averaged to `steps` time
    steps so the recurrence stays short. The time-averaged recurrent output is
    projected to a small map and decoded to the grid by x2 upsampling stages.

    Args:
        problem: survey and scaling (injected).
        cell: ``lstm`` or ``gru``.
        hidden: hidden size of the recurrence (and of the input embedding).
        layers: stacked recurrent layers.
        bidirectional: read time forwards and backwards.
        steps: time steps the gathers are averaged to (at most T).
        channels: decoder widths, first block then each x2 upsampling stage.
        norm: normalisation of the decoder blocks.
    """

    def __init__(self, problem: Problem, cell: Literal["lstm", "gru"] = "lstm", hidden: int = 128, layers: int = 2,
                 bidirectional: bool = True, steps: int = 125, channels: Sequence[int] = (128, 64, 32, 16),
                 norm: Norm = "batch"):
        super().__init__(problem)
        channels = check_channels(channels, network="lstm")
        if cell not in RECURRENT:
            raise ConfigError(f"unknown cell '{cell}'; choose lstm or gru", key="cell")
        shots, nt, nr = self.data_shape
        self.steps = min(int(steps), nt)
        self.embed = nn.Linear(shots * nr, hidden)
        self.rnn = RECURRENT[cell](hidden, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.decoder = GridDecoder(channels[0], channels, self.velocity_shape, norm=norm)
        self.start_channels = channels[0]
        h, w = self.decoder.start
        self.project = nn.Linear(hidden * (2 if bidirectional else 1), channels[0] * h * w)

    def encode(self, data: torch.Tensor) -> torch.Tensor:
        """Normalised data [B, S, T, R] -> recurrent outputs [B, steps, hidden * directions]."""
        x = resize(data, (self.steps, data.shape[-1]))
        batch, shots, steps, receivers = x.shape
        sequence = x.permute(0, 2, 1, 3).reshape(batch, steps, shots * receivers)
        return self.rnn(self.embed(sequence))[0]

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Recurrent outputs [B, steps, H] -> normalised velocity [B, 1, NZ, NX] in [-1, 1]."""
        h, w = self.decoder.start
        grid = self.project(features.mean(dim=1)).view(-1, self.start_channels, h, w)
        return self.decoder(grid)
