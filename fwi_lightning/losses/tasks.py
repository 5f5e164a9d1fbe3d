"""The auxiliary tasks of the multitask paradigm: targets derived from the velocity label, and their losses.

Each task names a head of the multitask paradigm and the output it produces:

* ``interfaces``: the layer-boundary map, 1 where the velocity jumps by more than
  ``threshold_mps`` to the cell below or to the right, else 0 (DD-Net's contour target),
  learned by class-balanced binary cross-entropy; the output is a probability in [0, 1];
* ``background``: the smooth, low-wavenumber velocity, the label blurred by a Gaussian of
  ``sigma_m`` metres, learned by L1 on OpenFWI's normalised scale; the output is in m/s.

The velocity task itself is the paradigm's weighted ``losses`` mapping. A head's decoder
gives normalised values in [-1, 1] (a tanh); `Task.output` maps them to the output.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.problem import Problem

#: Probabilities are clipped this far from 0 and 1 before the logarithm.
PROBABILITY_FLOOR = 1e-6


def interface_map(velocity: torch.Tensor, threshold_mps: float) -> torch.Tensor:
    """Layer boundaries of velocity models: [B, 1, NZ, NX] m/s -> [B, 1, NZ, NX] of 0.0 / 1.0.

    A cell is on a boundary when its velocity differs by more than `threshold_mps` from
    the cell below it or the cell to its right (so each jump marks the cell on its upper
    or left side).
    """
    jump = torch.zeros_like(velocity, dtype=torch.bool)
    jump[..., :-1, :] |= (velocity[..., 1:, :] - velocity[..., :-1, :]).abs() > threshold_mps
    jump[..., :, :-1] |= (velocity[..., :, 1:] - velocity[..., :, :-1]).abs() > threshold_mps
    return jump.to(velocity.dtype)


def gaussian_smooth(image: torch.Tensor, sigma_cells: float) -> torch.Tensor:
    """Blur [B, C, H, W] by a separable Gaussian of `sigma_cells` cells (edges replicated, radius 3 sigma)."""
    radius = max(1, math.ceil(3.0 * sigma_cells))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_cells) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    image = F.conv2d(F.pad(image, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)
    return F.conv2d(F.pad(image, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)


class Task(nn.Module):
    """An auxiliary head's target and loss.

    Attributes:
        name: the head's YAML name, also the name of its output.

    Args:
        problem: the survey and scaling (the velocity range, the grid spacing).
    """

    name: str = ""

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem

    def output(self, decoded: torch.Tensor) -> torch.Tensor:
        """The head decoder's normalised map [B, 1, NZ, NX] in [-1, 1] -> the named output."""
        raise NotImplementedError

    def target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The task's target, derived from the batch's ``velocity`` [B, 1, NZ, NX] in m/s."""
        raise NotImplementedError

    def forward(self, output: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """The head's output and the batch -> scalar loss."""
        raise NotImplementedError

    def labels(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's true velocity [B, 1, NZ, NX] in m/s.

        Raises:
            DataError: the batch is unlabelled.
        """
        if batch.get("velocity") is None:
            raise DataError(f"the multitask head '{self.name}' derives its target from the true velocity, but the batch "
                            "has no 'velocity' (unlabelled data); train on labelled data")
        return batch["velocity"]


class Interfaces(Task):
    """Layer-boundary map (`interface_map`), class-balanced binary cross-entropy.

    Boundary cells are weighted by the fraction of non-boundary cells in the batch and
    the rest by the fraction of boundary cells (HED / DD-Net), so the rare class counts
    as much as the common one.

    Args:
        problem: injected.
        threshold_mps: the velocity jump, m/s, between neighbouring cells that marks a boundary.
    """

    name = "interfaces"

    def __init__(self, problem: Problem, threshold_mps: float = 25.0):
        super().__init__(problem)
        if isinstance(threshold_mps, bool) or not isinstance(threshold_mps, (int, float)) or not threshold_mps > 0:
            raise ConfigError(f"threshold_mps must be a positive number of m/s, got {threshold_mps!r}; e.g. 25.0",
                              key="threshold_mps")
        self.threshold_mps = float(threshold_mps)

    def output(self, decoded: torch.Tensor) -> torch.Tensor:
        """tanh output -> boundary probability ``(t + 1) / 2`` in [0, 1]."""
        return 0.5 * (decoded + 1.0)

    def target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return interface_map(self.labels(batch), self.threshold_mps)

    def forward(self, output: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        target = self.target(batch)
        positive = target.mean()
        p = output.float().clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        weighted = (1.0 - positive) * target * torch.log(p) + positive * (1.0 - target) * torch.log1p(-p)
        return -2.0 * weighted.mean()


class Background(Task):
    """Smooth background velocity (the label blurred by a Gaussian), L1 on the normalised scale.

    Args:
        problem: injected.
        sigma_m: the Gaussian's standard deviation in metres (cells: ``sigma_m / spacing``).
    """

    name = "background"

    def __init__(self, problem: Problem, sigma_m: float = 100.0):
        super().__init__(problem)
        if isinstance(sigma_m, bool) or not isinstance(sigma_m, (int, float)) or not sigma_m > 0:
            raise ConfigError(f"sigma_m must be a positive length in metres, got {sigma_m!r}; e.g. 100.0", key="sigma_m")
        self.sigma_cells = float(sigma_m) / float(problem.survey.spacing)

    def output(self, decoded: torch.Tensor) -> torch.Tensor:
        """Normalised map -> smooth velocity in m/s."""
        return self.problem.denormalise_velocity(decoded)

    def target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The blurred label, normalised to [-1, 1]."""
        return gaussian_smooth(self.problem.normalise_velocity(self.labels(batch)), self.sigma_cells)

    def forward(self, output: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (self.problem.normalise_velocity(output) - self.target(batch)).abs().mean()


#: The auxiliary heads by YAML name (``velocity`` is the paradigm's ``losses``).
TASKS: dict[str, type[Task]] = {"interfaces": Interfaces, "background": Background}
